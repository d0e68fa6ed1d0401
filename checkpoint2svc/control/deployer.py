"""Deploy a checkpoint as a node (and point an alias at it) through the controller's API.

Idempotent: a checkpoint is stored in the controller's home under its *fingerprint* (what the
service does: cell, state, signature, examples, requirements, mode; not when or where it was
pinned), so deploying the same thing again changes nothing. A new version either updates the
node in place (a rolling update) or, behind an alias, becomes a node of its own named
``NAME-<version>``: the alias switches to it once it is Healthy and the old one is retired.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from checkpoint2svc.checkpoint.checkpoint import Checkpoint
from checkpoint2svc.checkpoint.manifest import Manifest
from checkpoint2svc.control.api_client import (
    ControllerClient,
    ControllerNotRunningError,
    start_controller,
)
from checkpoint2svc.control.compat import incompatibility, node_signature
from checkpoint2svc.control.home import DEFAULT_API_PORT, DEFAULT_GATEWAY_PORT, Home
from checkpoint2svc.control.models import (
    NAME,
    InstanceStatus,
    NodeSpec,
    NodeStatus,
    alias_nodes,
    rebalance,
    without_nodes,
)
from checkpoint2svc.control.views import (
    AliasCreate,
    AliasPatch,
    Endpoint,
    EventView,
    NodePatch,
    NodeView,
    gateway_address,
    grpc_metadata,
)
from checkpoint2svc.errors import Checkpoint2SvcError
from checkpoint2svc.execution.random_state import RANDOM_STATE_NAME

Progress = Callable[[str], None]
Backend = Literal["docker", "local"]

CHECKPOINTS_DIR = "checkpoints"
VERSION_LENGTH = 8
MAX_CRASHES = 3
"""Instance exits during a rollout after which the deploy gives up (the node keeps retrying)."""


class DeployError(Checkpoint2SvcError):
    """A deployment could not finish; what already served keeps serving."""


def fingerprint(manifest: Manifest) -> str:
    """What the service does, independent of when and from which file it was pinned."""
    data = manifest.to_dict()
    essential = {
        key: data[key]
        for key in ("name", "inputs", "outputs", "mode", "python_version", "requirements",
                    "deterministic", "files", "checkpoint2svc_version")
    }  # fmt: skip
    essential["cell"] = manifest.cell.python_source
    # An unseeded notebook's generators start anywhere: pinning it again changes nothing else.
    essential["files"] = {k: v for k, v in data["files"].items() if k != RANDOM_STATE_NAME}
    text = json.dumps(essential, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def version_node_name(name: str, manifest: Manifest, backend: str) -> str:
    """The node of one version of ``name`` behind an alias: ``name-<8 hex>``."""
    digest = hashlib.sha256(f"{fingerprint(manifest)}:{backend}".encode()).hexdigest()
    return f"{name}-{digest[:VERSION_LENGTH]}"


def is_version_of(node: str, name: str) -> bool:
    return re.fullmatch(rf"{re.escape(name)}-[0-9a-f]{{{VERSION_LENGTH}}}", node) is not None


@dataclass(frozen=True)
class DeploySettings:
    name: str
    """The node's name, or behind an alias the prefix of its versions' nodes."""
    alias: str | None = None
    weight: int = 100
    """The new version's percentage of the alias; below 100 the others keep the rest."""
    backend: Backend | None = None
    """None: docker when an engine answers, else local."""
    min_instances: int = 1
    max_instances: int | None = None
    allow_incompatible: bool = False
    timeout_s: float = 900.0

    def validate(self) -> DeploySettings:
        longest = 63 - (VERSION_LENGTH + 1 if self.alias else 0)
        if not NAME.match(self.name) or len(self.name) > longest:
            raise DeployError(
                f"name {self.name!r} is invalid: use 1-{longest} lowercase letters, digits and "
                "hyphens, starting with a letter"
                + (" (behind an alias a version suffix is added)" if self.alias else "")
            )
        if self.alias is not None and not NAME.match(self.alias):
            raise DeployError(
                f"alias {self.alias!r} is invalid: use 1-63 lowercase letters, digits and "
                "hyphens, starting with a letter"
            )
        if not 1 <= self.weight <= 100:
            raise DeployError(f"--weight {self.weight} is not a percentage from 1 to 100")
        if self.max_instances is not None and self.max_instances < self.min_instances:
            raise DeployError(f"--min {self.min_instances} is greater than --max "
                              f"{self.max_instances}")  # fmt: skip
        return self

    @property
    def bounds(self) -> tuple[int, int]:
        return self.min_instances, max(self.max_instances or 0, self.min_instances, 1)


