"""The HAProxy process: started in master-worker mode, changed without dropping a request,
adopted by a restarted controller, stopped by PID; and its counters.

Everything lives in the runtime directory: ``haproxy.cfg``, ``haproxy.pid`` (the master's PID),
``master.sock`` (the master CLI: ``show proc``, ``reload``, commands for a worker),
``haproxy.sock`` (the worker's runtime API, which also hands the listening sockets to the next
worker on a reload) and ``haproxy.log`` (HAProxy's own messages).

A change of servers' health or weights goes to every worker through the runtime API (no reload at
all); any other change is a hitless reload: the master starts a new worker on the same listening
sockets, and the old one finishes its in-flight requests before it exits.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import http.client
import io
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from checkpoint2svc.errors import GatewayError
from checkpoint2svc.gateway.config import (
    CONFIG_MARK_PATH,
    STATS_SOCKET,
    GatewayConfig,
    HaproxyPlan,
    config_mark,
    plan_haproxy,
    render_plan,
    runtime_commands,
)

CONFIG_FILE = "haproxy.cfg"
PID_FILE = "haproxy.pid"
MASTER_SOCKET = "master.sock"
LOG_FILE = "haproxy.log"
# sun_path holds 108 bytes, and HAProxy binds "<path>.<pid>.tmp" before renaming it into place
MAX_SOCKET_PATH = 94
# Debian installs haproxy in /usr/sbin, which is not on every user's PATH
SBIN_PATH = os.pathsep.join(("/usr/local/sbin", "/usr/sbin", "/sbin"))
log = logging.getLogger(__name__)
SERVING_CHECKS = 3  # answers in a row from the new config that end a reload
MASTER_GONE_S = 2.0  # how long the master may seem absent before a start or reload gives up
INSTALL_HINT = "install it: `apt-get install haproxy` (scripts/setup-engine does)"

ServerStats = dict[tuple[str, str], dict[str, int | str]]


@dataclass(frozen=True)
class ProcessTable:
    """The master CLI's ``show proc``: the master, its reload counts and its workers."""

    master: int
    reloads: int
    failed_reloads: int
    workers: tuple[int, ...]
    old_workers: tuple[int, ...]


