"""Benchmark: how long an instance takes to start, ``checkpoint2svc serve`` to ``/readyz`` 200.

Two ways to start one, alternated ``--rounds`` times each:

- ``serve CHECKPOINT`` (what ``checkpoint2svc serve`` and the local backend run): the command
  renders the instance's files (``instance_context``: context.json, the .proto, openapi.json,
  server.py, protoc's modules) into a temporary directory and serves the checkpoint where it is;
- ``serve DIR``, a directory ``generate`` wrote beforehand (nothing is rendered at start).

For each, the median and minimum wall time from the process start until ``/readyz`` answers 200,
and the median CPU time (user + system) of the process and the ones it waited for (protoc), read
when it is reaped after SIGTERM: on a shared machine the CPU time moves less than the wall time.
Every process started is stopped by PID.

    .venv/bin/python benchmarks/bench_start.py [--rounds 7] [NOTEBOOK:CELL ...]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from bench_grpc import free_port  # benchmarks/bench_grpc.py

REPO = Path(__file__).resolve().parents[1]
CASES = ("examples/greeter.ipynb:greet", "examples/classifier.ipynb:predict")


def start_once(path: Path) -> tuple[float, float]:
    """(wall seconds to ready, CPU seconds of the process) of one ``serve path``."""
    http_port, grpc_port = free_port(), free_port()
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "checkpoint2svc", "serve", str(path),
         "--http-port", str(http_port), "--grpc-port", str(grpc_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/readyz").status_code == 200:
                    wall = time.monotonic() - started
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() - started > 120:
                raise SystemExit(f"checkpoint2svc serve {path} did not become ready")
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGTERM)
    _, _, usage = os.wait4(process.pid, 0)
    process.returncode = 0  # reaped here, with its resource usage
    return wall, usage.ru_utime + usage.ru_stime


def main() -> int:
    from checkpoint2svc.checkpoint import pin_notebook
    from checkpoint2svc.codegen.service_context import generate

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cases", nargs="*", default=list(CASES), metavar="NOTEBOOK:CELL")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"{'case':<40} {'wall median':>12} {'wall min':>9} {'CPU median':>11}")
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        for case in args.cases:
            notebook, _, cell = case.rpartition(":")
            name = Path(notebook).stem
            checkpoint = pin_notebook(
                REPO / notebook, cell, Path(tmp) / f"{name}.ckpt", progress=lambda _: None,
                warn=lambda _: None,
            )  # fmt: skip
            generate(checkpoint, Path(tmp) / f"{name}.svc")
            paths = {"serve CHECKPOINT": checkpoint.path, "serve DIR": Path(tmp) / f"{name}.svc"}
            start_once(checkpoint.path)  # warm-up: the file cache, the first imports
            results: dict[str, list[tuple[float, float]]] = {how: [] for how in paths}
            for _ in range(args.rounds):
                for how, path in paths.items():
                    results[how].append(start_once(path))
            for how, runs in results.items():
                walls, cpus = [w for w, _ in runs], [c for _, c in runs]
                print(
                    f"{f'{name}: {how}':<40} {statistics.median(walls):>10.2f} s "
                    f"{min(walls):>7.2f} s {statistics.median(cpus):>9.2f} s",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
