"""Benchmark: gRPC of ``checkpoint2svc serve`` versus hand-written grpc servers, side by side.

1. Throughput of the typed ``Execute`` of the trivial cell ``c = a + b`` (``add.ipynb``) against
   the same call on a hand-written thread-pool ``grpc.server`` servicer and on a ``grpc.aio``
   servicer (``grpc_apps/servers.py``). Target: >= 0.9x the faster of the two.
2. A 16 MiB float32 tensor round trip through the typed ``Execute`` of ``y = x``
   (``tensor.ipynb``) against a raw bytes-echo servicer moving the same 16 MiB. Target: >= 0.5x.

Every server is its own subprocess on a free 127.0.0.1 port; one client process drives it (32
calls in flight for the small call, one at a time for the tensor). Servers are measured
alternately, ``--rounds`` times each, and the medians are compared. Exits 1 when a target is
missed, unless ``--no-check``. Every process started is stopped by PID on the way out.

    .venv/bin/python benchmarks/bench_grpc.py [--duration 5] [--rounds 3] [--no-check]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc

HERE = Path(__file__).resolve().parent
LIMIT = 64 * 1024 * 1024
OPTIONS = [("grpc.max_receive_message_length", LIMIT), ("grpc.max_send_message_length", LIMIT)]
TENSOR_FLOATS = 4 * 1024 * 1024  # 16 MiB of float32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(argv: list[str], port: int) -> Iterator[str]:
    """Run a server subprocess until its port answers; stop it by PID afterwards."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = f"127.0.0.1:{port}"
    try:
        with grpc.insecure_channel(target) as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
        yield target
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[Any], grace: float = 10) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds: a server started here, ended by its PID."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _drive_small(
    target: str, gen: str, module: str, message: str, seconds: float, out: Any
) -> None:
    """Client process: keep 32 calls in flight for ``seconds``; report calls/s."""
    sys.path.insert(0, gen)
    pb2 = __import__(f"{module}_pb2")
    request = getattr(pb2, message)(a=1, b=2).SerializeToString()
    channel = grpc.insecure_channel(target, options=OPTIONS)
    method = "/checkpoint2svc.generated.add.AddService/Execute" if module == "add" else (
        "/bench.Add/Execute")  # fmt: skip
    call = channel.unary_unary(method)  # raw bytes in and out: the client costs the same
    inflight: list[Any] = []
    done = 0
    end = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < end:
        while len(inflight) < 32:
            inflight.append(call.future(request))
        inflight.pop(0).result()
        done += 1
    for future in inflight:
        future.result()
    out.put(done / (time.perf_counter() - started))


def calls_per_second(target: str, gen: Path, module: str, message: str, seconds: float) -> float:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(
        target=_drive_small, args=(target, str(gen), module, message, seconds, queue)
    )
    process.start()
    result = float(queue.get(timeout=seconds + 60))
    process.join()
    return result


def megabytes_per_second(call: Callable[[], int], seconds: float) -> float:
    """Sequential round trips for ``seconds``; payload MB moved each way per second."""
    call()  # warm up
    moved = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        moved += call()
    return moved / (time.perf_counter() - started) / 1e6


def prepare(root: Path) -> dict[str, Path]:
    """Compile the baseline proto; pin and generate the two notebooks."""
    from checkpoint2svc.checkpoint import pin_notebook
    from checkpoint2svc.codegen.proto import compile_protos
    from checkpoint2svc.codegen.service_context import generate

    paths = {"bench_gen": root / "bench_gen"}
    compile_protos(HERE / "grpc_apps" / "bench.proto", paths["bench_gen"])
    for key, notebook, cell in (("add", "add.ipynb", "add"), ("echo", "tensor.ipynb", "echo")):
        checkpoint = pin_notebook(
            HERE / notebook, cell, root / f"{key}.ckpt", progress=lambda _: None,
            warn=lambda _: None,
        )  # fmt: skip
        generate(checkpoint, root / f"{key}.svc")
        paths[key] = root / f"{key}.svc"
    return paths


def c2s_argv(service: Path, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "checkpoint2svc", "serve", str(service), "--grpc-port",
            str(port), "--http-port", str(free_port()), *extra]  # fmt: skip


def baseline_argv(kind: str, port: int, gen: Path) -> list[str]:
    return [sys.executable, str(HERE / "grpc_apps" / "servers.py"), kind, str(port), str(gen)]


