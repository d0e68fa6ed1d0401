"""Instances as Docker containers of a local image, with their ports on 127.0.0.1 only.

Each container is named ``c2s-<instance>`` and labelled with its controller, node and instance,
so that a restarted controller adopts it by label. Images are never pulled: a missing image is
an error that says how to build it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping
from typing import Any

import docker
from docker.models.containers import Container

from checkpoint2svc.backends.base import (
    CONTAINER_SOCKET_DIR,
    SOCKET_NAME,
    InstanceHandle,
    InstanceSpec,
    RunState,
    RunStatus,
)
from checkpoint2svc.errors import BackendError, ImageMissingError

HOST = "127.0.0.1"
NODE_ID_VARIABLE = "CHECKPOINT2SVC_NODE_ID"
CONTROLLER_LABEL = "org.checkpoint2svc.controller"
NODE_LABEL = "org.checkpoint2svc.node"
INSTANCE_LABEL = "org.checkpoint2svc.instance"
CREATED_LABEL = "org.checkpoint2svc.instance-created-at"
HTTP_PORT_LABEL = "org.checkpoint2svc.instance-http-port"
"""The container-side ports (the image's own ``http-port``/``grpc-port`` labels are not
overwritten), so that the host-side ones can be looked up again on adoption."""
GRPC_PORT_LABEL = "org.checkpoint2svc.instance-grpc-port"
METRICS_PORT_LABEL = "org.checkpoint2svc.instance-metrics-port"
HEALTH_PORT_LABEL = "org.checkpoint2svc.instance-health-port"
SOCKET_LABEL = "org.checkpoint2svc.instance-http-socket"
VERSION_LABEL = "org.checkpoint2svc.instance-version"
SOCKET_VARIABLE = "CHECKPOINT2SVC_HTTP_SOCKET"

_STATES = {
    "created": RunState.CREATED,
    "running": RunState.RUNNING,
    "paused": RunState.RUNNING,
    "restarting": RunState.RUNNING,
    "removing": RunState.EXITED,
    "exited": RunState.EXITED,
    "dead": RunState.EXITED,
}


def container_name(instance_id: str) -> str:
    return f"c2s-{instance_id}"


def instance_labels(spec: InstanceSpec, created_at: float) -> dict[str, str]:
    labels = {
        CONTROLLER_LABEL: spec.controller_id,
        NODE_LABEL: spec.node,
        INSTANCE_LABEL: spec.instance_id,
        CREATED_LABEL: repr(created_at),
        HTTP_PORT_LABEL: str(spec.http_port),
    }
    if spec.grpc_port is not None:
        labels[GRPC_PORT_LABEL] = str(spec.grpc_port)
    if spec.socket_dir is not None:
        labels[SOCKET_LABEL] = str(spec.socket_dir / SOCKET_NAME)
    if spec.version:
        labels[VERSION_LABEL] = spec.version
    extra_ports = {METRICS_PORT_LABEL: spec.metrics_port, HEALTH_PORT_LABEL: spec.health_port}
    labels.update({label: str(port) for label, port in extra_ports.items() if port is not None})
    return labels


def handle_from_attrs(attrs: Mapping[str, Any]) -> InstanceHandle:
    """A handle from ``docker inspect`` data; a port that is not published (the container is
    not running) is 0."""
    labels = attrs["Config"]["Labels"] or {}
    ports = attrs["NetworkSettings"].get("Ports") or {}

    def host_port(label: str) -> int:
        """The host side of the port ``label`` names; 0 when unpublished or not labelled."""
        if label not in labels:
            return 0
        bindings = ports.get(f"{labels[label]}/tcp") or []
        return next((int(b["HostPort"]) for b in bindings if b.get("HostPort")), 0)

    return InstanceHandle(
        instance_id=labels[INSTANCE_LABEL], node=labels[NODE_LABEL], backend="docker",
        ref=attrs["Id"], host=HOST, http_port=host_port(HTTP_PORT_LABEL),
        grpc_port=host_port(GRPC_PORT_LABEL) if GRPC_PORT_LABEL in labels else None,
        created_at=float(labels.get(CREATED_LABEL, 0)), http_socket=labels.get(SOCKET_LABEL, ""),
        version=labels.get(VERSION_LABEL, ""),
        metrics_port=host_port(METRICS_PORT_LABEL), health_port=host_port(HEALTH_PORT_LABEL),
    )  # fmt: skip


def run_status_from_attrs(attrs: Mapping[str, Any]) -> RunStatus:
    state = attrs["State"]
    run = _STATES.get(state["Status"], RunState.EXITED)
    return RunStatus(run, int(state["ExitCode"]) if run == RunState.EXITED else None)


def _engine_message(exc: docker.errors.APIError) -> str:
    return str(exc.explanation or exc)


class DockerBackend:
    name = "docker"

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        self._client = client

    @property
    def client(self) -> docker.DockerClient:
        """The engine, connected on first use (``DockerUnavailableError`` when none answers)."""
        if self._client is None:
            from checkpoint2svc.image.engine import docker_client

            self._client = docker_client()
        return self._client

    def start(self, spec: InstanceSpec) -> InstanceHandle:
        if not spec.image:
            raise BackendError(
                f"instance {spec.instance_id} of node {spec.node} has no image: the docker "
                "backend runs a local image; give the node an image or a checkpoint to build"
            )
        name = container_name(spec.instance_id)
        ports: dict[str, tuple[str, None]] = {f"{spec.http_port}/tcp": (HOST, None)}
        for extra in (spec.grpc_port, spec.metrics_port, spec.health_port):
            if extra is not None:
                ports[f"{extra}/tcp"] = (HOST, None)
        try:
            self.client.images.get(spec.image)
            # create + start, never containers.run: that pulls an image it does not find
            environment = {**spec.env, NODE_ID_VARIABLE: spec.node}
            volumes = {}
            if spec.socket_dir is not None:  # the instance's socket, reachable from the host
                volumes[str(spec.socket_dir)] = {"bind": CONTAINER_SOCKET_DIR, "mode": "rw"}
                environment[SOCKET_VARIABLE] = f"{CONTAINER_SOCKET_DIR}/{SOCKET_NAME}"
            container = self.client.containers.create(
                spec.image, detach=True, name=name, ports=ports,
                labels=instance_labels(spec, time.time()), environment=environment,
                volumes=volumes,
            )  # fmt: skip
        except docker.errors.ImageNotFound as exc:
            raise ImageMissingError(
                f"image {spec.image} is not in the local Docker engine (images are never "
                f"pulled); build it with `checkpoint2svc build CHECKPOINT --tag {spec.image}`"
            ) from exc
        except docker.errors.APIError as exc:
            raise BackendError(
                f"the Docker engine cannot create container {name} of image {spec.image}: "
                f"{_engine_message(exc)}"
            ) from exc
        try:
            container.start()
            container.reload()
        except docker.errors.APIError as exc:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
            raise BackendError(
                f"the Docker engine cannot start container {name} of image {spec.image}: "
                f"{_engine_message(exc)}"
            ) from exc
        return handle_from_attrs(container.attrs)

    def list(self, controller_id: str) -> list[InstanceHandle]:
        try:
            containers = self.client.containers.list(
                all=True, filters={"label": f"{CONTROLLER_LABEL}={controller_id}"},
                ignore_removed=True,
            )  # fmt: skip
        except docker.errors.APIError as exc:
            raise BackendError(f"cannot list containers: {_engine_message(exc)}") from exc
        handles = [handle_from_attrs(c.attrs) for c in containers]
        return sorted(handles, key=lambda h: h.created_at)

    def status(self, handle: InstanceHandle) -> RunStatus:
        container = self._container(handle)
        if container is None:
            return RunStatus(RunState.MISSING)
        return run_status_from_attrs(container.attrs)

    def stop(self, handle: InstanceHandle, timeout: float = 10) -> None:
        container = self._container(handle)
        if container is None:
            return
        try:
            container.stop(timeout=math.ceil(timeout))
            container.remove(force=True)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if exc.status_code == 409 and "already in progress" in _engine_message(exc):
                return
            raise BackendError(
                f"cannot stop and remove container {handle.ref[:12]} of instance "
                f"{handle.instance_id}: {_engine_message(exc)}"
            ) from exc

    def logs(self, handle: InstanceHandle, tail: int = 50, follow: bool = False) -> Iterator[str]:
        container = self._container(handle)
        if container is None:
            return
        try:
            if not follow:
                data: bytes = container.logs(tail=tail)
                yield from (_text(line) for line in data.splitlines())
                return
            pending = b""
            for chunk in container.logs(tail=tail, stream=True, follow=True):
                *lines, pending = (pending + chunk).split(b"\n")
                yield from (_text(line) for line in lines)
            if pending:
                yield _text(pending)
        except docker.errors.NotFound:
            return

    def _container(self, handle: InstanceHandle) -> Container | None:
        try:
            return self.client.containers.get(handle.ref)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            raise BackendError(
                f"cannot inspect container {handle.ref[:12]} of instance {handle.instance_id}: "
                f"{_engine_message(exc)}"
            ) from exc


def _text(line: bytes) -> str:
    return line.decode(errors="replace").rstrip("\r")
