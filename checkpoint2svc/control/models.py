"""Nodes, instances and their statuses, in DataSphere's vocabulary."""

from __future__ import annotations

import enum
import functools
import re
import time
import typing
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from checkpoint2svc.backends.base import InstanceHandle
from checkpoint2svc.errors import Checkpoint2SvcError

STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
"""The API (pydantic) refuses a setting these dataclasses do not know, or a number that is not
finite (its JSON form would be null), naming it."""

NAME = re.compile(r"^[a-z][a-z0-9-]{0,61}[a-z0-9]$|^[a-z]$")


class NodeSpecError(Checkpoint2SvcError):
    """A node's settings are invalid; the message names the setting and the allowed values."""


class NodeStatus(enum.StrEnum):
    CREATED = "Created"
    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"
    SUSPENDED = "Suspended"
    DELETING = "Deleting"


class InstanceStatus(enum.StrEnum):
    UNDEFINED = "Undefined"
    CREATED = "Created"
    STARTED = "Started"
    PREPARING = "Preparing"
    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"
    DELETING = "Deleting"


@dataclass(frozen=True)
class HealthCheck:
    """DataSphere's docker-node health check: an HTTP path or a gRPC health service."""

    __pydantic_config__: ClassVar[ConfigDict] = STRICT

    kind: Literal["http", "grpc"] = "http"
    path: str = "/readyz"
    grpc_service: str = ""
    timeout_s: float = 2.0
    interval_s: float = 1.0
    fail_threshold: int = 3
    pass_threshold: int = 1
    start_period_s: float = 60.0
    """Failures while an instance starts make it Unhealthy only after this long (Docker's name)."""
    port: int | None = None
    """The container port the check probes (an --image node); None: the serving port, or the
    gRPC port for a gRPC check."""


@dataclass(frozen=True)
class Telemetry:
    __pydantic_config__: ClassVar[ConfigDict] = STRICT

    path: str = "/metrics"
    port: int | None = None
    """Inside the instance; None means the HTTP port."""


@dataclass(frozen=True)
class Autoscaling:
    __pydantic_config__: ClassVar[ConfigDict] = STRICT

    target_in_flight: float = 4.0
    """In-flight requests per instance that the autoscaler aims at."""
    up_window_s: float = 5.0
    down_window_s: float = 60.0


IMAGE_ONLY_PORTS = ("--metrics-port", "--health-port")
"""Extra container ports: a checkpoint's instances have no use for them."""


@dataclass(frozen=True)
class NodeSpec:
    __pydantic_config__: ClassVar[ConfigDict] = STRICT

    name: str
    checkpoint: str | None = None
    """A checkpoint directory (the image is built from it, or it is served by the local backend)."""
    image: str | None = None
    backend: Literal["docker", "local"] = "docker"
    port: int = 8080
    grpc_port: int | None = 9090
    protocol: Literal["http", "grpc"] = "http"
    request_timeout_s: float = 60.0
    idle_timeout_s: float = 300.0
    health: HealthCheck = field(default_factory=HealthCheck)
    telemetry: Telemetry = field(default_factory=Telemetry)
    env: dict[str, str] = field(default_factory=dict)
    min_instances: int = 1
    max_instances: int = 1
    maintenance_limit: int = 1
    """Instances that may be replaced at once during an update."""
    autoscaling: Autoscaling = field(default_factory=Autoscaling)

    def validate(self) -> NodeSpec:
        """``self`` if its settings are valid; first, that its JSON form reads back (what the
        store keeps can be read: no null where a value is needed, no NaN)."""
        self.from_json(_node_spec_json().dump_json(self, warnings=False))
        if not NAME.match(self.name):
            raise NodeSpecError(
                f"node name {self.name!r} is invalid: use 1-63 lowercase letters, digits and "
                "hyphens, starting with a letter"
            )
        if (self.checkpoint is None) == (self.image is None):
            raise NodeSpecError("give a node either --checkpoint CKPT or --image IMAGE")
        if self.backend == "local" and self.checkpoint is None:
            raise NodeSpecError(
                "the local backend runs `checkpoint2svc serve`, so it needs --checkpoint; "
                "an --image node needs the docker backend"
            )
        if self.min_instances < 0 or self.max_instances < 1:
            raise NodeSpecError("--min must be >= 0 and --max >= 1")
        if self.min_instances > self.max_instances:
            raise NodeSpecError(
                f"--min {self.min_instances} is greater than --max {self.max_instances}"
            )
        ports = {
            "--port": self.port,
            "--grpc-port": self.grpc_port,
            "--metrics-port": self.telemetry.port,
            "--health-port": self.health.port,
        }
        for label, port in ports.items():
            if port is not None and not 0 < port < 65536:
                raise NodeSpecError(f"{label} {port} is not a port (1-65535)")
            if port is not None and label in IMAGE_ONLY_PORTS and self.checkpoint is not None:
                raise NodeSpecError(
                    f"{label} is for --image nodes: a checkpoint's instances serve metrics "
                    "(at --metrics-path) and health checks on their serving ports"
                )
        if self.health.kind == "grpc" and self.grpc_port is None and self.health.port is None:
            raise NodeSpecError("a gRPC health check needs --grpc-port or --health-port")
        if self.health.fail_threshold < 1 or self.health.pass_threshold < 1:
            raise NodeSpecError("health-check thresholds must be >= 1")
        if self.maintenance_limit < 1:
            raise NodeSpecError("--maintenance-limit must be >= 1")
        return self

    def to_json(self) -> str:
        """Its JSON form (the store's, and the API's): the fields by name, nested ones too."""
        return _node_spec_json().dump_json(self).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> NodeSpec:
        """The inverse of ``to_json`` (not validated); names an unknown or mistyped setting."""
        try:
            return _node_spec_json().validate_json(text)
        except ValidationError as exc:
            raise NodeSpecError(invalid_settings("node", exc.errors())) from None

    def updated(self, **changes: Any) -> NodeSpec:
        return replace(self, **changes).validate()


