"""What the controller's API sends and receives, as types: the views it answers with and the
bodies it takes. FastAPI documents them in the controller's ``/openapi.json``; the API client
parses its answers into them, so the CLI, the deployer and the notebook magic read attributes.

A node's settings are ``models.NodeSpec`` itself (a dataclass pydantic validates), so a new
setting is added in one place; ``NodePatch`` names each setting once more, each optional (a test
checks that the two agree); null only where ``NodeSpec`` allows None.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from checkpoint2svc.control.models import (
    AliasNode,
    AliasSpec,
    Autoscaling,
    Event,
    HealthCheck,
    InstanceRecord,
    InstanceStatus,
    NodeSpec,
    NodeStatus,
    Telemetry,
    Weights,
    alias_nodes,
    node_weights,
    optional_settings,
)

if TYPE_CHECKING:
    from checkpoint2svc.control.controller import Controller
    from checkpoint2svc.control.store import NodeRow


class View(BaseModel):
    """An answer of the API (frozen; a field a newer controller adds is ignored)."""

    model_config = ConfigDict(frozen=True)


class Body(BaseModel):
    """A request body (frozen; an unknown field, or a number that is not finite, is refused, by
    name)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class ErrorView(View):
    """Every refusal: 401 (token), 404 (no such node, alias or instance), 409 (a conflict: the
    name exists, an alias uses the node, the node is incompatible), 422 (invalid settings)."""

    detail: str


def gateway_address(gateway_port: int) -> str:
    """host:port of the gateway (REST and gRPC)."""
    return f"127.0.0.1:{gateway_port}"


def grpc_metadata(kind: Literal["node", "alias"], name: str) -> tuple[str, str]:
    """The gRPC metadata by which the gateway routes to a node or an alias."""
    return ("x-node-id", name) if kind == "node" else ("x-node-alias", name)


class Endpoint(View):
    rest: str
    """The REST URL through the gateway."""
    grpc: str
    """The gateway's gRPC target and the metadata that routes to the node or alias."""

    @classmethod
    def of(cls, kind: Literal["node", "alias"], name: str, gateway_port: int) -> Endpoint:
        plural = "nodes" if kind == "node" else "aliases"
        gateway = gateway_address(gateway_port)
        header, _ = grpc_metadata(kind, name)
        return cls(
            rest=f"http://{gateway}/datasphere/v1/{plural}/{name}:execute",
            grpc=f"{gateway} (metadata {header}: {name})",
        )


class EventView(View):
    time: float
    instance: str
    message: str

    @classmethod
    def of(cls, event: Event) -> EventView:
        return cls(time=event.time, instance=event.instance, message=event.message)


class InstanceView(View):
    id: str
    node: str
    backend: str
    ref: str
    """The container id, or the process id as text."""
    host: str
    http_port: int
    grpc_port: int | None
    created_at: float
    http_socket: str
    version: str
    metrics_port: int
    health_port: int
    status: InstanceStatus
    passes: int
    fails: int
    last_check: float
    last_error: str

    @classmethod
    def of(cls, record: InstanceRecord) -> InstanceView:
        h = record.handle
        return cls(
            id=h.instance_id, node=h.node, backend=h.backend, ref=h.ref, host=h.host,
            http_port=h.http_port, grpc_port=h.grpc_port, created_at=h.created_at,
            http_socket=h.http_socket, version=record.version, metrics_port=h.metrics_port,
            health_port=h.health_port, status=record.status, passes=record.passes,
            fails=record.fails, last_check=record.last_check, last_error=record.last_error,
        )  # fmt: skip


class NodeView(View):
    name: str
    status: NodeStatus
    suspended: bool
    image: str
    """The image its instances run (built from the checkpoint, or given); empty before a build."""
    version: str | None
    """What its instances should run; None while its image builds."""
    build: str | None
    """The image build's last line, while it runs."""
    spec: NodeSpec
    endpoint: Endpoint
    instances: tuple[InstanceView, ...]
    healthy_instances: int
    events: tuple[EventView, ...]
    created: float


