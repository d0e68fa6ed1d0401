"""Benchmark: the HAProxy gateway with two instances versus one instance called directly.

The classifier notebook (``examples/classifier.ipynb``, cell ``predict``: the README's example,
a scikit-learn prediction; another with ``--case NOTEBOOK:CELL``) is pinned into a temp dir and
served by two ``checkpoint2svc serve`` processes, A and B. The gateway
(``checkpoint2svc.gateway``, the real HAProxy in master-worker mode) serves both as node
``bench`` on its own port. Measured with ``wrk`` and a Lua script that POSTs the pinned example
input:

- throughput: A directly at ``POST /execute`` versus the gateway at
  ``POST /datasphere/v1/nodes/bench:execute`` (A and B), ``--connections`` connections;
  the ratio gateway / direct should be >= 1.3 (``--target-ratio``);
- latency: the same two, one connection (``wrk -t1 -c1 --latency``); the p50 that the gateway
  adds (gateway p50 - direct p50) should be <= 0.5 ms (``--target-added-ms``).

After a warm-up, the four measurements alternate in every round, so that drift hits all alike;
the table gives medians over the rounds. A second table gives the CPU time per request of each
process in the throughput cases (instances, HAProxy, wrk; read from /proc and getrusage) and
the throughput the cores could give at full use. Exits 1 when a target is missed or wrk saw
errors (unless ``--no-check``). Every process it starts is stopped on the way out.

    .venv/bin/python benchmarks/bench_gateway.py [--duration 10] [--rounds 3] [--no-check]
    .venv/bin/python benchmarks/bench_gateway.py --case examples/greeter.ipynb:greet --no-check

Read the ratio with the machine in mind: load generator, HAProxy and both instances share its
cores. When a request costs the instance not much more than it costs HAProxy and wrk (the
greeter: a cell with next to no work), two instances cannot serve much more than one without
spare cores, however good the gateway; the ratio approaches 2 as the cell's own time dominates.
The CPU table shows that ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from wrk_post import RESULT, WRK_SCRIPT  # benchmarks/wrk_post.py

from checkpoint2svc.checkpoint import pin_notebook
from checkpoint2svc.gateway import Gateway, GatewayConfig, GatewayNode, GatewayServer

HERE = Path(__file__).resolve().parent
DEFAULT_CASE = str(HERE.parent / "examples" / "classifier.ipynb") + ":predict"
START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Run:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: dict[str, float]  # CPU time per request, by process ("A", "B", "HAProxy", "wrk")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants (HAProxy's worker), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    try:  # needs CONFIG_PROC_CHILDREN; without it, the process's own time only
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(int(child)) for child in children)


def wrk_cpu_seconds() -> float:
    """CPU time of the reaped children: wrk (the servers are not reaped before the end)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Instance:
    """One ``checkpoint2svc serve`` subprocess, stopped by its PID."""

    def __init__(self, checkpoint: Path, name: str, logs: Path) -> None:
        self.name = name
        self.http_port, self.grpc_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}/execute"
        self.socket = str(logs / f"{name}.sock")  # the gateway's way in, as the controller's
        self.log = logs / f"{name}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "checkpoint2svc", "serve", str(checkpoint),
                 "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
                 "--http-socket", self.socket],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def wait_ready(self, body: bytes) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-2000:]}")
            if post_ok(self.url, body):
                say(f"{self.name}: ready on {self.url}")
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer within {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def post_ok(url: str, body: bytes) -> bool:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200 and "output" in json.loads(response.read())
    except (OSError, ValueError):
        return False


def run_wrk(
    script: Path, url: str, seconds: float, connections: int, watched: dict[str, int]
) -> Run:
    """One wrk run; ``watched`` names the server processes whose CPU time is counted."""
    threads = 1
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s",
               "--latency", "-s", str(script), url]  # fmt: skip
    before = {name: cpu_seconds(pid) for name, pid in watched.items()}
    wrk_before = wrk_cpu_seconds()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    used = {name: cpu_seconds(pid) - before[name] for name, pid in watched.items()}
    used["wrk"] = wrk_cpu_seconds() - wrk_before
    match = RESULT.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    requests, duration_us, p50, p99, errors = (int(g) if g.isdigit() else float(g)
                                               for g in match.groups())  # fmt: skip
    cpu_us = {name: seconds_ * 1e6 / max(1, requests) for name, seconds_ in used.items()}
    return Run(requests / (duration_us / 1e6), p50 / 1000, p99 / 1000, int(errors), cpu_us)