def invalid_settings(what: str, errors: Iterable[ErrorDetails], skip: int = 0) -> str:
    """What pydantic found wrong, one ``field.path: problem`` per error (after ``skip`` parts of
    the path, such as the API's ``body``)."""
    return f"invalid {what} settings: {problems(errors, skip)}"


def problems(errors: Iterable[ErrorDetails], skip: int = 0) -> str:
    """Each error as ``field.path: problem``, after ``skip`` parts of its path."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'][skip:] or error['loc'])}: {error['msg']}"
        for error in errors
    )


@functools.cache
def optional_settings() -> frozenset[str]:
    """The node settings that may be None (a node goes without them)."""
    hints = typing.get_type_hints(NodeSpec)
    return frozenset(name for name, hint in hints.items() if type(None) in typing.get_args(hint))


@functools.cache
def _node_spec_json() -> TypeAdapter[NodeSpec]:
    return TypeAdapter(NodeSpec)


@dataclass
class InstanceRecord:
    """What the controller knows of one instance: the backend's handle (rebuilt from the backend
    after a restart) and what health checks found."""

    handle: InstanceHandle
    status: InstanceStatus = InstanceStatus.CREATED
    passes: int = 0
    fails: int = 0
    last_check: float = 0.0
    last_error: str = ""
    version: str = ""
    """See ``controller.instance_version``."""

    @property
    def id(self) -> str:
        return self.handle.instance_id

    @property
    def node(self) -> str:
        return self.handle.node

    @property
    def backend(self) -> str:
        return self.handle.backend

    @property
    def host(self) -> str:
        return self.handle.host

    @property
    def http_port(self) -> int:
        return self.handle.http_port

    @property
    def grpc_port(self) -> int | None:
        return self.handle.grpc_port

    @property
    def created_at(self) -> float:
        return self.handle.created_at


@dataclass(frozen=True)
class Event:
    time: float
    node: str
    message: str
    instance: str = ""

    @classmethod
    def now(cls, node: str, message: str, instance: str = "") -> Event:
        return cls(time.time(), node, message, instance)


Weights = tuple[tuple[str, int], ...]
"""An alias's nodes and their percentages, in order."""


