"""What every backend offers: start, list (adopt), status, stop and logs of a node's instances.

A backend owns no desired state: the controller asks it what runs. Everything a backend starts
is marked with the controller's id (container labels, state files), so that a restarted
controller finds its instances again with ``list`` instead of duplicating or orphaning them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from checkpoint2svc.errors import BackendError

BACKEND_NAMES = ("docker", "local")
PING_TIMEOUT_S = 2


class RunState(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    MISSING = "missing"
    """The backend does not know the instance (removed, or never started by it)."""


@dataclass(frozen=True)
class InstanceSpec:
    node: str
    instance_id: str
    controller_id: str
    """Written into labels / state files; ``list`` returns only this controller's instances."""
    image: str | None = None
    """Docker backend: a local image tag (never pulled)."""
    checkpoint: Path | None = None
    """Local backend: a checkpoint or generated directory served by ``checkpoint2svc serve``."""
    http_port: int = 8080
    """The port the instance serves HTTP on inside its container; the local backend picks a free
    host port instead."""
    grpc_port: int | None = 9090
    """None: the instance has no gRPC port."""
    metrics_port: int | None = None
    """A port inside the container serving the node's Prometheus metrics, published too
    (docker); None: they are served on ``http_port``."""
    health_port: int | None = None
    """A port inside the container that answers health checks, published too (docker); None:
    the serving ports do."""
    env: dict[str, str] = field(default_factory=dict)
    socket_dir: Path | None = None
    """A directory for the instance's unix socket (``SOCKET_NAME``), which it serves HTTP on
    besides its port; None: the port only (an image that is not checkpoint2svc's)."""
    version: str = ""
    """The controller's version of the node this instance runs (labels / state file), so that a
    restarted controller knows whether a rollout still has to replace it."""


SOCKET_NAME = "http.sock"
CONTAINER_SOCKET_DIR = "/run/checkpoint2svc"
"""Where a container sees its socket directory (a bind mount of ``socket_dir``)."""


@dataclass(frozen=True)
class InstanceHandle:
    instance_id: str
    node: str
    backend: str
    """``"docker"`` or ``"local"``."""
    ref: str
    """The container id, or the process id as text."""
    host: str
    http_port: int
    """Host-side port; 0 when unknown (a container that exited before it was adopted)."""
    grpc_port: int | None
    created_at: float
    """Epoch seconds."""
    http_socket: str = ""
    """The host path of the instance's unix socket; empty when it serves its port only."""
    version: str = ""
    """``InstanceSpec.version``; empty for an instance started before versions were recorded."""
    metrics_port: int = 0
    """Host-side port of ``InstanceSpec.metrics_port``; 0: the metrics are on ``http_port``."""
    health_port: int = 0
    """Host-side port of ``InstanceSpec.health_port``; 0: the serving ports answer checks."""


@dataclass(frozen=True)
class RunStatus:
    state: RunState
    exit_code: int | None = None
    """Known for containers, and for processes that are children of this process; a process
    killed by a signal reports 128 + the signal's number, as a container does."""


class InstanceBackend(Protocol):
    name: str

    def start(self, spec: InstanceSpec) -> InstanceHandle:
        """Create and start the instance; returns at once, without waiting for readiness."""
        ...

    def list(self, controller_id: str) -> list[InstanceHandle]:
        """Every instance of ``controller_id`` still known (running or exited)."""
        ...

    def status(self, handle: InstanceHandle) -> RunStatus: ...

    def stop(self, handle: InstanceHandle, timeout: float = 10) -> None:
        """SIGTERM, SIGKILL after ``timeout`` seconds, then remove; a no-op when already gone."""
        ...

    def logs(self, handle: InstanceHandle, tail: int = 50, follow: bool = False) -> Iterator[str]:
        """The last ``tail`` lines of output; with ``follow``, then new lines until it stops."""
        ...


def default_backend_name() -> Literal["docker", "local"]:
    """``"docker"`` when a Docker engine answers a ping within a few seconds, else ``"local"``."""
    from checkpoint2svc.errors import DockerUnavailableError
    from checkpoint2svc.image.engine import docker_client

    try:
        client = docker_client(timeout=PING_TIMEOUT_S)
    except DockerUnavailableError:
        return "local"
    client.close()
    return "docker"


def create_backend(name: str, home: Path) -> InstanceBackend:
    """The backend called ``name``; ``home`` holds the local backend's state files and logs."""
    if name == "docker":
        from checkpoint2svc.backends.docker import DockerBackend

        return DockerBackend()
    if name == "local":
        from checkpoint2svc.backends.local import LocalBackend

        return LocalBackend(home)
    raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