def node_view(controller: Controller, row: NodeRow, events: int = 10) -> NodeView:
    instances = controller.node_instances(row.name)
    return NodeView(
        name=row.name,
        status=row.status,
        suspended=row.suspended,
        image=row.image or row.spec.image or "",
        version=controller.desired_version(row),
        build=controller.build_progress(row.name),
        spec=row.spec,
        endpoint=Endpoint.of("node", row.name, controller.gateway_port),
        instances=tuple(InstanceView.of(r) for r in instances),
        healthy_instances=sum(r.status == InstanceStatus.HEALTHY for r in instances),
        events=tuple(EventView.of(e) for e in controller.store.events(row.name, events)),
        created=row.created,
    )


class AliasView(View):
    name: str
    nodes: tuple[AliasNode, ...]
    metadata: dict[str, str]
    sticky_header: str
    sticky_cookie: str
    node_status: dict[str, NodeStatus | Literal["missing"]]
    endpoint: Endpoint

    @property
    def weights(self) -> Weights:
        return node_weights(self.nodes)


def alias_view(controller: Controller, alias: AliasSpec) -> AliasView:
    statuses = {row.name: row.status for row in controller.store.nodes()}
    return AliasView(
        name=alias.name,
        nodes=alias_nodes(alias.nodes),
        metadata=dict(alias.metadata),
        sticky_header=alias.sticky_header,
        sticky_cookie=alias.sticky_cookie,
        node_status={node: statuses.get(node, "missing") for node, _ in alias.nodes},
        endpoint=Endpoint.of("alias", alias.name, controller.gateway_port),
    )


class ControllerStatus(View):
    controller_id: str
    gateway: str
    """host:port of the gateway (REST and gRPC)."""
    nodes: int
    time: float


class NodeDeleted(View):
    name: str
    status: NodeStatus


class AliasDeleted(View):
    name: str
    deleted: bool


class Stopping(View):
    status: Literal["stopping"] = "stopping"


# --- request bodies ---------------------------------------------------------------------------
class NodePatch(Body):
    """The settings to change (``node update``); a setting left out keeps its value. Each is a
    field of ``NodeSpec``; a nested one (health, telemetry, autoscaling) is replaced whole."""

    checkpoint: str | None = None
    image: str | None = None
    backend: Literal["docker", "local"] | None = None
    port: int | None = None
    grpc_port: int | None = None
    protocol: Literal["http", "grpc"] | None = None
    request_timeout_s: float | None = None
    idle_timeout_s: float | None = None
    health: HealthCheck | None = None
    telemetry: Telemetry | None = None
    env: dict[str, str] | None = None
    min_instances: int | None = None
    max_instances: int | None = None
    maintenance_limit: int | None = None
    autoscaling: Autoscaling | None = None

    @field_validator("*")
    @classmethod
    def _needs_a_value(cls, value: Any, info: ValidationInfo) -> Any:
        """None (JSON null) only where a node may go without the setting (checkpoint, image,
        grpc_port); elsewhere it is refused, naming the setting, rather than stored."""
        if value is None and info.field_name not in optional_settings():
            raise PydanticCustomError(
                "needs_value",
                "needs a value (only {optional} may be null); leave it out to keep the current one",
                {"optional": ", ".join(sorted(optional_settings()))},
            )
        return value

    def changed(self) -> list[str]:
        """The settings it changes, sorted."""
        return sorted(self.model_fields_set)

    def applied_to(self, spec: NodeSpec) -> NodeSpec:
        """``spec`` with these changes (not validated)."""
        return replace(spec, **{name: getattr(self, name) for name in self.model_fields_set})


class AliasPatch(Body):
    """An alias's settings to change; a setting left out keeps its value."""

    nodes: tuple[AliasNode, ...] | None = None
    metadata: dict[str, str] | None = None
    sticky_header: str | None = None
    """Keeps a client on one instance by this header's value; "" turns it off."""
    sticky_cookie: str | None = None
    allow_incompatible: bool = False
    """Accept a node whose inputs or outputs differ from the alias's (first) node."""

    def applied_to(self, alias: AliasSpec) -> AliasSpec:
        """``alias`` with these changes (not validated)."""
        return AliasSpec(
            alias.name,
            alias.nodes if self.nodes is None else node_weights(self.nodes),
            alias.metadata if self.metadata is None else dict(self.metadata),
            alias.sticky_header if self.sticky_header is None else self.sticky_header,
            alias.sticky_cookie if self.sticky_cookie is None else self.sticky_cookie,
        )


class AliasCreate(AliasPatch):
    """A new alias: its name and (at least) its nodes."""

    name: str

    def spec(self) -> AliasSpec:
        return self.applied_to(AliasSpec(self.name, ()))