@dataclass(frozen=True)
class AliasSpec:
    """A stable name over nodes; each node gets ``weight`` percent of the requests."""

    name: str
    nodes: Weights
    metadata: dict[str, str] = field(default_factory=dict)
    sticky_header: str = ""
    """Keeps a client on one instance by this header's value (for shared-mode nodes)."""
    sticky_cookie: str = ""

    def validate(self) -> AliasSpec:
        if not NAME.match(self.name):
            raise NodeSpecError(
                f"alias name {self.name!r} is invalid: use 1-63 lowercase letters, digits and "
                "hyphens, starting with a letter"
            )
        if not self.nodes:
            raise NodeSpecError("an alias needs at least one --node NODE=WEIGHT")
        names = [node for node, _ in self.nodes]
        if len(set(names)) != len(names):
            raise NodeSpecError(f"alias {self.name} names a node twice: {', '.join(names)}")
        if any(not 0 <= weight <= 100 for _, weight in self.nodes):
            raise NodeSpecError("alias weights are percentages from 0 to 100")
        if self.sticky_header and self.sticky_cookie:
            raise NodeSpecError("give --sticky-header or --sticky-cookie, not both")
        total = sum(weight for _, weight in self.nodes)
        if total != 100:
            shown = ", ".join(f"{node}={weight}" for node, weight in self.nodes)
            raise NodeSpecError(f"alias weights must add up to 100, not {total} ({shown})")
        return self

    def to_json(self) -> str:
        """Its JSON form (the store's): the fields by name, each node as ``{node, weight}``."""
        stored = _StoredAlias(
            name=self.name, nodes=alias_nodes(self.nodes), metadata=dict(self.metadata),
            sticky_header=self.sticky_header, sticky_cookie=self.sticky_cookie,
        )  # fmt: skip
        return stored.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> AliasSpec:
        """The inverse of ``to_json`` (not validated); names a missing or mistyped setting."""
        try:
            stored = _StoredAlias.model_validate_json(text)
        except ValidationError as exc:
            raise NodeSpecError(invalid_settings("alias", exc.errors())) from None
        return cls(
            stored.name, node_weights(stored.nodes), dict(stored.metadata),
            stored.sticky_header, stored.sticky_cookie,
        )  # fmt: skip


class AliasNode(BaseModel):
    """One node of an alias and its share, as the API and the store write it."""

    model_config = ConfigDict(frozen=True)

    node: str
    weight: int
    """Percent of the alias's requests."""


def alias_nodes(weights: Weights) -> tuple[AliasNode, ...]:
    """``weights`` in their JSON form (``node_weights`` reads it back)."""
    return tuple(AliasNode(node=node, weight=weight) for node, weight in weights)


def node_weights(nodes: Iterable[AliasNode]) -> Weights:
    return tuple((n.node, n.weight) for n in nodes)


class _StoredAlias(BaseModel):
    """An alias as the store keeps it (the settings an older version did not write default)."""

    name: str
    nodes: tuple[AliasNode, ...] = ()
    metadata: dict[str, str] = {}
    sticky_header: str = ""
    sticky_cookie: str = ""


def rebalance(weights: Sequence[tuple[str, int]], share: int = 100) -> Weights:
    """Scale ``weights`` to add up to ``share``, keeping their proportions; nodes left with 0
    are dropped. The rounding goes to the largest remainders (70/30 scaled to 25 is 18/7, the
    closest to 17.5/7.5), and when every weight is 0 the share is split equally. The one rule
    for a node leaving an alias (``node delete --force``, ``undeploy``) and for a canary
    taking a share of it (``deploy --weight``)."""
    if share <= 0 or not weights:
        return ()
    total = sum(weight for _, weight in weights)
    if total == 0:
        weights, total = [(node, 1) for node, _ in weights], len(weights)
    exact = [(node, weight * share / total) for node, weight in weights]
    scaled = {node: int(value) for node, value in exact}
    left = share - sum(scaled.values())
    by_remainder = sorted(exact, key=lambda item: item[1] - int(item[1]), reverse=True)
    for node, _ in by_remainder[:left]:
        scaled[node] += 1
    return tuple((node, scaled[node]) for node, _ in weights if scaled[node] > 0)


def without_nodes(weights: Weights, nodes: Collection[str]) -> Weights:
    """An alias's ``weights`` with ``nodes`` taken out, their share given to the others in
    proportion (``rebalance``); empty when none is left. A node at 0 stays in the alias at 0;
    when every node left is at 0, they share equally ({a: 100, b: 0, c: 0} without a is
    {b: 50, c: 50})."""
    rest = [(node, weight) for node, weight in weights if node not in nodes]
    shares = dict(rebalance(rest))
    return tuple((node, shares.get(node, 0)) for node, _ in rest)