@dataclass
class Deployment:
    """What a deploy did and where the service answers."""

    name: str
    node: str
    alias: str | None
    manifest: Manifest
    gateway_port: int
    status: NodeStatus | None
    actions: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.actions)

    @property
    def target(self) -> tuple[Literal["node", "alias"], str]:
        """Where requests go: ("alias", alias) or ("node", node)."""
        return ("alias", self.alias) if self.alias else ("node", self.node)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint.of(*self.target, self.gateway_port)

    @property
    def rest_url(self) -> str:
        return self.endpoint.rest

    @property
    def grpc_target(self) -> str:
        return gateway_address(self.gateway_port)

    @property
    def grpc_metadata(self) -> tuple[str, str]:
        return grpc_metadata(*self.target)

    def example_input(self) -> dict[str, Any]:
        return {v.name: v.example for v in self.manifest.inputs}

    def curl(self) -> str:
        body = json.dumps({"input": self.example_input()}, separators=(", ", ": "))
        return (
            f"curl -s -X POST {self.rest_url} \\\n"
            f"     -H 'content-type: application/json' -d '{body}'"
        )

    def python(self) -> str:
        """A program calling the service with its generated client (``checkpoint2svc client``
        writes the package)."""
        from checkpoint2svc.codegen.client_package import build_client_model, example_program
        from checkpoint2svc.codegen.proto import service_names

        key, target = ("alias", self.alias) if self.alias else ("node_id", self.node)
        model = build_client_model(self.manifest, service_names(self.manifest))
        base_url = f"http://{gateway_address(self.gateway_port)}"
        lines = example_program(model, base_url, self.grpc_target, **{key: target})
        package = f"{target}-client"
        setup = f"# checkpoint2svc client {target} -o {package} && pip install ./{package}"
        return "\n".join((setup, *lines))

    def summary(self) -> list[str]:
        what = "; ".join(self.actions) if self.actions else "nothing changed"
        served = f"alias {self.alias} -> node {self.node}" if self.alias else f"node {self.node}"
        endpoint = self.endpoint
        return [
            f"{served}: {self.status} ({what})",
            f"  REST: {endpoint.rest}",
            f"  gRPC: {endpoint.grpc}",
        ]


@dataclass(frozen=True)
class AliasShare:
    """An alias that routes to a node: its name, the node's percentage, its endpoint."""

    name: str
    weight: int
    endpoint: Endpoint


@dataclass(frozen=True)
class DeployedNode:
    """A node (``describe``) with the aliases that route to it."""

    node: NodeView
    aliases: tuple[AliasShare, ...]


