"""Instances as local processes: ``checkpoint2svc serve`` on free 127.0.0.1 ports.

Each instance runs in its own session (so it outlives a controller restart) and leaves a state
file, ``HOME/instances/<instance>.json``, from which a restarted controller adopts it; its output
goes to ``HOME/logs/<instance>.log``. A process is known by its pid *and* its start time (from
``/proc/<pid>/stat``), so a pid that the kernel has recycled is never taken for an instance.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from checkpoint2svc.backends.base import (
    SOCKET_NAME,
    InstanceHandle,
    InstanceSpec,
    RunState,
    RunStatus,
)
from checkpoint2svc.errors import BackendError

log = logging.getLogger("checkpoint2svc.backends.local")

HOST = "127.0.0.1"
NODE_ID_VARIABLE = "CHECKPOINT2SVC_NODE_ID"
FOLLOW_INTERVAL_S = 0.2

_children: dict[int, tuple[subprocess.Popen[bytes], int]] = {}
"""pid -> (process, start ticks) of every instance this interpreter started and has not stopped.
Holding the ``Popen`` keeps Python from reaping the child behind our back (and losing its exit
code); ``status``, ``stop``, ``list`` and ``start`` reap the ones that exited."""


# --- processes ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcStat:
    state: str
    """One letter: R, S, D, Z (zombie), X (dead), ..."""
    start_ticks: int
    """When the process started, in clock ticks after boot: with the pid, names one process."""


def reap_children() -> None:
    """Collect the exit status of every instance child that has exited (no zombies linger)."""
    for process, _ in list(_children.values()):
        process.poll()


def parse_proc_stat(text: str) -> ProcStat:
    """The state and start time of a ``/proc/<pid>/stat`` line (the command may hold ``) ``)."""
    fields = text.rsplit(")", 1)[1].split()
    # After the command: state is field 3 of stat(5), starttime field 22.
    return ProcStat(state=fields[0], start_ticks=int(fields[19]))


def read_proc_stat(pid: int) -> ProcStat | None:
    """None when no process ``pid`` exists."""
    try:
        return parse_proc_stat(Path(f"/proc/{pid}/stat").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return None


def is_alive(pid: int, start_ticks: int) -> bool:
    """Whether the process that started at ``start_ticks`` as ``pid`` still runs (not a zombie):
    a recycled pid has another start time and is not ours."""
    stat = read_proc_stat(pid)
    return stat is not None and stat.start_ticks == start_ticks and stat.state not in ("Z", "X")


def shell_exit_code(returncode: int) -> int:
    """``Popen.returncode`` as a shell (and Docker) reports it: killed by signal N -> 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports on 127.0.0.1 (all bound at once, then released)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind((HOST, 0))
        return [int(s.getsockname()[1]) for s in sockets]


# --- state files --------------------------------------------------------------------------
@dataclass(frozen=True)
class LocalState:
    """What ``HOME/instances/<instance>.json`` records of one instance."""

    instance_id: str
    node: str
    controller_id: str
    pid: int
    start_ticks: int
    http_port: int
    grpc_port: int | None
    created_at: float
    checkpoint: str
    http_socket: str = ""
    version: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: Path) -> LocalState:
        try:
            data: Any = json.loads(text)
            state = cls(
                instance_id=str(data["instance_id"]), node=str(data["node"]),
                controller_id=str(data["controller_id"]), pid=int(data["pid"]),
                start_ticks=int(data["start_ticks"]), http_port=int(data["http_port"]),
                grpc_port=None if data["grpc_port"] is None else int(data["grpc_port"]),
                created_at=float(data["created_at"]), checkpoint=str(data["checkpoint"]),
                http_socket=str(data.get("http_socket", "")), version=str(data.get("version", "")),
            )  # fmt: skip
        except (ValueError, TypeError, KeyError) as exc:
            raise BackendError(
                f"instance state file {source} is malformed ({exc!r}); if no such instance "
                "runs any more, delete the file"
            ) from exc
        return state

    def handle(self) -> InstanceHandle:
        return InstanceHandle(
            instance_id=self.instance_id, node=self.node, backend="local", ref=str(self.pid),
            host=HOST, http_port=self.http_port, grpc_port=self.grpc_port,
            created_at=self.created_at, http_socket=self.http_socket, version=self.version,
        )  # fmt: skip


