"""The controller in this process: its real store, reconcile loop and REST API over a memory
backend and a recording gateway. Everything the tier builds is built here, in one place."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from checkpoint2svc.backends.memory import MemoryMachine
from checkpoint2svc.control.api import create_api
from checkpoint2svc.control.controller import Controller
from checkpoint2svc.control.health import probe
from checkpoint2svc.control.store import Store
from tests.inprocess.fakes import FakeImageBuilder, RecordingGateway

TOKEN = "in-process-token"
CONTROLLER_ID = "c2s-inprocess"
GATEWAY_PORT = 8090

EVERY_PASS = {"interval_s": 0}
"""A health check on every reconcile pass (the default waits a second between checks)."""

Route = tuple[str, str]
"""An API route as ``/openapi.json`` names it: (method, path template)."""


def local_node(checkpoint: str, **spec: object) -> dict[str, object]:
    """A create body as `checkpoint2svc node create --backend local` sends it."""
    return {"checkpoint": checkpoint, "backend": "local", "health": EVERY_PASS, **spec}


class Harness:
    def __init__(self, root: Path, gateway_dir: Path) -> None:
        self.root = root
        self.machine = MemoryMachine()
        self.gateway = RecordingGateway(gateway_dir)
        self.images = FakeImageBuilder()
        self.store = Store(root / "controller.db")
        self.shutdowns = 0
        self.called: set[Route] = set()
        """The routes this test's calls reached past the token check."""
        self.controller = self._controller()
        self.api = self.client(TOKEN)

    def _controller(self) -> Controller:
        return Controller(
            self.root, self.store, CONTROLLER_ID, self.gateway, GATEWAY_PORT, self.images,
            remove_image=self.images.remove,
            backends={name: self.machine.backend(name) for name in ("local", "docker")},
            probe_health=functools.partial(
                probe, http_get=self.machine.http_get, grpc_check=self.machine.grpc_check
            ),
            scrape_metrics=self.machine.scrape,
        )  # fmt: skip

    def client(self, token: str | None) -> TestClient:
        """The API as the CLI calls it, with this bearer token (None: no header)."""

        def shutdown() -> None:
            self.shutdowns += 1

        app = create_api(self.controller, TOKEN, shutdown=shutdown)
        headers = {"authorization": f"Bearer {token}"} if token is not None else {}
        return TestClient(self._recording(app), headers=headers)

    def _recording(self, app: FastAPI) -> ASGIApp:
        """``app``, noting in ``called`` each route a call reaches past the token check."""

        async def recorder(scope: Scope, receive: Receive, send: Send) -> None:
            status = 0

            async def sent(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            await app(scope, receive, sent)
            route = scope.get("route")
            if isinstance(route, APIRoute) and status != 401:
                self.called.add((scope["method"], route.path))

        return recorder

    def restart(self) -> None:
        """A new controller process over the same store, backend and gateway; it adopts."""
        self.controller.stop()
        self.controller = self._controller()
        self.api = self.client(TOKEN)
        self.controller.adopt(("local", "docker"))

    def close(self) -> None:
        self.controller.stop()
        self.store.close()

    # --- shorthands ---------------------------------------------------------------------
    def reconcile(self, passes: int = 1) -> None:
        for _ in range(passes):
            self.controller.reconcile_once()

    def wait_until(self, done: Callable[[], bool], what: str, timeout: float = 10) -> None:
        """For what a background thread of the controller does (image builds)."""
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
            time.sleep(0.01)

    def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        """One API call; asserts its status and returns its JSON (or text)."""
        response = self.api.request(method, path, **kwargs)
        assert response.status_code == expect, (response.status_code, response.text)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def node(self, name: str, **params: Any) -> Any:
        return self.call("GET", f"/v1/nodes/{name}", params=params)

    def create_node(self, name: str, **spec: Any) -> Any:
        return self.call("POST", "/v1/nodes", 201, json={"name": name, **spec})

    def events(self, name: str) -> list[str]:
        return [e["message"] for e in self.node(name, events=200)["events"]]