class Gateway:
    """One HAProxy (master + workers) serving a ``GatewayConfig`` from ``runtime_dir``."""

    def __init__(self, runtime_dir: Path, haproxy: str = "haproxy", timeout: float = 30) -> None:
        self.runtime_dir = Path(runtime_dir).resolve()
        self.haproxy = haproxy
        self.timeout = timeout
        self.config_path = self.runtime_dir / CONFIG_FILE
        self.pid_path = self.runtime_dir / PID_FILE
        self.master_socket = self.runtime_dir / MASTER_SOCKET
        self.stats_socket = self.runtime_dir / STATS_SOCKET
        self.log_path = self.runtime_dir / LOG_FILE
        self._plan: HaproxyPlan | None = None  # what the workers serve, when this object knows
        self._lock = threading.RLock()

    # --- lifecycle --------------------------------------------------------------------------
    def start(self, config: GatewayConfig) -> None:
        """Validate ``config``, write it, and start HAProxy detached from this process."""
        with self._lock:
            binary = self._binary()
            pid = self._master_pid()
            if pid is not None:
                raise GatewayError(
                    f"a gateway from {self.runtime_dir} is already running (pid {pid}); "
                    f"adopt() it, or stop() it first"
                )
            self.runtime_dir.mkdir(parents=True, exist_ok=True)
            self._check_socket_paths()
            plan = plan_haproxy(config, self.runtime_dir)
            self._install(binary, render_plan(plan))
            for stale in (self.pid_path, self.master_socket, self.stats_socket):
                stale.unlink(missing_ok=True)
            log_offset = self._log_size()
            with self.log_path.open("ab") as log:
                # -D: the master daemonizes (the command returns once the listeners are bound)
                launcher = subprocess.Popen(
                    [binary, "-W", "-D", "-S", f"{self.master_socket},mode,600",
                     "-f", str(self.config_path), "-p", str(self.pid_path)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    cwd=self.runtime_dir, start_new_session=True,
                )  # fmt: skip
            try:
                status = launcher.wait(self.timeout)
            except subprocess.TimeoutExpired:
                launcher.kill()
                launcher.wait()
                status = -1
            if status != 0:
                raise GatewayError(
                    f"haproxy did not start (exit status {status}) on port {config.port}: "
                    f"{self._log_since(log_offset)}"
                )
            self._wait(lambda table: bool(table.workers), "start its worker", log_offset)
            self._plan = plan

    def apply(self, config: GatewayConfig) -> None:
        """Serve ``config`` from now on, without failing a request in flight.

        Only servers' health or weights changed: runtime API commands to every worker. Anything
        else: write the validated config and reload (the master starts a new worker on the same
        listening sockets; the old one finishes what it has).
        """
        with self._lock:
            binary = self._binary()
            if self._master_pid() is None:
                raise GatewayError(
                    f"no gateway is running from {self.runtime_dir}; start() it first"
                )
            plan = plan_haproxy(config, self.runtime_dir)
            text = render_plan(plan)
            previous = self.config_path.read_text() if self.config_path.exists() else ""
            if text == previous:
                self._plan = plan  # e.g. after adopt(): the workers already serve this
                return
            commands = runtime_commands(self._plan, plan) if self._plan is not None else None
            self._install(binary, text)
            if commands is None or not self._run_everywhere(commands):
                self._reload(previous)
                self._wait_serving(plan.port, config_mark(text))
            self._plan = plan

    def running(self) -> bool:
        """Whether an HAProxy started from this runtime directory is alive."""
        return self._master_pid() is not None

    def adopt(self) -> bool:
        """Re-attach to the HAProxy a previous controller started here; False when none runs."""
        with self._lock:
            if self._master_pid() is None:
                return False
            self._process_table()  # it must answer, or it is of no use
            self._plan = None  # unknown: the next apply() compares the config file, or reloads
            return True

    def stop(self, grace: float = 5.0) -> None:
        """Stop the HAProxy started from this runtime directory (soft stop for ``grace``
        seconds, then terminate); processes that are not ours are never signalled."""
        with self._lock:
            master = self._master_pid()
            if master is None:
                return
            try:
                table = self._process_table()
                workers = [*table.workers, *table.old_workers]
            except GatewayError:
                workers = []
            for sig, wait in ((signal.SIGUSR1, grace), (signal.SIGTERM, 5.0),
                              (signal.SIGKILL, 5.0)):  # fmt: skip
                alive = [pid for pid in (master, *workers) if self._is_ours(pid)]
                if not alive:
                    break
                for pid in alive if sig == signal.SIGKILL else alive[:1]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
                _wait_until(functools.partial(self._all_gone, alive), wait)
            self._plan = None
            for leftover in (self.pid_path, self.master_socket, self.stats_socket):
                leftover.unlink(missing_ok=True)

    # --- counters ---------------------------------------------------------------------------
    def server_stats(self) -> ServerStats:
        """The current worker's ``show stat``, keyed by (proxy, server); a backend's total is
        under (backend, "BACKEND"). Counts are ints: ``stot`` sessions, ``req_tot`` requests,
        ``hrsp_2xx``...; ``status`` is UP / MAINT / DOWN."""
        try:
            text = _ask(self.stats_socket, "show stat", self.timeout)
        except OSError as exc:
            raise GatewayError(
                f"the gateway's runtime API {self.stats_socket} does not answer ({exc}); "
                f"is the gateway running? start() or adopt() it"
            ) from exc
        header, _, body = text.lstrip("# ").partition("\n")
        stats: ServerStats = {}
        for row in csv.DictReader(io.StringIO(body), fieldnames=header.split(",")):
            if not row.get("pxname") or not row.get("svname"):
                continue
            stats[(row["pxname"], row["svname"])] = {
                key: int(value) if value.isdigit() else value
                for key, value in row.items()
                if key and value
            }
        return stats

    # --- internals ----------------------------------------------------------------------------
    def _binary(self) -> str:
        found = shutil.which(self.haproxy) or shutil.which(self.haproxy, path=SBIN_PATH)
        if found is None:
            raise GatewayError(f"haproxy not found (looked for {self.haproxy!r}); {INSTALL_HINT}")
        return found

    def _check_socket_paths(self) -> None:
        for path in (self.master_socket, self.stats_socket):
            if len(os.fsencode(path)) > MAX_SOCKET_PATH:
                raise GatewayError(
                    f"the gateway's runtime directory {self.runtime_dir} is too long for a unix "
                    f"socket path ({path} is over {MAX_SOCKET_PATH} bytes); use a shorter one"
                )

    def _install(self, binary: str, text: str) -> None:
        """Validate ``text`` with ``haproxy -c``, then atomically make it the config file."""
        candidate = self.config_path.with_suffix(".cfg.new")
        candidate.write_text(text)
        check = subprocess.run(
            [binary, "-c", "-f", str(candidate)],
            capture_output=True, text=True, timeout=self.timeout, check=False,
        )  # fmt: skip
        if check.returncode != 0:
            output = (check.stdout + check.stderr).strip()
            alerts = [line for line in output.splitlines() if "[ALERT]" in line]
            raise GatewayError(
                f"haproxy rejected the generated config {candidate}: "
                + ("\n".join(alerts) or output)
            )
        os.replace(candidate, self.config_path)

    def _reload(self, previous: str) -> None:
        before = self._process_table()
        log_offset = self._log_size()
        with contextlib.suppress(OSError):  # the master re-executes itself and hangs up
            _ask(self.master_socket, "reload", self.timeout)

        def reloaded(table: ProcessTable) -> bool:
            if table.failed_reloads > before.failed_reloads:
                return True
            return table.reloads > before.reloads and bool(table.workers)

        table = self._wait(reloaded, "reload", log_offset)
        if table.failed_reloads > before.failed_reloads:
            self.config_path.write_text(previous)  # the file says what the old workers serve
            raise GatewayError(
                f"haproxy failed to reload {self.config_path}; the previous config keeps "
                f"serving: {self._log_since(log_offset)}"
            )

    def _wait_serving(self, port: int, mark: str | None) -> None:
        """Until new connections reach a worker of the new config: the master tells the old
        worker to stop accepting only once the new one is ready, so a change (a new alias)
        could otherwise be missed by the first requests after the reload."""
        if mark is None:
            return
        deadline = time.monotonic() + self.timeout
        in_a_row = 0
        while in_a_row < SERVING_CHECKS and time.monotonic() < deadline:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", CONFIG_MARK_PATH, headers={"connection": "close"})
                answer = connection.getresponse().read().decode(errors="replace")
                connection.close()
            except OSError:
                answer = ""
            in_a_row = in_a_row + 1 if answer == mark else 0
            if in_a_row == 0:
                time.sleep(0.01)
        if in_a_row < SERVING_CHECKS:
            log.warning("gateway: new connections did not reach the new config within %.0f s",
                        self.timeout)  # fmt: skip

    def _run_everywhere(self, commands: tuple[str, ...]) -> bool:
        """Send runtime commands to every worker, current and old (old ones still answer the
        keep-alive connections they hold). False when the current worker refused one."""
        table = self._process_table()
        for pid in table.workers + table.old_workers:
            for command in commands:
                try:
                    answer = _ask(self.master_socket, f"@!{pid} {command}", self.timeout).strip()
                except OSError as exc:
                    answer = str(exc)
                if answer and pid in table.workers:
                    return False  # an old worker may lack a server that is new: no matter
        return True

    def _process_table(self) -> ProcessTable:
        try:
            return _parse_show_proc(_ask(self.master_socket, "show proc", self.timeout))
        except (OSError, ValueError) as exc:
            raise GatewayError(
                f"the gateway's master CLI {self.master_socket} does not answer ({exc}); "
                f"stop() the gateway and start it again"
            ) from exc

    def _wait(
        self, done: Callable[[ProcessTable], bool], what: str, log_offset: int
    ) -> ProcessTable:
        deadline = time.monotonic() + self.timeout
        problem = "no answer"
        missing_since: float | None = None
        while time.monotonic() < deadline:
            try:
                table = _parse_show_proc(_ask(self.master_socket, "show proc", 2))
            except (OSError, ValueError) as exc:
                problem = str(exc)
            else:
                if done(table):
                    return table
                problem = f"show proc: {table}"
            # while the master re-executes itself, its pidfile and /proc entry are briefly blank
            if self._master_pid() is not None:
                missing_since = None
            elif missing_since is None:
                missing_since = time.monotonic()
            elif time.monotonic() - missing_since > MASTER_GONE_S:
                problem = "the master process exited"
                break
            time.sleep(0.05)
        raise GatewayError(
            f"haproxy did not {what} within {self.timeout:g} s ({problem}): "
            f"{self._log_since(log_offset)}"
        )

    def _master_pid(self) -> int | None:
        try:
            pid = int(self.pid_path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if self._is_ours(pid) else None

    def _all_gone(self, pids: list[int]) -> bool:
        return not any(self._is_ours(pid) for pid in pids)

    def _is_ours(self, pid: int) -> bool:
        """A live (not zombie) haproxy whose command line names this directory's config."""
        for _ in range(50):  # a master that re-executes itself shows no cmdline for a moment
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                return False
            if state in ("Z", "X"):
                return False
            if argv[0]:
                return (
                    b"haproxy" in os.path.basename(argv[0])
                    and os.fsencode(self.config_path) in argv
                )
            time.sleep(0.01)
        return False

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace").strip()
        except OSError:
            text = ""
        return text[-3000:] or f"(nothing in {self.log_path})"


def _ask(path: Path, command: str, timeout: float) -> str:
    """One command on an HAProxy CLI socket, and its whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(os.fspath(path))
        sock.sendall(command.encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)  # end of input: HAProxy answers, then closes
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def _parse_show_proc(text: str) -> ProcessTable:
    """Parse the master CLI's ``show proc`` (HAProxy 2.6 layout)::

    #<PID>          <type>          <reloads>       <uptime>        <version>
    1162            master          5 [failed: 0]   0d00h02m07s     2.6.12
    # workers
    1271            worker          0               0d00h00m00s     2.6.12
    # old workers
    1233            worker          3               0d00h00m43s     2.6.12
    """
    master = reloads = failed = None
    sections: dict[str, list[int]] = {"workers": [], "old workers": []}
    section = ""
    for line in text.splitlines():
        if line.startswith("# "):
            section = line[2:].strip()
            continue
        fields = line.split()
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        if fields[1] == "master":
            master, reloads = int(fields[0]), int(fields[2])
            failed = int(line.split("failed:", 1)[1].split("]", 1)[0]) if "failed:" in line else 0
        elif fields[1] == "worker" and section in sections:
            sections[section].append(int(fields[0]))
    if master is None or reloads is None or failed is None:
        raise ValueError(f"no master in show proc: {text.strip()!r}")
    return ProcessTable(
        master, reloads, failed, tuple(sections["workers"]), tuple(sections["old workers"])
    )


def _wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()