class LocalBackend:
    name = "local"

    def __init__(self, home: Path) -> None:
        self.home = home
        self.state_dir = home / "instances"
        self.log_dir = home / "logs"

    def state_path(self, instance_id: str) -> Path:
        return self.state_dir / f"{instance_id}.json"

    def log_path(self, instance_id: str) -> Path:
        return self.log_dir / f"{instance_id}.log"

    def start(self, spec: InstanceSpec) -> InstanceHandle:
        checkpoint = self._checkpoint(spec)
        reap_children()
        http_port, grpc_port = free_ports(2)
        argv = [
            sys.executable, "-m", "checkpoint2svc", "serve", str(checkpoint), "--host", HOST,
            "--http-port", str(http_port),
            "--grpc-port", str(grpc_port if spec.grpc_port is not None else 0),
        ]  # fmt: skip
        http_socket = str(spec.socket_dir / SOCKET_NAME) if spec.socket_dir else ""
        if http_socket:
            argv += ["--http-socket", http_socket]
        env = {**os.environ, **spec.env, NODE_ID_VARIABLE: spec.node}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        created_at = time.time()
        try:
            with self.log_path(spec.instance_id).open("ab") as output:
                process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                    env=env, start_new_session=True,
                )  # fmt: skip
        except OSError as exc:
            raise BackendError(
                f"cannot start instance {spec.instance_id} of node {spec.node} "
                f"({' '.join(argv[:5])}): {exc}"
            ) from exc
        stat = read_proc_stat(process.pid)
        if stat is None:
            process.kill()
            process.wait()
            raise BackendError("the local backend needs Linux's /proc to tell its processes apart")
        _children[process.pid] = (process, stat.start_ticks)
        state = LocalState(
            instance_id=spec.instance_id, node=spec.node, controller_id=spec.controller_id,
            pid=process.pid, start_ticks=stat.start_ticks, http_port=http_port,
            grpc_port=grpc_port if spec.grpc_port is not None else None,
            created_at=created_at, checkpoint=str(checkpoint), http_socket=http_socket,
            version=spec.version,
        )  # fmt: skip
        self._write_state(state)
        return state.handle()

    def list(self, controller_id: str) -> list[InstanceHandle]:
        reap_children()
        if not self.state_dir.is_dir():
            return []
        states = []
        for path in sorted(self.state_dir.glob("*.json")):
            try:
                state = LocalState.from_json(path.read_text(), path)
            except (BackendError, OSError) as exc:
                log.warning("skipped: %s", exc)
                continue
            if state.controller_id == controller_id:
                states.append(state)
        return [s.handle() for s in sorted(states, key=lambda s: s.created_at)]

    def status(self, handle: InstanceHandle) -> RunStatus:
        state = self._read_state(handle.instance_id)
        if state is None:
            return RunStatus(RunState.MISSING)
        child = _children.get(state.pid)
        if child is not None and child[1] == state.start_ticks:
            code = child[0].poll()  # reaps it
            if code is None:
                return RunStatus(RunState.RUNNING)
            return RunStatus(RunState.EXITED, shell_exit_code(code))
        if is_alive(state.pid, state.start_ticks):
            return RunStatus(RunState.RUNNING)
        return RunStatus(RunState.EXITED)  # not our child: its exit code went to its parent

    def stop(self, handle: InstanceHandle, timeout: float = 10) -> None:
        state = self._read_state(handle.instance_id)
        if state is not None:
            self._terminate(state, timeout)
            self.state_path(state.instance_id).unlink(missing_ok=True)
        self.log_path(handle.instance_id).unlink(missing_ok=True)

    def logs(self, handle: InstanceHandle, tail: int = 50, follow: bool = False) -> Iterator[str]:
        path = self.log_path(handle.instance_id)
        try:
            output = path.open("rb")
        except FileNotFoundError:
            return
        with output:
            last, pending = tail_lines(output, tail)
            yield from last
            if not follow:
                if pending:
                    yield _text(pending)
                return
            while True:
                chunk = output.read()
                if chunk:
                    *finished, pending = (pending + chunk).split(b"\n")
                    yield from (_text(line) for line in finished)
                    continue
                if self.status(handle).state != RunState.RUNNING:
                    rest = pending + output.read()
                    yield from (_text(line) for line in rest.split(b"\n") if line)
                    return
                time.sleep(FOLLOW_INTERVAL_S)

    # --- internals ----------------------------------------------------------------------
    def _checkpoint(self, spec: InstanceSpec) -> Path:
        if spec.checkpoint is None:
            raise BackendError(
                f"instance {spec.instance_id} of node {spec.node} has no checkpoint: the local "
                "backend runs `checkpoint2svc serve CHECKPOINT`; give the node a checkpoint, or "
                "run an image on the docker backend"
            )
        if not spec.checkpoint.is_dir():
            raise BackendError(
                f"checkpoint {spec.checkpoint} of node {spec.node} is not a directory; pin the "
                "notebook again (`checkpoint2svc pin`) or point the node at an existing checkpoint"
            )
        return spec.checkpoint.resolve()

    def _write_state(self, state: LocalState) -> None:
        path = self.state_path(state.instance_id)
        partial = path.with_suffix(".json.partial")
        partial.write_text(state.to_json())
        partial.replace(path)

    def _read_state(self, instance_id: str) -> LocalState | None:
        path = self.state_path(instance_id)
        try:
            return LocalState.from_json(path.read_text(), path)
        except FileNotFoundError:
            return None

    def _terminate(self, state: LocalState, timeout: float) -> None:
        """SIGTERM to the instance's process group, SIGKILL after ``timeout``; reap our child."""
        child = _children.get(state.pid)
        if child is not None and child[1] != state.start_ticks:
            child = None
        for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            if not is_alive(state.pid, state.start_ticks):
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(state.pid, sig)  # its session leader: the pid is its group's id
            if child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child[0].wait(wait_s)
            else:
                _wait_gone(state.pid, state.start_ticks, wait_s)
        if child is not None:
            child[0].poll()
            del _children[state.pid]
        if is_alive(state.pid, state.start_ticks):
            raise BackendError(
                f"process {state.pid} of instance {state.instance_id} survived SIGKILL; it is "
                f"probably stuck in the kernel (state D): look at /proc/{state.pid}/stack"
            )


def _wait_gone(pid: int, start_ticks: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while is_alive(pid, start_ticks) and time.monotonic() < deadline:
        time.sleep(0.05)


def _text(line: bytes) -> str:
    return line.decode(errors="replace").rstrip("\r")


def tail_lines(output: BinaryIO, count: int, block: int = 8192) -> tuple[list[str], bytes]:
    """The last ``count`` lines of a binary file, read backwards from its end: the finished ones,
    and the unfinished last line (empty when the file ends with a newline), which counts as one.
    The file is left positioned at its end."""
    end = output.seek(0, os.SEEK_END)
    data = b""
    position = end
    while position > 0 and data.count(b"\n") <= count:
        step = min(block, position)
        position -= step
        output.seek(position)
        data = output.read(step) + data
    output.seek(end)
    *lines, unfinished = data.split(b"\n")
    if position > 0:
        lines = lines[1:]  # the first may have been cut at the block boundary
    keep = count - 1 if unfinished else count
    return [_text(line) for line in lines[len(lines) - keep :]] if keep > 0 else [], unfinished
