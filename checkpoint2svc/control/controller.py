"""The reconcile loop: make what runs match what the store asks for, and tell the gateway.

Each pass: for every node, build its image if needed (in the background), observe its instances
(backend state, health probes), drive their statuses, replace dead ones, scale to the desired
count, derive the node's status; then give the gateway the healthy servers. Nothing here trusts
memory over the backends: after a restart ``adopt`` rebuilds the instances from their labels.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from checkpoint2svc.backends.base import (
    SOCKET_NAME,
    InstanceBackend,
    InstanceHandle,
    InstanceSpec,
    RunState,
    create_backend,
)
from checkpoint2svc.control.autoscaler import ScaleState, next_desired
from checkpoint2svc.control.health import probe
from checkpoint2svc.control.metrics import gateway_count, gateway_metrics, merge_metrics
from checkpoint2svc.control.models import (
    Event,
    InstanceRecord,
    InstanceStatus,
    NodeSpec,
    NodeStatus,
)
from checkpoint2svc.control.store import NodeNotFoundError, NodeRow, Store
from checkpoint2svc.errors import Checkpoint2SvcError, ImageMissingError
from checkpoint2svc.gateway.base import GatewayLike
from checkpoint2svc.gateway.config import (
    GatewayAlias,
    GatewayConfig,
    GatewayNode,
    GatewayServer,
)
from checkpoint2svc.gateway.haproxy import MAX_SOCKET_PATH

log = logging.getLogger("checkpoint2svc.controller")

SOCKETS_DIR = "instances"
"""Below the gateway's runtime directory: one directory per instance for its unix socket."""
RESTART_BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
"""Delays before replacing instances of a node whose instances keep exiting (a crash loop)."""

ImageBuilder = Callable[[NodeSpec, Callable[[str], None]], str]
"""Builds (or reuses) a checkpoint node's image and returns its tag; reports each step."""
ImageRemover = Callable[[str], bool]
"""Removes an image the controller built; False while a container still uses it."""
HealthProbe = Callable[[InstanceRecord, NodeSpec], tuple[bool, str]]
"""The node's health check of one instance: (passed, why not)."""
MetricsScraper = Callable[[str], str]
"""An instance's metrics text at a URL; "" when it does not answer."""
IMAGE_RETRY_S = 5.0
"""How often removing an image that a container still uses is tried again."""
BUILD_LINE_CHARS = 160
BUILD_NOISE = ("--->", "Removing intermediate container")
"""docker build lines that say nothing about progress to a user."""


def instance_id(node: str) -> str:
    return f"{node}-{secrets.token_hex(3)}"


def instance_version(spec: NodeSpec, image: str) -> str:
    """What an instance runs: its image (or checkpoint contents) and the settings it starts with.
    An instance of another version is replaced in a rolling update."""
    source = image
    if spec.checkpoint and not image:
        manifest = Path(spec.checkpoint) / "manifest.json"
        source = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else ""
    settings = json.dumps(
        [source, spec.env, spec.port, spec.grpc_port, spec.protocol], sort_keys=True
    )
    return hashlib.sha256(settings.encode()).hexdigest()[:12]


