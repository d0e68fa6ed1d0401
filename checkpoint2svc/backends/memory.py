"""Instances as records in memory: the backends of the in-process test tier (tests/inprocess).

Nothing runs. A ``MemoryMachine`` holds the instances; ``machine.backend("local")`` and
``machine.backend("docker")`` are the two backends over it (each starts, lists and stops its own,
as the real ones do). ``start`` makes a record with host ports of its own, a run state, a health
answer, log lines and a metrics text; a test changes them with the machine's hooks (``exit``,
``vanish``, ``set_healthy``, ``write_log``, ``set_metrics``, ``start_error``,
``missing_images``). The controller's health probes and metrics scrapes are answered from the same
records: ``machine.http_get`` and ``machine.grpc_check`` answer one port each for
``control.health.probe``, which holds the rules and the messages; ``machine.scrape`` is the
``Controller``'s scraper.
"""

from __future__ import annotations

import errno
import functools
import itertools
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from checkpoint2svc.backends.base import (
    SOCKET_NAME,
    InstanceHandle,
    InstanceSpec,
    RunState,
    RunStatus,
)
from checkpoint2svc.errors import BackendError, ImageMissingError

HOST = "127.0.0.1"
FIRST_PORT = 20000


def refused() -> ConnectionRefusedError:
    """What asking a port nothing listens on meets."""
    return ConnectionRefusedError(errno.ECONNREFUSED, os.strerror(errno.ECONNREFUSED))


@dataclass
class MemoryInstance:
    spec: InstanceSpec
    handle: InstanceHandle
    state: RunState = RunState.RUNNING
    exit_code: int | None = None
    healthy: bool = True
    unhealthy_reason: str = "not ready"
    lines: list[str] = field(default_factory=list)
    metrics: str = ""


