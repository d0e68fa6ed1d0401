"""Benchmark: REST throughput and latency of ``checkpoint2svc serve`` versus FastAPI and BentoML.

All three serve the trivial cell ``c = a + b`` as ``POST /execute`` with the same JSON shape
(``{"input": {"a": 1, "b": 2}}`` in, ``{"output": {"c": 3}}`` out), so what is measured is the
cost of the framework around the cell:

- checkpoint2svc: ``benchmarks/add.ipynb`` pinned at its ``add`` cell, ``checkpoint2svc serve``;
- FastAPI: ``benchmarks/rest_apps/fastapi_add.py`` (async handler, pydantic models in and out),
  uvicorn with uvloop and httptools, 1 worker;
- BentoML: ``benchmarks/rest_apps/bentoml_add.py``, 1 worker, run from the benchmark's own
  virtual environment ``benchmarks/.venv-bentoml`` (created with ``pip install bentoml`` when
  missing; skipped with a message when that fails or with ``--no-bentoml``).

Each server is its own subprocess on a free 127.0.0.1 port. The load generator is ``wrk``
(installed with apt-get when missing and running as root) with a Lua script for the POST body.
After a warm-up of each server, the servers are measured alternately (round 1: A, B, C; round 2:
A, B, C; ...) so that load drift hits all of them alike. The table gives the median over the
rounds of requests/s, p50 and p99, and the ratio of checkpoint2svc's requests/s to each other
server's. Exits 1 when a ratio misses its target (>= 1.5x FastAPI, >= 5x BentoML) or a run saw
errors, unless ``--no-check``, and 2 when a server does not start or answers wrongly. Every
process it starts is stopped on the way out, also on failure.

    .venv/bin/python benchmarks/bench_rest.py [--duration 10] [--rounds 3] [--no-check]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import psutil
from wrk_post import RESULT, WRK_SCRIPT  # benchmarks/wrk_post.py

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "add.ipynb"
CELL = "add"
APPS = HERE / "rest_apps"
BENTOML_VENV = HERE / ".venv-bentoml"
BENTOML_REQUIREMENT = "bentoml>=1.4,<1.5"
BODY = '{"input": {"a": 1, "b": 2}}'
EXPECTED = {"output": {"c": 3}}
TARGETS = {"FastAPI": 1.5, "BentoML": 5.0}
START_TIMEOUT_S = 120.0
BUSY_LOAD = 0.5


@dataclass(frozen=True)
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass(frozen=True)
class Run:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- processes -------------------------------------------------------------------------------


class Processes:
    """Every process the benchmark starts; ``stop_all`` ends each of them and its children."""

    def __init__(self) -> None:
        self._started: list[subprocess.Popen[bytes]] = []

    def spawn(
        self, command: list[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})}, start_new_session=True,
            )  # fmt: skip
        self._started.append(process)
        return process

    def stop_all(self) -> None:
        """SIGTERM each started process and its descendants (by PID), SIGKILL what remains."""
        victims: list[psutil.Process] = []
        for process in self._started:
            try:
                parent = psutil.Process(process.pid)
                victims += [*parent.children(recursive=True), parent]
            except psutil.NoSuchProcess:
                pass
        for victim in victims:
            with suppress(psutil.NoSuchProcess):
                victim.terminate()
        _, alive = psutil.wait_procs(victims, timeout=10)
        for victim in alive:
            with suppress(psutil.NoSuchProcess):
                victim.kill()
        psutil.wait_procs(alive, timeout=5)
        for process in self._started:
            process.poll()  # reap, so that no zombie is left
        self._started.clear()


@contextmanager
def processes() -> Iterator[Processes]:
    """A ``Processes`` whose members are stopped on exit, also on SIGTERM or Ctrl-C."""

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    started = Processes()
    try:
        yield started
    finally:
        started.stop_all()
        signal.signal(signal.SIGTERM, previous)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def post_once(url: str) -> dict[str, object] | None:
    """The JSON reply to one ``POST url`` with the benchmark's body, or None if it failed."""
    request = urllib.request.Request(
        url, data=BODY.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            reply: dict[str, object] = json.loads(response.read())
            return reply
    except (OSError, ValueError):
        return None


def start_server(
    started: Processes, name: str, command: list[str], port: int, logs: Path,
    env: dict[str, str] | None = None,
) -> Server:  # fmt: skip
    """Start ``command`` and wait until ``POST /execute`` answers the expected output."""
    log = logs / f"{name}.log"
    process = started.spawn(command, log, env)
    server = Server(name, f"http://127.0.0.1:{port}/execute", process, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail(log)}")
        reply = post_once(server.url)
        if reply is not None:
            if reply != EXPECTED:
                raise RuntimeError(f"{name} answered {reply!r}, expected {EXPECTED!r}")
            say(f"{name}: ready on {server.url} (pid {process.pid})")
            return server
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not answer within {START_TIMEOUT_S:.0f} s:\n{tail(log)}")


def tail(log: Path, lines: int = 20) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# --- the servers -----------------------------------------------------------------------------


def pin_checkpoint(tmp: Path) -> Path:
    checkpoint = tmp / "add.ckpt"
    command = [sys.executable, "-m", "checkpoint2svc", "pin", str(NOTEBOOK), "--cell", CELL,
               "-o", str(checkpoint)]  # fmt: skip
    pinned = subprocess.run(command, capture_output=True, text=True)
    if pinned.returncode != 0:
        raise RuntimeError(f"pinning {NOTEBOOK.name} failed:\n{pinned.stdout}{pinned.stderr}")
    return checkpoint


def start_checkpoint2svc(started: Processes, tmp: Path) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "checkpoint2svc", "serve", str(pin_checkpoint(tmp)),
               "--http-port", str(port), "--grpc-port", str(free_port())]  # fmt: skip
    return start_server(started, "checkpoint2svc", command, port, tmp)