class Controller:
    def __init__(
        self,
        home: Path,
        store: Store,
        controller_id: str,
        gateway: GatewayLike,
        gateway_port: int,
        build_image: ImageBuilder,
        max_body_bytes: int = 16 * 1024 * 1024,
        remove_image: ImageRemover | None = None,
        backends: Mapping[str, InstanceBackend] | None = None,
        probe_health: HealthProbe = probe,
        scrape_metrics: MetricsScraper | None = None,
    ) -> None:
        """``backends``, ``probe_health`` and ``scrape_metrics`` replace the real backends,
        health probe and scrapes (the in-process tests pass the memory backends, ``health.probe``
        over the memory machine's answer at each port, and its scraper)."""
        self.home = home
        self.store = store
        self.controller_id = controller_id
        self.gateway = gateway
        self.gateway_port = gateway_port
        self.max_body_bytes = max_body_bytes
        self._build_image = build_image
        self._remove_image = remove_image
        self._image_retry_at: dict[str, float] = {}
        """Unused images (the store's list) that could not be removed yet -> when to try again
        (a container of an instance being replaced may still use one). Reconcile thread only."""
        self._backends: dict[str, InstanceBackend] = dict(backends or {})
        self._probe_health = probe_health
        self._scrape_metrics = scrape_metrics or scrape
        self.instances: dict[str, InstanceRecord] = {}
        self._scale: dict[str, ScaleState] = {}
        self._builds: dict[str, threading.Thread] = {}
        self._failed_builds: dict[str, str | None] = {}
        """Node -> the checkpoint whose build failed: not retried until the node changes."""
        self._build_lines: dict[str, str] = {}
        """Node -> the last line of its image build while it runs (progress for the API)."""
        self._gateway_config: GatewayConfig | None = None
        self._gateway_lock = threading.Lock()
        self._lock = threading.RLock()
        self._probes = ThreadPoolExecutor(max_workers=8, thread_name_prefix="probe")
        self._stop = threading.Event()
        self._stats: dict[tuple[str, str], dict[str, int | str]] = {}
        self._troubled: set[str] = set()
        """Nodes with an instance that exited or turned Unhealthy since they were last Healthy."""
        self._exits: dict[str, tuple[int, float]] = {}
        """Node -> (exits in a row without a Healthy instance, when replacing may start again)."""

    # --- backends -------------------------------------------------------------------------
    def backend(self, name: str) -> InstanceBackend:
        if name not in self._backends:
            self._backends[name] = create_backend(name, self.home)
        return self._backends[name]

    def event(self, node: str, message: str, instance: str = "") -> None:
        log.info("%s%s: %s", node, f"/{instance}" if instance else "", message)
        self.store.add_event(Event.now(node, message, instance))

    # --- adoption -------------------------------------------------------------------------
    def adopt(self, backend_names: tuple[str, ...]) -> None:
        """Re-attach to the instances this controller started before it was restarted."""
        known = {row.name for row in self.store.nodes()}
        for name in backend_names:
            try:
                handles = self.backend(name).list(self.controller_id)
            except Checkpoint2SvcError as exc:
                log.warning("cannot list %s instances: %s", name, exc)
                continue
            for handle in handles:
                if handle.node not in known:
                    self.backend(name).stop(handle)
                    continue
                # the version it was started with (labels / state file): a rollout the previous
                # process had not finished goes on; an instance without one is taken as current
                version = handle.version or self._current_version(handle.node)
                self._track(handle, InstanceStatus.STARTED).version = version
                self.event(handle.node, "adopted after a controller restart", handle.instance_id)
        if self.gateway.adopt():
            log.info("adopted the running gateway")

    def _track(self, handle: InstanceHandle, status: InstanceStatus) -> InstanceRecord:
        record = InstanceRecord(handle, status)
        with self._lock:
            self.instances[record.id] = record
        return record

    # --- the loop -------------------------------------------------------------------------
    def run(self, interval: float = 0.5) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.reconcile_once()
            except Exception:
                log.exception("reconcile pass failed; retrying")
            self._stop.wait(max(0.05, interval - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop.set()
        self._probes.shutdown(wait=False, cancel_futures=True)

    def in_flight(self, node: str) -> float:
        """Requests of ``node`` in the gateway right now (being served or queued)."""
        stats = self._stats
        return float(
            gateway_count(stats, "node", node, "scur") + gateway_count(stats, "node", node, "qcur")
        )

    def reconcile_once(self) -> None:
        try:
            self._stats = self.gateway.server_stats() if self.gateway.running() else {}
        except Checkpoint2SvcError as exc:
            log.warning("gateway stats unavailable: %s", exc)
            self._stats = {}
        for row in self.store.nodes():
            try:
                self._reconcile_node(row)
            except Checkpoint2SvcError as exc:
                self.event(row.name, f"error: {exc}")
            except Exception as exc:  # one node's failure must not stop the others' reconciling
                log.exception("reconciling node %s failed", row.name)
                self.event(row.name, f"internal error: {exc!r}")
        self._apply_gateway()
        self._remove_unused_images()

    def retire_image(self, row: NodeRow) -> None:
        """The node no longer needs its image (deleted, or rebuilt from a new checkpoint):
        removed once no container uses it, if this controller built it and no node uses it."""
        if row.spec.image is None:
            self._retire(row.image)

    def _retire(self, image: str) -> None:
        if image and self._remove_image is not None:
            self.store.add_unused_image(image)  # in the store: a restart does not forget it

    def _remove_unused_images(self) -> None:
        if self._remove_image is None:
            return
        now = time.monotonic()
        due = [i for i in self.store.unused_images() if self._image_retry_at.get(i, 0.0) <= now]
        if not due:
            return
        needed = {image for row in self.store.nodes() for image in (row.image, row.spec.image)}
        for image in due:
            if image not in needed:  # else built again for a node since, or named as --image
                try:
                    if not self._remove_image(image):
                        self._image_retry_at[image] = now + IMAGE_RETRY_S
                        continue
                except Exception as exc:  # e.g. the engine restarting: tried again later
                    log.warning("image %s not removed yet: %s", image, exc)
                    self._image_retry_at[image] = now + IMAGE_RETRY_S * 6
                    continue
                log.info("removed image %s (no node uses it)", image)
            self._image_retry_at.pop(image, None)
            self.store.forget_unused_image(image)

    def node_instances(self, node: str) -> list[InstanceRecord]:
        with self._lock:
            return sorted(
                (r for r in self.instances.values() if r.node == node), key=lambda r: r.created_at
            )

    def _reconcile_node(self, row: NodeRow) -> None:
        spec = row.spec
        if row.deleting:
            self._delete_node(row)
            return
        image = self._image_for(row)  # None while the image is being built
        self._observe(row)
        if row.suspended:
            desired = 0
        else:
            state = self._scale.setdefault(spec.name, ScaleState(desired=spec.min_instances))
            desired = next_desired(state, self.in_flight(spec.name), spec, time.monotonic())
        if image is not None:
            try:
                self._scale_and_roll(spec, image, desired)
            except ImageMissingError:
                if spec.image is not None:  # the user's image: only they can bring it back
                    raise
                self.store.update_node(spec.name, image="")  # built again on the next pass
                self.event(spec.name, f"image {image} is gone from the Docker engine; building "
                           "it again")  # fmt: skip
        self._apply_gateway()  # the gateway routes to an instance before the node says Healthy
        self._set_node_status(row)

    def _current_version(self, node: str) -> str:
        row = self.store.node(node)
        return instance_version(row.spec, row.spec.image or row.image)

    def desired_version(self, row: NodeRow) -> str | None:
        """The version the node's instances are being brought to; None while its image builds.
        A rollout is over when every instance runs it."""
        spec = row.spec
        if spec.backend == "docker" and spec.image is None and not row.image:
            return None
        return instance_version(spec, spec.image or row.image)

    def _scale_and_roll(self, spec: NodeSpec, image: str, desired: int) -> None:
        """Reach ``desired`` instances of the current version; replace instances of an older
        version (image, checkpoint or settings) without a gap: at most ``maintenance_limit``
        extra instances at once, and an old one stops only when a new one is Healthy."""
        version = instance_version(spec, image)
        live = [r for r in self.node_instances(spec.name) if r.status != InstanceStatus.DELETING]
        outdated = [r for r in live if r.version != version]
        fresh = [r for r in live if r.version == version]
        room = desired + (spec.maintenance_limit if outdated else 0) - len(live)
        starts = min(desired - len(fresh), room)
        if starts > 0 and time.monotonic() >= self._exits.get(spec.name, (0, 0.0))[1]:
            for _ in range(starts):
                self._start_instance(spec, image, version)
        healthy_fresh = sum(r.status == InstanceStatus.HEALTHY for r in fresh)
        retire = min(len(outdated), healthy_fresh + len(outdated) - desired)
        if desired == 0:
            retire = len(outdated)
        for record in outdated[: max(0, retire)]:
            self._stop_instance(record, "replaced by the node's new version")
        if not outdated and len(fresh) > desired:
            ranked = sorted(
                fresh, key=lambda r: (r.status == InstanceStatus.HEALTHY, -r.created_at)
            )
            for record in ranked[: len(fresh) - desired]:
                self._stop_instance(record, "scaled down" if desired else "suspended")

    def _image_for(self, row: NodeRow) -> str | None:
        spec = row.spec
        if spec.backend == "local" or spec.image is not None:
            return spec.image or ""
        if row.image:
            return row.image
        if self._failed_builds.get(spec.name, "") == spec.checkpoint:
            return None
        build = self._builds.get(spec.name)
        if build is None:
            thread = threading.Thread(
                target=self._build, args=(spec,), name=f"build-{spec.name}", daemon=True
            )
            self._builds[spec.name] = thread
            self.event(spec.name, f"building the image of {spec.checkpoint}")
            thread.start()
        return None

    def build_progress(self, node: str) -> str | None:
        """The last line of the node's image build while one runs, else None."""
        return self._build_lines.get(node)

    def _build_reporting(self, spec: NodeSpec) -> str:
        """Build the node's image; its current line is the node's ``build_progress`` meanwhile,
        and gone before the image or the failure shows."""

        def step(line: str) -> None:
            text = line.strip()
            if text and not text.startswith(BUILD_NOISE):
                self._build_lines[spec.name] = text[:BUILD_LINE_CHARS]

        try:
            return self._build_image(spec, step)
        finally:
            self._build_lines.pop(spec.name, None)

    def _build(self, spec: NodeSpec) -> None:
        try:
            image = self._build_reporting(spec)
        except Checkpoint2SvcError as exc:
            self._failed_builds[spec.name] = spec.checkpoint
            self.event(spec.name, f"image build failed: {exc}")
            with contextlib.suppress(NodeNotFoundError):  # deleted while it built
                self.store.update_node(spec.name, status=NodeStatus.UNHEALTHY)
        else:
            self._failed_builds.pop(spec.name, None)
            try:
                current = self.store.node(spec.name).spec.checkpoint
            except NodeNotFoundError:
                current = None
            if current != spec.checkpoint:  # deleted or changed while this one built
                self._retire(image)
                return
            self.store.update_node(spec.name, image=image)
            self.event(spec.name, f"image {image} ready")
        finally:
            self._builds.pop(spec.name, None)

    def _start_instance(self, spec: NodeSpec, image: str, version: str) -> None:
        new_id = instance_id(spec.name)
        grpc_port = spec.grpc_port if spec.protocol == "http" else None
        instance = InstanceSpec(
            node=spec.name, instance_id=new_id, controller_id=self.controller_id,
            image=image or None, checkpoint=Path(spec.checkpoint) if spec.checkpoint else None,
            http_port=spec.port, grpc_port=grpc_port, metrics_port=spec.telemetry.port,
            health_port=spec.health.port, env=dict(spec.env),
            socket_dir=self._socket_dir(new_id) if spec.checkpoint else None, version=version,
        )  # fmt: skip
        try:
            handle = self.backend(spec.backend).start(instance)
        except BaseException:
            self._remove_socket_dir(new_id)
            raise
        self._track(handle, InstanceStatus.STARTED).version = version
        self.event(spec.name, f"instance started on {spec.backend}", new_id)

    def _stop_instance(self, record: InstanceRecord, why: str) -> None:
        record.status = InstanceStatus.DELETING
        try:
            self._apply_gateway()  # out of the balancer before it stops
        except Checkpoint2SvcError as exc:  # stopping must not depend on the gateway
            log.warning("gateway not updated before stopping %s: %s", record.id, exc)
        self.event(record.node, f"stopping instance: {why}", record.id)
        try:
            self.backend(record.backend).stop(record.handle)
        finally:
            with self._lock:
                self.instances.pop(record.id, None)
            self._remove_socket_dir(record.id)

    def _socket_dir(self, instance: str) -> Path | None:
        """A directory for the instance's unix socket, which the gateway prefers to its port;
        None when its path would be too long for a socket (the port is used then)."""
        digest = hashlib.sha256(instance.encode()).hexdigest()[:12]
        directory = self.gateway.runtime_dir / SOCKETS_DIR / digest
        if len(os.fsencode(directory / SOCKET_NAME)) > MAX_SOCKET_PATH:
            return None
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o777)  # a container's user creates the socket (the parent stays private)
        return directory

    def _remove_socket_dir(self, instance: str) -> None:
        digest = hashlib.sha256(instance.encode()).hexdigest()[:12]
        shutil.rmtree(self.gateway.runtime_dir / SOCKETS_DIR / digest, ignore_errors=True)

    def _observe(self, row: NodeRow) -> None:
        spec = row.spec
        records = [r for r in self.node_instances(spec.name) if r.status != InstanceStatus.DELETING]
        now = time.time()
        due = []
        for record in records:
            run = self.backend(record.backend).status(record.handle)
            if run.state in (RunState.EXITED, RunState.MISSING):
                tail = "\n".join(self.instance_logs(record.id, 20))
                code = "" if run.exit_code is None else f" with code {run.exit_code}"
                self.event(spec.name, f"instance exited{code}; last lines:\n{tail}", record.id)
                self._troubled.add(spec.name)
                if not any(r.status == InstanceStatus.HEALTHY for r in records):
                    crashes = self._exits.get(spec.name, (0, 0.0))[0]
                    delay = RESTART_BACKOFF_S[min(crashes, len(RESTART_BACKOFF_S) - 1)]
                    self._exits[spec.name] = (crashes + 1, time.monotonic() + delay)
                record.status = InstanceStatus.UNHEALTHY
                record.last_error = f"exited{code}"
                self._stop_instance(record, "replacing an instance that exited")
                continue
            if now - record.last_check >= spec.health.interval_s:
                due.append(record)
        results = self._probes.map(lambda r: self._probe_health(r, spec), due)
        for record, (passed, why) in zip(due, results, strict=True):
            record.last_check = now
            self._transition(record, spec, passed, why, now)

    def _transition(
        self, record: InstanceRecord, spec: NodeSpec, passed: bool, why: str, now: float
    ) -> None:
        before = record.status
        if passed:
            record.passes, record.fails, record.last_error = record.passes + 1, 0, ""
        else:
            record.passes, record.fails, record.last_error = 0, record.fails + 1, why
        check = spec.health
        if record.status in (InstanceStatus.CREATED, InstanceStatus.STARTED):
            record.status = InstanceStatus.PREPARING
        if record.passes >= check.pass_threshold:
            record.status = InstanceStatus.HEALTHY
        elif record.fails >= check.fail_threshold and (
            before == InstanceStatus.HEALTHY or now - record.created_at > check.start_period_s
        ):
            record.status = InstanceStatus.UNHEALTHY
        if record.status == InstanceStatus.HEALTHY:
            self._exits.pop(spec.name, None)
        elif record.status == InstanceStatus.UNHEALTHY:
            self._troubled.add(spec.name)
        if record.status != before and record.status in (
            InstanceStatus.HEALTHY, InstanceStatus.UNHEALTHY,
        ):  # fmt: skip
            detail = f": {why}" if why else ""
            self.event(spec.name, f"instance {record.status}{detail}", record.id)

    def _set_node_status(self, row: NodeRow) -> None:
        spec = row.spec
        records = self.node_instances(spec.name)
        healthy = sum(r.status == InstanceStatus.HEALTHY for r in records)
        if row.suspended:
            status = NodeStatus.SUSPENDED
        elif healthy >= max(1, spec.min_instances):
            status = NodeStatus.HEALTHY
            self._troubled.discard(spec.name)
        elif row.status == NodeStatus.CREATED and spec.name not in self._troubled:
            status = NodeStatus.CREATED
        else:
            status = NodeStatus.UNHEALTHY
        if status != row.status:
            self.store.update_node(spec.name, status=status)
            self.event(
                spec.name, f"node {status} ({healthy} healthy, minimum {spec.min_instances})"
            )

    def _delete_node(self, row: NodeRow) -> None:
        if row.status != NodeStatus.DELETING:
            self.store.update_node(row.name, status=NodeStatus.DELETING)
        for record in self.node_instances(row.name):
            self._stop_instance(record, "node deleted")
        self._scale.pop(row.name, None)
        self.store.remove_node(row.name)
        self.retire_image(row)
        log.info("node %s deleted", row.name)

    def instance_logs(self, instance: str, tail: int = 100, follow: bool = False) -> Iterator[str]:
        with self._lock:
            record = self.instances[instance]
        return self.backend(record.backend).logs(record.handle, tail, follow=follow)

    def metrics(self) -> str:
        """Every live instance's metrics, labelled by instance (see ``control.metrics``)."""

        targets = []
        for row in self.store.nodes():
            path = row.spec.telemetry.path
            for r in self.node_instances(row.name):
                if r.status != InstanceStatus.DELETING:
                    port = r.handle.metrics_port or r.http_port
                    targets.append((r.id, f"http://{r.host}:{port}{path}"))
        texts = self._probes.map(lambda target: self._scrape_metrics(target[1]), targets)
        merged = merge_metrics(zip((t[0] for t in targets), texts, strict=True))
        nodes = [row.name for row in self.store.nodes()]
        aliases = [alias.name for alias in self.store.aliases()]
        return merged + gateway_metrics(nodes, aliases, self._stats)

    # --- gateway --------------------------------------------------------------------------
    def gateway_config(self) -> GatewayConfig:
        nodes = []
        for row in self.store.nodes():
            if row.deleting:
                continue
            spec = row.spec
            servers = tuple(
                GatewayServer(
                    id=r.id,
                    host=r.host,
                    http_port=r.http_port,
                    grpc_port=r.grpc_port if spec.protocol == "http" else r.http_port,
                    healthy=r.status == InstanceStatus.HEALTHY,
                    http_socket=r.handle.http_socket if spec.protocol == "http" else "",
                )
                for r in self.node_instances(spec.name)
                if r.status != InstanceStatus.DELETING
            )
            nodes.append(
                GatewayNode(
                    name=spec.name,
                    servers=servers,
                    request_timeout_s=spec.request_timeout_s,
                    idle_timeout_s=spec.idle_timeout_s,
                    grpc=spec.protocol == "grpc" or spec.grpc_port is not None,
                )
            )
        served = {node.name for node in nodes}
        aliases = []
        for alias in self.store.aliases():
            targets = tuple((node, weight) for node, weight in alias.nodes if node in served)
            if targets:
                aliases.append(
                    GatewayAlias(alias.name, targets, alias.sticky_header, alias.sticky_cookie)
                )
        return GatewayConfig(
            port=self.gateway_port, nodes=tuple(nodes), max_body_bytes=self.max_body_bytes,
            aliases=tuple(aliases),
        )  # fmt: skip

    def apply_gateway(self) -> None:
        """Bring the gateway in line with the store now (the API calls it after a change, so
        that the change routes when the call returns)."""
        self._apply_gateway()

    def _apply_gateway(self) -> None:
        with self._gateway_lock:
            config = self.gateway_config()
            if config == self._gateway_config:
                return
            if self.gateway.running():
                self.gateway.apply(config)
            else:
                self.gateway.start(config)
            self._gateway_config = config


def scrape(url: str, timeout: float = 5.0) -> str:
    import httpx

    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return ""
    return response.text if response.status_code == 200 else ""
