"""A `checkpoint2svc serve` subprocess on free 127.0.0.1 ports, stopped by PID on teardown."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from checkpoint2svc.backends.local import free_ports


def free_port() -> int:
    return free_ports(1)[0]


class Instance:
    def __init__(self, path: Path, *extra: str, timeout: float = 90) -> None:
        self.port, self.grpc_port = free_ports(2)
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.log = ""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "checkpoint2svc", "serve", str(path),
             "--http-port", str(self.port), "--grpc-port", str(self.grpc_port), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(f"{self.url}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"instance did not become ready:\n{self.log}")

    def execute(self, inputs: object) -> httpx.Response:
        return httpx.post(f"{self.url}/execute", json={"input": inputs}, timeout=60)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None and not self.process.stdout.closed:
            self.log += self.process.stdout.read()
            self.process.stdout.close()