class MemoryMachine:
    """The instances of both memory backends, their ports, and the hooks tests change them by."""

    def __init__(self, healthy_at_start: bool = True) -> None:
        self.healthy_at_start = healthy_at_start
        """The health answer of instances started from now on."""
        self.start_error: BackendError | None = None
        """Raised by every ``start`` while set (an engine that refuses to create containers)."""
        self.missing_images: set[str] = set()
        """Images the engine does not have: ``start`` raises ``ImageMissingError`` for them."""
        self.started: list[InstanceSpec] = []
        """Every spec ``start`` was given, in order (a failed start included)."""
        self.stopped: list[str] = []
        """The ids of the instances ``stop`` removed, in order."""
        self._instances: dict[str, MemoryInstance] = {}
        self._ports = itertools.count(FIRST_PORT)
        self._changed = threading.Condition()

    def backend(self, name: str) -> MemoryBackend:
        """The backend called ``name`` (``"local"``, ``"docker"``) on this machine."""
        return MemoryBackend(name, self)

    # --- what the backends do ----------------------------------------------------------------
    def start(self, backend: str, spec: InstanceSpec) -> InstanceHandle:
        with self._changed:
            self.started.append(spec)
            if self.start_error is not None:
                raise self.start_error
            if backend == "docker" and spec.image is None:
                raise BackendError(
                    f"instance {spec.instance_id}: the docker backend needs an image"
                )
            if backend != "docker" and spec.checkpoint is None:
                raise BackendError(f"instance {spec.instance_id}: the {backend} backend needs a "
                                   "checkpoint")  # fmt: skip
            if spec.image is not None and spec.image in self.missing_images:
                raise ImageMissingError(f"image {spec.image} is not in the engine")
            handle = InstanceHandle(
                instance_id=spec.instance_id,
                node=spec.node,
                backend=backend,
                ref=f"memory-{spec.instance_id}",
                host=HOST,
                http_port=next(self._ports),
                grpc_port=None if spec.grpc_port is None else next(self._ports),
                created_at=time.time(),
                http_socket=str(spec.socket_dir / SOCKET_NAME) if spec.socket_dir else "",
                version=spec.version,
                metrics_port=0 if spec.metrics_port is None else next(self._ports),
                health_port=0 if spec.health_port is None else next(self._ports),
            )
            instance = MemoryInstance(spec, handle, healthy=self.healthy_at_start)
            instance.lines.append(f"{spec.node}: serving HTTP on {HOST}:{handle.http_port}")
            self._instances[spec.instance_id] = instance
            self._changed.notify_all()
            return handle

    def handles(self, backend: str, controller_id: str) -> list[InstanceHandle]:
        """What ``backend``'s ``list`` finds: its instances of ``controller_id``."""
        with self._changed:
            return [
                i.handle
                for i in self._instances.values()
                if i.spec.controller_id == controller_id and i.handle.backend == backend
            ]

    def status(self, handle: InstanceHandle) -> RunStatus:
        with self._changed:
            instance = self._instances.get(handle.instance_id)
            if instance is None:
                return RunStatus(RunState.MISSING)
            return RunStatus(instance.state, instance.exit_code)

    def stop(self, handle: InstanceHandle, timeout: float = 10) -> None:
        with self._changed:
            if self._instances.pop(handle.instance_id, None) is not None:
                self.stopped.append(handle.instance_id)
            self._changed.notify_all()

    def logs(self, handle: InstanceHandle, tail: int = 50, follow: bool = False) -> Iterator[str]:
        with self._changed:
            instance = self._instances.get(handle.instance_id)
            if instance is None:
                return
            shown = len(instance.lines)
            lines = instance.lines[max(0, shown - tail) :] if tail > 0 else []
        yield from lines
        while follow:
            with self._changed:
                self._changed.wait_for(functools.partial(self._news, instance, shown), 1.0)
                new, shown = instance.lines[shown:], len(instance.lines)
                running = self._is_running(instance)
            yield from new
            if not running:
                return

    # --- what the controller's probes and scrapes reach -------------------------------------
    def http_get(self, host: str, port: int, check: object) -> tuple[int, str]:
        """A health GET at this port, answered by the instance listening there: (200, "") or
        (503, its unhealthy reason); refused when none listens (``control.health.HttpGet``)."""
        instance = self._listening(host, port, "http")
        if instance is None:
            raise refused()
        return (200, "") if instance.healthy else (503, instance.unhealthy_reason)

    def grpc_check(self, host: str, port: int, check: object) -> str:
        """A gRPC health check at this port, answered by the instance whose gRPC server listens
        there: its serving status; refused when none listens (``control.health.GrpcCheck``)."""
        instance = self._listening(host, port, "grpc")
        if instance is None:
            raise refused()
        return "SERVING" if instance.healthy else "NOT_SERVING"

    def scrape(self, url: str) -> str:
        """An instance's metrics text at ``url``; "" when nothing answers there."""
        parts = urlsplit(url)
        instance = self._listening(parts.hostname or "", parts.port or 80, "metrics")
        return instance.metrics if instance is not None else ""

    def _listening(self, host: str, port: int, kind: str) -> MemoryInstance | None:
        with self._changed:
            for instance in self._instances.values():
                handle = instance.handle
                ports = {
                    "http": (handle.http_port, handle.health_port),
                    "grpc": (handle.grpc_port, handle.health_port),
                    "metrics": (handle.metrics_port or handle.http_port,),
                }[kind]
                if host == handle.host and port in ports and self._is_running(instance):
                    return instance
        return None

    def _news(self, instance: MemoryInstance, seen: int) -> bool:
        return len(instance.lines) > seen or not self._is_running(instance)

    @staticmethod
    def _is_running(instance: MemoryInstance) -> bool:
        return instance.state == RunState.RUNNING

    # --- test hooks -------------------------------------------------------------------------
    def instances(self, node: str | None = None) -> list[MemoryInstance]:
        """The instances the backend holds (of ``node``), oldest first."""
        with self._changed:
            found = [i for i in self._instances.values() if node is None or i.spec.node == node]
        return sorted(found, key=lambda i: i.handle.created_at)

    def instance(self, instance_id: str) -> MemoryInstance:
        with self._changed:
            return self._instances[instance_id]

    def exit(self, instance_id: str, code: int = 1, *last_lines: str) -> None:
        """The instance's process ends with ``code``, having printed ``last_lines``."""
        with self._changed:
            instance = self._instances[instance_id]
            instance.lines.extend(last_lines)
            instance.state, instance.exit_code = RunState.EXITED, code
            self._changed.notify_all()

    def vanish(self, instance_id: str) -> None:
        """The instance is gone without a trace (a container removed by hand)."""
        with self._changed:
            del self._instances[instance_id]
            self._changed.notify_all()

    def set_healthy(self, instance_id: str, healthy: bool, reason: str = "not ready") -> None:
        with self._changed:
            instance = self._instances[instance_id]
            instance.healthy, instance.unhealthy_reason = healthy, reason

    def write_log(self, instance_id: str, *lines: str) -> None:
        with self._changed:
            self._instances[instance_id].lines.extend(lines)
            self._changed.notify_all()

    def set_metrics(self, instance_id: str, text: str) -> None:
        with self._changed:
            self._instances[instance_id].metrics = text


@dataclass
class MemoryBackend:
    """One backend of a ``MemoryMachine`` (what ``InstanceBackend`` asks for)."""

    name: str
    machine: MemoryMachine

    def start(self, spec: InstanceSpec) -> InstanceHandle:
        return self.machine.start(self.name, spec)

    def list(self, controller_id: str) -> list[InstanceHandle]:
        return self.machine.handles(self.name, controller_id)

    def status(self, handle: InstanceHandle) -> RunStatus:
        return self.machine.status(handle)

    def stop(self, handle: InstanceHandle, timeout: float = 10) -> None:
        self.machine.stop(handle, timeout)

    def logs(self, handle: InstanceHandle, tail: int = 50, follow: bool = False) -> Iterator[str]:
        return self.machine.logs(handle, tail, follow)