def start_fastapi(started: Processes, tmp: Path) -> Server:
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", "fastapi_add:app", "--app-dir", str(APPS),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    return start_server(started, "FastAPI", command, port, tmp)


def start_bentoml(started: Processes, tmp: Path, python: Path) -> Server:
    port = free_port()
    command = [
        str(python), "-m", "bentoml", "serve", "bentoml_add:Add", "--working-dir", str(APPS),
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    env = {"BENTOML_HOME": str(tmp / "bentoml-home"), "BENTOML_DO_NOT_TRACK": "true"}
    return start_server(started, "BentoML", command, port, tmp, env)


def bentoml_python(venv: Path, install: bool) -> Path | None:
    """The BentoML venv's interpreter, creating the venv if asked; None (and why) if unusable."""
    python = venv / "bin" / "python"
    if python.exists() and _imports_bentoml(python):
        return python
    if not install:
        create = f"python3 -m venv {venv} && {python} -m pip install '{BENTOML_REQUIREMENT}'"
        say(f"BentoML skipped: {venv} has no BentoML (create it: {create})")
        return None
    say(f"installing {BENTOML_REQUIREMENT} into {venv} (once) ...")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", BENTOML_REQUIREMENT], check=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        say(f"BentoML skipped: it could not be installed into {venv} ({exc})")
        return None
    if not _imports_bentoml(python):
        say(f"BentoML skipped: installed into {venv}, but `import bentoml` fails there")
        return None
    return python


def _imports_bentoml(python: Path) -> bool:
    check = subprocess.run([str(python), "-c", "import bentoml"], capture_output=True)
    return check.returncode == 0


# --- the load --------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """The path of ``wrk``, installing Debian's package when it is missing and we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit("wrk is missing: install it (Debian: apt-get install wrk) and rerun")
    say("wrk is missing: apt-get install wrk ...")
    install = ["apt-get", "install", "-y", "-qq", "wrk"]
    if subprocess.run(install, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(install, check=True, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is still missing after apt-get install wrk")
    return found


def run_wrk(
    wrk: str, script: Path, url: str, seconds: float, threads: int, connections: int
) -> Run:
    command = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s",
               "--timeout", "5s", "-s", str(script), url]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    match = RESULT.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    requests, duration_us, p50_us, p99_us, errors = match.groups()
    return Run(
        requests_per_s=int(requests) / (int(duration_us) / 1e6),
        p50_ms=float(p50_us) / 1000,
        p99_ms=float(p99_us) / 1000,
        errors=int(errors),
    )


def write_wrk_script(tmp: Path) -> Path:
    script = tmp / "post.lua"
    script.write_text(WRK_SCRIPT % BODY)
    return script


# --- the report ------------------------------------------------------------------------------


def median_run(runs: list[Run]) -> Run:
    return Run(
        requests_per_s=statistics.median(r.requests_per_s for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        errors=sum(r.errors for r in runs),
    )


def report(results: dict[str, list[Run]]) -> tuple[list[str], list[str]]:
    """The Markdown table, and the list of missed targets (empty when all are met)."""
    medians = {name: median_run(runs) for name, runs in results.items()}
    ours = medians["checkpoint2svc"].requests_per_s
    rows = [
        "| server | requests/s | p50 | p99 | errors | checkpoint2svc ÷ server (req/s) | target |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    missed: list[str] = []
    for name, run in medians.items():
        ratio = ours / run.requests_per_s
        target = TARGETS.get(name)
        verdict = ""
        if target is not None:
            verdict = f"≥ {target:g}: {'met' if ratio >= target else 'MISSED'}"
            if ratio < target:
                missed.append(f"checkpoint2svc/{name} = {ratio:.2f}, target ≥ {target:g}")
        if run.errors:
            missed.append(f"{name}: {run.errors} failed requests")
        rows.append(
            f"| {name} | {run.requests_per_s:,.0f} | {run.p50_ms:.2f} ms | {run.p99_ms:.2f} ms "
            f"| {run.errors} | {ratio:.2f} | {verdict} |"
        )
    return rows, missed


def describe_machine(wrk: str) -> str:
    version = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout
    return (
        f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"{platform.system()} {platform.release()}, CPython {platform.python_version()}, "
        f"{version.split(' [')[0].strip() or 'wrk'}"
    )


def load_average() -> str:
    """The 1-minute load average, with a warning when something else is using the cores."""
    load = os.getloadavg()[0]
    if load > BUSY_LOAD:
        say(f"warning: the 1-minute load is {load:.2f}: something else is running, so the "
            "numbers will be low and noisy")  # fmt: skip
    return f"{load:.2f}"


# --- main ------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, wrk: str, bentoml: Path | None) -> dict[str, list[Run]]:
    """Start the servers, warm each up, then measure them in alternating rounds."""
    with tempfile.TemporaryDirectory(prefix="bench-rest-") as tmp_name, processes() as started:
        tmp = Path(tmp_name)
        servers = [start_checkpoint2svc(started, tmp), start_fastapi(started, tmp)]
        if bentoml is not None:
            servers.append(start_bentoml(started, tmp, bentoml))
        script = write_wrk_script(tmp)
        load = (args.threads, args.connections)
        for server in servers:
            warm = run_wrk(wrk, script, server.url, args.warmup, *load)
            say(f"{server.name} warm-up: {warm.requests_per_s:,.0f} req/s")
        results: dict[str, list[Run]] = {server.name: [] for server in servers}
        for n in range(1, args.rounds + 1):
            for server in servers:
                run = run_wrk(wrk, script, server.url, args.duration, *load)
                results[server.name].append(run)
                say(
                    f"round {n} {server.name}: {run.requests_per_s:,.0f} req/s, "
                    f"p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms, {run.errors} errors"
                )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per run (10)")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up seconds per server (3)")
    parser.add_argument("--rounds", type=int, default=3, help="measured runs per server (3)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--bentoml-venv", type=Path, default=BENTOML_VENV,
                        help="BentoML's own venv (default benchmarks/.venv-bentoml)")  # fmt: skip
    parser.add_argument("--no-bentoml-install", action="store_true",
                        help="do not create the BentoML venv when it is missing")  # fmt: skip
    parser.add_argument("--no-bentoml", action="store_true", help="leave BentoML out")
    parser.add_argument("--no-check", action="store_true", help="exit 0 whatever the ratios")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2: each server is measured at least twice")

    wrk = ensure_wrk()
    bentoml = None if args.no_bentoml else bentoml_python(args.bentoml_venv,
                                                          not args.no_bentoml_install)  # fmt: skip
    machine = describe_machine(wrk)
    load_before = load_average()
    try:
        results = measure(args, wrk, bentoml)
    except RuntimeError as exc:  # a server that did not start or answer, or wrk that failed
        say(f"error: {exc}")
        return 2

    rows, missed = report(results)
    print("\n".join(rows))
    print(f"\nwrk -t{args.threads} -c{args.connections}, {args.duration:g} s per run, "
          f"{args.rounds} alternating rounds after a {args.warmup:g} s warm-up each; medians "
          f"over the rounds.\n{machine}; 1-minute load average before: {load_before}")  # fmt: skip
    if bentoml is None:
        print("BentoML was not measured (see the message above); its target was not checked.")
    if missed and not args.no_check:
        say("FAIL: " + "; ".join(missed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