def median(runs: list[Run]) -> Run:
    return Run(
        statistics.median(r.requests_per_s for r in runs),
        statistics.median(r.p50_ms for r in runs),
        statistics.median(r.p99_ms for r in runs),
        sum(r.errors for r in runs),
        {name: statistics.median(r.cpu_us[name] for r in runs) for name in runs[0].cpu_us},
    )


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, list[Run]]:
    notebook, cell = args.case.rsplit(":", 1)
    checkpoint = pin_notebook(
        Path(notebook), cell, tmp / "node.ckpt", progress=lambda _: None, warn=lambda _: None
    )
    inputs = {v.name: v.example for v in checkpoint.manifest.inputs}
    body = json.dumps({"input": inputs})
    script = tmp / "post.lua"
    script.write_text(WRK_SCRIPT % body)
    instances = [Instance(checkpoint.path, name, tmp) for name in ("A", "B")]
    gateway = Gateway(tmp / "gateway")
    try:
        for instance in instances:
            instance.wait_ready(body.encode())
        port = free_port()
        servers = tuple(
            GatewayServer(
                f"bench-{i.name.lower()}",
                "127.0.0.1",
                i.http_port,
                i.grpc_port,
                True,
                http_socket=i.socket if args.socket else "",
            )
            for i in instances
        )
        gateway.start(GatewayConfig(port, (GatewayNode("bench", servers),)))
        through_gateway = f"http://127.0.0.1:{port}/datasphere/v1/nodes/bench:execute"
        if not post_ok(through_gateway, body.encode()):
            raise RuntimeError(f"the gateway did not answer at {through_gateway}")
        a, b = (i.process.pid for i in instances)
        haproxy = int(gateway.pid_path.read_text().split()[0])
        direct_watched, gateway_watched = {"A": a}, {"A": a, "B": b, "HAProxy": haproxy}
        cases = {
            f"direct, c={args.connections}": (instances[0].url, args.connections, direct_watched),
            f"gateway (2 instances), c={args.connections}":
                (through_gateway, args.connections, gateway_watched),
            "direct, c=1": (instances[0].url, 1, direct_watched),
            "gateway (2 instances), c=1": (through_gateway, 1, gateway_watched),
        }  # fmt: skip
        for url, connections, watched in cases.values():
            run_wrk(script, url, args.warmup, connections, watched)
        results: dict[str, list[Run]] = {name: [] for name in cases}
        for round_ in range(1, args.rounds + 1):
            for name, (url, connections, watched) in cases.items():
                run = run_wrk(script, url, args.duration, connections, watched)
                results[name].append(run)
                say(
                    f"round {round_}: {name}: {run.requests_per_s:.0f} req/s, p50 "
                    f"{run.p50_ms:.3f} ms, p99 {run.p99_ms:.3f} ms, {run.errors} errors"
                )
        return results
    finally:
        gateway.stop()
        for instance in instances:
            instance.stop()


def report(args: argparse.Namespace, results: dict[str, list[Run]]) -> list[str]:
    medians = {name: median(runs) for name, runs in results.items()}
    names = list(medians)
    print("| case | requests/s | p50 | p99 | errors |")
    print("|---|---:|---:|---:|---:|")
    for name, run in medians.items():
        print(f"| {name} | {run.requests_per_s:.0f} | {run.p50_ms:.3f} ms | "
              f"{run.p99_ms:.3f} ms | {run.errors} |")  # fmt: skip
    ratio = medians[names[1]].requests_per_s / medians[names[0]].requests_per_s
    added = medians[names[3]].p50_ms - medians[names[2]].p50_ms
    print()
    print("| measure | value | target |")
    print("|---|---:|---:|")
    print(f"| throughput gateway (2 instances) / direct (1) | {ratio:.2f}x | "
          f">= {args.target_ratio:g}x |")  # fmt: skip
    print(f"| p50 added by the gateway (c=1) | {added:.3f} ms | <= {args.target_added_ms:g} ms |")
    print()
    cores = os.cpu_count() or 1
    print(f"CPU time per request (µs) in the throughput cases; ceiling: the requests/s that "
          f"{cores} cores give at full use")  # fmt: skip
    print()
    print("| case | instance A | instance B | HAProxy | wrk | total | ceiling |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in names[:2]:
        cpu = medians[name].cpu_us
        total = sum(cpu.values())
        # one instance is one process: directly, it can use one core at most
        bounds = [cores * 1e6 / total] if total else []
        bounds += [1e6 / cpu[i] for i in ("A", "B") if cpu.get(i)]
        ceiling = min(bounds, default=0.0)
        cells = [f"{cpu[k]:.1f}" if k in cpu else "" for k in ("A", "B", "HAProxy", "wrk")]
        print(f"| {name} | {' | '.join(cells)} | {total:.1f} | {ceiling:.0f} |")
    problems = []
    if ratio < args.target_ratio:
        problems.append(f"throughput ratio {ratio:.2f} < {args.target_ratio:g}")
    if added > args.target_added_ms:
        problems.append(f"added p50 {added:.3f} ms > {args.target_added_ms:g} ms")
    errors = sum(run.errors for run in medians.values())
    if errors:
        problems.append(f"wrk saw {errors} errors")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default=DEFAULT_CASE, help="NOTEBOOK:CELL to serve")
    parser.add_argument("--duration", type=float, default=10, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per case")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16, help="for the throughput cases")
    parser.add_argument("--target-ratio", type=float, default=1.3)
    parser.add_argument("--target-added-ms", type=float, default=0.5)
    parser.add_argument(
        "--no-socket",
        dest="socket",
        action="store_false",
        help="the gateway reaches the instances over TCP, not unix sockets",
    )
    parser.add_argument("--no-check", action="store_true", help="report, never fail on targets")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: install it (Debian: apt-get install wrk) and rerun")
    say(f"{args.case}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        results = measure(args, Path(tmp))
    problems = report(args, results)
    for problem in problems:
        say(f"target missed: {problem}")
    return 1 if problems and not args.no_check else 0


if __name__ == "__main__":
    sys.exit(main())
