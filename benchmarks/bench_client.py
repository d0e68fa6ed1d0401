"""Benchmark: the generated client versus a hand-written call, side by side, on one server.

One ``checkpoint2svc serve`` subprocess per cell serves REST and gRPC. What differs is the
client. The generated ``RestClient`` / ``GrpcClient`` checks the inputs against the signature,
converts them, and decodes the answer into the ``Output`` dataclass. The hand-written caller
does the least a program needs for the same result. Over REST it builds the JSON body with
orjson, posts it with one ``httpx.Client``, and reads the answer with orjson (and numpy for a
tensor). Over gRPC it fills the service's protoc message and calls the raw stub on one channel.
Calls are sequential and the two sides take turns call by call, so every call costs the
server's time plus the client's work, and a busy moment costs both sides alike. The ratio
*generated / hand-written* of the median call time is what the typed client adds.

Cases: ``add.ipynb`` (``c = a + b``: two ints; the client's work is all overhead) and
``tensor.ipynb`` (``y = x``: a float32 tensor of ``--tensor-kib``, base64 over REST, bytes over
gRPC): ``--rounds`` rounds of ``--calls`` calls per side (a twentieth of that for the tensor),
the median of the rounds' medians reported. Exits 1 when a ratio is above ``--target`` (1.25),
unless ``--no-check``.

    .venv/bin/python benchmarks/bench_client.py [--calls 2000] [--rounds 5] [--tensor-kib 1024]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
from bench_grpc import free_port, prepare, stop_process  # benchmarks/bench_grpc.py

Call = Callable[[], object]


@contextlib.contextmanager
def serving(service: Path) -> Iterator[tuple[str, str]]:
    """``checkpoint2svc serve`` on free ports until ready; (REST URL, gRPC target)."""
    http_port, grpc_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "checkpoint2svc", "serve", str(service),
         "--http-port", str(http_port), "--grpc-port", str(grpc_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"checkpoint2svc serve {service} did not become ready")
            time.sleep(0.1)
        yield url, f"127.0.0.1:{grpc_port}"
    finally:
        stop_process(process)


@contextlib.contextmanager
def client_package(folder: Path, name: str) -> Iterator[Any]:
    """The generated client package in ``folder``, imported."""
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))


def median_call_us(calls: int, *sides: Call) -> list[float]:
    """The median time of each side's ``calls`` sequential calls, in microseconds. The sides
    take turns call by call, so a busy moment of the machine or the server costs both alike."""
    times: list[list[int]] = [[] for _ in sides]
    for _ in range(calls):
        for side, call in zip(times, sides, strict=True):
            started = time.perf_counter_ns()
            call()
            side.append(time.perf_counter_ns() - started)
    return [statistics.median(side) / 1000 for side in times]


def hand_written_rest(http: httpx.Client, url: str, inputs: dict[str, Any]) -> Call:
    """Post ``inputs`` (numpy arrays as base64 tensors) and read the outputs, by hand."""
    tensors = {k for k, v in inputs.items() if isinstance(v, np.ndarray)}

    def call() -> object:
        body = {
            k: {"dtype": str(v.dtype), "shape": list(v.shape),
                "b64": base64.b64encode(v.tobytes()).decode("ascii")}
            if k in tensors else v
            for k, v in inputs.items()
        }  # fmt: skip
        response = http.post(
            f"{url}/execute", content=orjson.dumps({"input": body}),
            headers={"content-type": "application/json", "x-tensor-format": "b64"},
        )  # fmt: skip
        response.raise_for_status()
        output = orjson.loads(response.content)["output"]
        return {
            k: np.frombuffer(base64.b64decode(v["b64"]), v["dtype"]).reshape(v["shape"])
            if isinstance(v, dict) and "b64" in v else v
            for k, v in output.items()
        }  # fmt: skip

    return call


def hand_written_grpc(
    channel: grpc.Channel, stubs: Path, module: str, inputs: dict[str, Any]
) -> Call:
    """Fill the protoc ``Input`` message and call the raw stub, by hand."""
    sys.path.insert(0, str(stubs))
    pb2 = __import__(f"{module}_pb2")
    pb2_grpc = __import__(f"{module}_pb2_grpc")
    stub = getattr(pb2_grpc, f"{module.capitalize()}ServiceStub")(channel)

    def call() -> object:
        message = pb2.Input()
        for name, value in inputs.items():
            if isinstance(value, np.ndarray):
                field = getattr(message, name)
                field.dtype = str(value.dtype)
                field.shape.extend(value.shape)
                field.data = value.tobytes()
            else:
                setattr(message, name, value)
        output = stub.Execute(message, timeout=60)  # a deadline, as any caller should set
        return {
            f.name: np.frombuffer(v.data, v.dtype).reshape(tuple(v.shape))
            if f.message_type is not None and f.message_type.name == "Tensor" else v
            for f, v in output.ListFields()
        }  # fmt: skip

    return call


def compare(name: str, generated: Call, hand: Call, calls: int, rounds: int) -> dict[str, Any]:
    generated(), hand()  # warm up: connections, imports, caches
    ours, theirs = [], []
    for _ in range(rounds):
        generated_us, hand_us = median_call_us(calls, generated, hand)
        ours.append(generated_us)
        theirs.append(hand_us)
        print(f"{name}: generated {generated_us:.0f} us, hand-written {hand_us:.0f} us",
              file=sys.stderr)  # fmt: skip
    generated_us, hand_us = statistics.median(ours), statistics.median(theirs)
    return {
        "case": name,
        "generated": generated_us,
        "hand": hand_us,
        "ratio": generated_us / hand_us,
    }


def bench_cell(
    service: Path, module: str, inputs: dict[str, Any], label: str, calls: int, rounds: int
) -> list[dict[str, Any]]:
    """Both protocols of one served cell: generated client versus hand-written call."""
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    with (
        serving(service) as (url, target),
        client_package(service / "client", f"{module}_client") as package,
        httpx.Client(timeout=60) as http,
        grpc.insecure_channel(target, options=options) as channel,
        package.RestClient(url) as rest,
        package.GrpcClient(target) as grpc_client,
    ):
        return [
            compare(
                f"REST {label}", lambda: rest.execute(**inputs),
                hand_written_rest(http, url, inputs), calls, rounds,
            ),
            compare(
                f"gRPC {label}", lambda: grpc_client.execute(**inputs),
                hand_written_grpc(channel, service / "gen", module, inputs), calls, rounds,
            ),
        ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per side and round (2000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--tensor-kib", type=int, default=1024, help="tensor size (default 1024)")
    parser.add_argument("--target", type=float, default=1.25, help="highest ratio (default 1.25)")
    parser.add_argument("--no-check", action="store_true", help="always exit 0")
    args = parser.parse_args()

    tensor = np.arange(args.tensor_kib * 256, dtype=np.float32)
    cases: list[tuple[str, dict[str, Any], int]] = [
        ("add", {"a": 1, "b": 2}, args.calls),
        ("echo", {"x": tensor}, max(20, args.calls // 20)),  # each call moves the tensor twice
    ]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-client-") as tmp:
        paths = prepare(Path(tmp))
        for key, inputs, calls in cases:
            label = f"{key} ({args.tensor_kib} KiB tensor)" if key == "echo" else f"{key} (2 ints)"
            results += bench_cell(paths[key], key, inputs, label, calls, args.rounds)

    print("| case | generated client | hand-written | ratio |")
    print("|---|---:|---:|---:|")
    for r in results:
        print(f"| {r['case']} | {r['generated']:.0f} µs | {r['hand']:.0f} µs | {r['ratio']:.2f} |")
    worst = max(r["ratio"] for r in results)
    print(f"\nworst ratio {worst:.2f} (target <= {args.target})")
    return 0 if args.no_check or worst <= args.target else 1


if __name__ == "__main__":
    raise SystemExit(main())