class Deployer:
    """Deploys checkpoints through one controller (started if it is not running)."""

    def __init__(
        self,
        home: Home,
        progress: Progress = print,
        start: bool = True,
        api_port: int = DEFAULT_API_PORT,
        gateway_port: int = DEFAULT_GATEWAY_PORT,
    ) -> None:
        self.home = home
        self.progress = progress
        self.client = self._connect(start, api_port, gateway_port)

    def _connect(self, start: bool, api_port: int, gateway_port: int) -> ControllerClient:
        try:
            client = ControllerClient(self.home)
            client.status()
            return client
        except ControllerNotRunningError:
            if not start:
                raise
        self.progress(f"starting the controller of {self.home.root}")
        info = start_controller(self.home, api_port, gateway_port)
        self.progress(f"controller running (API {info.api_url}, gateway port {info.gateway_port})")
        return ControllerClient(self.home)

    @property
    def gateway_port(self) -> int:
        return self.client.info.gateway_port

    # --- checkpoints ------------------------------------------------------------------------------
    def store(self, checkpoint: Checkpoint) -> Checkpoint:
        """The checkpoint's copy in the controller's home, under its fingerprint (reused if
        there: the same version is the same directory, so nodes see no change)."""
        checkpoint.verify()
        root = self.home.root / CHECKPOINTS_DIR
        target = root / fingerprint(checkpoint.manifest)[:16]
        if not (target / "manifest.json").is_file():
            root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".store.", dir=root))
            try:
                shutil.copytree(checkpoint.path, staging, dirs_exist_ok=True)
                shutil.rmtree(target, ignore_errors=True)
                staging.rename(target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return Checkpoint.open(target)

    def prune_checkpoints(self) -> None:
        """Remove stored checkpoints that no node uses any more."""
        root = self.home.root / CHECKPOINTS_DIR
        if not root.is_dir():
            return
        used = {
            Path(node.spec.checkpoint).resolve()
            for node in self.client.nodes()
            if node.spec.checkpoint
        }
        for directory in root.iterdir():
            if directory.is_dir() and directory.resolve() not in used:
                shutil.rmtree(directory, ignore_errors=True)

    # --- deploying ------------------------------------------------------------------------------
    def deploy(self, checkpoint: Checkpoint, settings: DeploySettings) -> Deployment:
        settings.validate()
        stored = self.store(checkpoint)
        if settings.alias is None:
            deployment = self._deploy_in_place(stored, settings)
        else:
            deployment = self._deploy_behind_alias(stored, settings, settings.alias)
        self.prune_checkpoints()
        return deployment

    def _backend(self, settings: DeploySettings) -> Backend:
        if settings.backend is not None:
            return settings.backend
        from checkpoint2svc.backends.base import default_backend_name

        return default_backend_name()

    def _deploy_in_place(self, stored: Checkpoint, settings: DeploySettings) -> Deployment:
        name = settings.name
        deployment = Deployment(name, name, None, stored.manifest, self.gateway_port, None)
        current = self.client.find_node(name)
        low, high = settings.bounds
        if current is None:
            self._create_node(name, stored, settings)
            deployment.actions.append(f"created node {name}")
        else:
            spec = current.spec
            if settings.backend is not None and spec.backend != settings.backend:
                raise DeployError(
                    f"node {name} runs on the {spec.backend} backend, not "
                    f"{settings.backend}; deploy under another name, or `checkpoint2svc "
                    f"node delete {name}` first"
                )
            new_version = spec.checkpoint != str(stored.path)
            rescale = (spec.min_instances, spec.max_instances) != (low, high)
            if new_version:
                self._check_compatible(current, stored.manifest, settings, f"node {name}")
            if new_version or rescale:
                checkpoint = str(stored.path)
                if not rescale:
                    patch = NodePatch(checkpoint=checkpoint)
                elif not new_version:
                    patch = NodePatch(min_instances=low, max_instances=high)
                else:
                    patch = NodePatch(checkpoint=checkpoint, min_instances=low, max_instances=high)
                self.client.update_node(name, patch)
                deployment.actions.append(
                    f"rolled out a new version to node {name}"
                    if new_version
                    else f"rescaled node {name} to {low}-{high} instances"
                )
            if current.suspended:
                self.client.resume_node(name)
                deployment.actions.append(f"resumed node {name}")
        deployment.status = self._wait_rollout(name, settings)
        return deployment

    def _deploy_behind_alias(
        self, stored: Checkpoint, settings: DeploySettings, alias_name: str
    ) -> Deployment:
        backend = self._backend(settings)
        node = version_node_name(settings.name, stored.manifest, backend)
        deployment = Deployment(
            settings.name, node, alias_name, stored.manifest, self.gateway_port, None
        )
        alias = self.client.find_alias(alias_name)
        current = alias.weights if alias else ()
        others = [(n, w) for n, w in current if n != node]
        target = ((node, settings.weight), *rebalance(others, 100 - settings.weight))
        if not others:
            target = ((node, 100),)
        if alias is not None and others:
            reference = self.client.find_node(current[0][0])
            if reference is not None and current[0][0] != node:
                self._check_compatible(reference, stored.manifest, settings, f"alias {alias_name}")
        existing = self.client.find_node(node)
        low, high = settings.bounds
        if existing is None:
            self._create_node(node, stored, settings, backend)
            deployment.actions.append(f"created node {node}")
        elif (existing.spec.min_instances, existing.spec.max_instances) != (low, high):
            self.client.update_node(node, NodePatch(min_instances=low, max_instances=high))
            deployment.actions.append(f"rescaled node {node}")
        deployment.status = self._wait_rollout(node, settings)

        nodes = alias_nodes(target)
        if alias is None:
            self.client.create_alias(
                AliasCreate(
                    name=alias_name, nodes=nodes, allow_incompatible=settings.allow_incompatible
                )
            )
            deployment.actions.append(f"created alias {alias_name} -> {node}")
        elif sorted(current) != sorted(target):
            self.client.update_alias(
                alias_name,
                AliasPatch(nodes=nodes, allow_incompatible=settings.allow_incompatible),
            )
            split = ", ".join(f"{n}={w}%" for n, w in target)
            deployment.actions.append(f"alias {alias_name}: {split}")
        kept = {n for n, _ in target}
        dropped = [n for n, _ in current if n not in kept]
        retire = [n for n in dropped if is_version_of(n, settings.name)]
        for old in retire:
            self.progress(f"retiring node {old} (alias {alias_name} no longer uses it)")
            self.client.delete_node(old)
        self._wait_deleted(retire, settings.timeout_s)
        deployment.retired = retire
        if retire:
            deployment.actions.append(f"retired node {', '.join(retire)}")
        for other in dropped:
            if other not in retire:
                deployment.actions.append(f"node {other} left alias {alias_name} (kept)")
        return deployment

    def _create_node(
        self,
        node: str,
        stored: Checkpoint,
        settings: DeploySettings,
        backend: Backend | None = None,
    ) -> None:
        low, high = settings.bounds
        spec = NodeSpec(
            name=node, checkpoint=str(stored.path), backend=backend or self._backend(settings),
            min_instances=low, max_instances=high,
        )  # fmt: skip
        self.client.create_node(spec)
        self.progress(f"node {node} created ({spec.backend} backend)")

    def _check_compatible(
        self, serving: NodeView, manifest: Manifest, settings: DeploySettings, what: str
    ) -> None:
        """Refuse a version whose inputs or outputs would break the clients of ``what``."""
        if settings.allow_incompatible:
            return
        problem = incompatibility(
            "this version", what, f"node {serving.name}", node_signature(serving.spec),
            manifest.typed_signature(),
            "pass --allow-incompatible to deploy it anyway; nothing was changed",
        )  # fmt: skip
        if problem:
            raise DeployError(problem)

    def _wait_rollout(self, node: str, settings: DeploySettings) -> NodeStatus:
        """Until every instance of ``node`` runs its current version and enough are Healthy;
        the node's events are shown as they come."""
        started = time.time() - 1
        deadline = time.monotonic() + settings.timeout_s
        shown: set[EventView] = set()
        last = ""
        crashes = 0
        while True:
            view = self.client.node(node, events=50)
            for event in view.events:
                if event.time < started or event in shown:
                    continue
                shown.add(event)
                message = event.message
                self.progress(f"  {message.splitlines()[0]}")
                if message.startswith("image build failed"):
                    raise DeployError(
                        f"the image of node {node} could not be built: "
                        f"{message.removeprefix('image build failed: ')}"
                    )
                if message.startswith("instance exited"):
                    crashes += 1
                    if crashes >= MAX_CRASHES:
                        raise DeployError(
                            f"instances of node {node} keep exiting ({message}); nothing else "
                            f"was changed; see `checkpoint2svc node logs {node}`"
                        )
            version = view.version
            live = [i for i in view.instances if i.status != InstanceStatus.DELETING]
            fresh = [i for i in live if i.version == version]
            healthy = sum(i.status == InstanceStatus.HEALTHY for i in fresh)
            wanted = max(view.spec.min_instances, 1)
            if version is None:
                line = "building the image" + (f": {view.build}" if view.build else "")
            else:
                line = f"{view.status}: {healthy}/{wanted} instance(s) of this version healthy"
            if line != last:
                self.progress(line)
                last = line
            if (
                version is not None
                and view.status == NodeStatus.HEALTHY
                and len(fresh) == len(live)
                and healthy >= wanted
            ):
                return view.status
            if time.monotonic() > deadline:
                raise DeployError(
                    f"node {node} did not become Healthy within {settings.timeout_s:.0f} s "
                    f"({line}); see `checkpoint2svc node get {node}` and `node logs {node}`"
                )
            time.sleep(0.5)

    def _wait_deleted(self, nodes: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for node in nodes:
            while self.client.find_node(node, events=0) is not None:
                if time.monotonic() > deadline:
                    raise DeployError(f"node {node} was still being deleted after {timeout:.0f} s")
                time.sleep(0.3)

    # --- removing -------------------------------------------------------------------------------
    def undeploy(self, name: str) -> list[str]:
        """Delete what deploying ``name`` created: node ``name`` or its versions ``name-<hex>``,
        and the aliases left with no node; other aliases lose those nodes' share."""
        nodes = [
            n.name for n in self.client.nodes() if n.name == name or is_version_of(n.name, name)
        ]
        if not nodes:
            raise DeployError(
                f"nothing is deployed as {name!r}; `checkpoint2svc node list` shows the nodes"
            )
        done = []
        for alias in self.client.aliases():
            if not set(nodes) & {n for n, _ in alias.weights}:
                continue
            rest = without_nodes(alias.weights, set(nodes))
            if not rest:
                self.client.delete_alias(alias.name)
                done.append(f"deleted alias {alias.name}")
            else:
                self.client.update_alias(alias.name, AliasPatch(nodes=alias_nodes(rest)))
                done.append(f"alias {alias.name} keeps {', '.join(n for n, _ in rest)}")
        for node in nodes:
            self.client.delete_node(node)
            done.append(f"deleted node {node}")
        self._wait_deleted(nodes, 120)
        self.prune_checkpoints()
        return done

    def describe(self, name: str | None = None) -> list[DeployedNode]:
        """The nodes (of ``name`` if given) with the aliases that route to each."""
        aliases = self.client.aliases()
        return [
            DeployedNode(
                node,
                tuple(
                    AliasShare(a.name, weight, a.endpoint)
                    for a in aliases
                    for n, weight in a.weights
                    if n == node.name
                ),
            )
            for node in self.client.nodes()
            if name is None or node.name == name or is_version_of(node.name, name)
        ]