def bench_small(paths: dict[str, Path], seconds: float, rounds: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"checkpoint2svc": [], "threadpool": [], "aio": []}
    for _ in range(rounds):
        for name in results:
            port = free_port()
            if name == "checkpoint2svc":
                argv, gen, module, message = (c2s_argv(paths["add"], port), paths["add"] / "gen",
                                              "add", "Input")  # fmt: skip
            else:
                argv = baseline_argv(name, port, paths["bench_gen"])
                gen, module, message = paths["bench_gen"], "bench", "AddRequest"
            with server(argv, port) as target:
                calls_per_second(target, gen, module, message, 1.0)  # warm-up
                results[name].append(calls_per_second(target, gen, module, message, seconds))
    return results


def _round_trip_rate(
    target: str,
    method: str,
    make_request: Callable[[], Any],
    reply_bytes: Callable[[Any], int],
    request_type: Any,
    reply_type: Any,
    seconds: float,
) -> float:
    """MB/s of sequential calls of ``method`` on ``target``."""
    with grpc.insecure_channel(target, options=OPTIONS) as channel:
        call = channel.unary_unary(
            method,
            request_serializer=request_type.SerializeToString,
            response_deserializer=reply_type.FromString,
        )
        return megabytes_per_second(lambda: reply_bytes(call(make_request(), timeout=60)), seconds)


def bench_tensor(paths: dict[str, Path], seconds: float, rounds: int) -> dict[str, list[float]]:
    """The tensor arrives as a numpy array and leaves as one, on both sides."""
    import numpy as np

    sys.path[:0] = [str(paths["echo"] / "gen"), str(paths["bench_gen"])]
    import bench_pb2
    import echo_pb2
    from checkpoint2svc_protos.v1 import values_pb2

    payload = np.arange(TENSOR_FLOATS, dtype=np.float32)

    def typed_request() -> Any:
        data = payload.tobytes()
        return echo_pb2.Input(x=values_pb2.Tensor(dtype="float32", shape=[payload.size], data=data))

    def typed_reply(reply: Any) -> int:
        return int(np.frombuffer(reply.y.data, dtype=np.float32).nbytes)

    def raw_request() -> Any:
        return bench_pb2.Blob(data=payload.tobytes())

    def raw_reply(reply: Any) -> int:
        return int(np.frombuffer(reply.data, dtype=np.float32).nbytes)

    results: dict[str, list[float]] = {"checkpoint2svc": [], "bytes echo": []}
    for _ in range(rounds):
        port = free_port()
        with server(c2s_argv(paths["echo"], port, "--max-message-mb", "64"), port) as target:
            results["checkpoint2svc"].append(_round_trip_rate(
                target, "/checkpoint2svc.generated.echo.EchoService/Execute", typed_request,
                typed_reply, echo_pb2.Input, echo_pb2.Output, seconds,
            ))  # fmt: skip
        port = free_port()
        with server(baseline_argv("echo", port, paths["bench_gen"]), port) as target:
            results["bytes echo"].append(_round_trip_rate(
                target, "/bench.Echo/Echo", raw_request, raw_reply, bench_pb2.Blob,
                bench_pb2.Blob, seconds,
            ))  # fmt: skip
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-check", action="store_true", help="always exit 0")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-grpc-") as tmp:
        paths = prepare(Path(tmp))
        small_runs = bench_small(paths, args.duration, args.rounds)
        tensor_runs = bench_tensor(paths, args.duration, args.rounds)
    small = {name: statistics.median(values) for name, values in small_runs.items()}
    tensor = {name: statistics.median(values) for name, values in tensor_runs.items()}
    best = max(small["threadpool"], small["aio"])
    small_ratio = small["checkpoint2svc"] / best
    tensor_ratio = tensor["checkpoint2svc"] / tensor["bytes echo"]
    print("| call | server | median | ratio | target |")
    print("|---|---|---:|---:|---:|")
    for name, value in small.items():
        ratio = f"{small_ratio:.2f}" if name == "checkpoint2svc" else ""
        target = ">= 0.9" if name == "checkpoint2svc" else ""
        row = f"| `c = a + b`, 32 in flight | {name} | {value:,.0f} calls/s | {ratio} | {target} |"
        print(row)
    for name, value in tensor.items():
        ratio = f"{tensor_ratio:.2f}" if name == "checkpoint2svc" else ""
        target = ">= 0.5" if name == "checkpoint2svc" else ""
        print(f"| 16 MiB float32 round trip | {name} | {value:,.0f} MB/s | {ratio} | {target} |")
    print(f"\n{args.rounds} rounds of {args.duration:g} s; medians; 2-core machine, client and "
          "server on it")  # fmt: skip
    missed = small_ratio < 0.9 or tensor_ratio < 0.5
    return 1 if missed and not args.no_check else 0


if __name__ == "__main__":
    sys.exit(main())
