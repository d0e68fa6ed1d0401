"""The instance's REST API on Starlette: a lean hot path, documented in /openapi.json."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from checkpoint2svc.errors import ExecutionError, ValueConversionError
from checkpoint2svc.runtime.service import CellService
from checkpoint2svc.wire.json_values import TensorFormat

log = logging.getLogger("checkpoint2svc.rest")
JSON = "application/json"
# What is left of a refused request body is read (and dropped) before the 413 goes out, up to
# DRAIN_FACTOR times the limit more and for DRAIN_SECONDS at most: ExecuteEndpoint._discard_rest.
# The gateway drains a body over its own limit as far (gateway/config.py).
DRAIN_FACTOR = 4
DRAIN_SECONDS = 10.0


Headers = list[tuple[bytes, bytes]]


def _json(status: int, body: Any) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status, media_type=JSON)


def _error(status: int, name: str, message: str, **extra: Any) -> Response:
    return Response(_error_body(name, message, **extra), status, media_type=JSON)


def _error_body(name: str, message: str, **extra: Any) -> bytes:
    return orjson.dumps({"error_name": name, "error_message": message, "traceback": [], **extra})


class ExecuteEndpoint:
    """``POST /execute`` as a bare ASGI handler: the hot path skips routing and request objects.

    A cell that has been quick so far (see ``CellService.is_quick``) runs right on the event
    loop; a slow one runs in a worker thread so that the loop keeps answering health checks.
    """

    def __init__(self, service: CellService) -> None:
        self.service = service
        self.limit = service.limits.max_message_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = dict(scope["headers"])
        rid = headers.get(b"x-request-id", b"").decode("latin-1") or self.service.next_request_id()
        body = await self._read_body(headers, receive)
        if body is None:
            await self._discard_rest(headers, receive)
            status, payload = self._too_large("the request body")
        else:
            status, payload = await self._respond(headers, body, rid)
        response_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"x-request-id", rid.encode("latin-1")),
        ]
        if body is None:  # the connection ends here: past the bounds, some of the body is unread
            response_headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})
        alias = headers.get(b"x-node-alias")  # set by the gateway on alias traffic only
        self.service.metrics.observe(
            time.perf_counter() - started, http_code=status,
            alias=alias.decode("latin-1") if alias else "",
        )  # fmt: skip

    def _too_large(self, what: str) -> tuple[int, bytes]:
        message = f"{what} exceeds the limit of {self.service.limits.describe()} (--max-message-mb)"
        return 413, _error_body("PayloadTooLarge", message)

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes | None:
        """The body, or None when it is over the limit."""
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return None
        chunks = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _discard_rest(self, headers: dict[bytes, bytes], receive: Receive) -> None:
        """Read and drop what is left of a refused body, within bounds, before the 413 goes out.

        A client that writes its whole body before it reads the answer (http.client, urllib,
        httpx) must be let to finish: a server that closes with the body unread makes the
        kernel reset the connection, and the client sees "connection reset" or "broken pipe"
        instead of the 413 (uvicorn closes at once when the request said ``Connection: close``,
        as urllib's requests do). An endless or slow sender must not hold the connection,
        though: at most ``DRAIN_FACTOR`` times the limit more is read, for at most
        ``DRAIN_SECONDS``; past that the 413 reaches only a client that reads while it sends.
        """
        declared = headers.get(b"content-length", b"")
        if declared.isdigit():  # refused on its declared length, before anything was read
            if int(declared) > self.limit * DRAIN_FACTOR:
                return  # past the bounds from the start: answer at once
            if headers.get(b"expect", b"").lower() == b"100-continue":
                return  # the client waits for a "100 Continue" before it sends: it sends nothing
        left = self.limit * DRAIN_FACTOR
        with anyio.move_on_after(DRAIN_SECONDS):
            while left >= 0:
                message = await receive()  # uvicorn answers an Expect: 100-continue here
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return  # the body is over, or the client has gone
                left -= len(message.get("body", b""))
            log.info("a refused request body went on past %dx the limit; closing", DRAIN_FACTOR)
            return
        log.info("a refused request body was not over after %g s; closing", DRAIN_SECONDS)

    async def _respond(
        self, headers: dict[bytes, bytes], body: bytes, rid: str
    ) -> tuple[int, bytes]:
        service = self.service
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            message = f"the body is not valid JSON ({exc})"
            return 422, _error_body("ValidationError", message, field="")
        if not isinstance(data, dict) or "input" not in data:
            message = 'the body must be {"input": {...}}'
            return 422, _error_body("ValidationError", message, field="input")
        tensors: TensorFormat = "b64" if headers.get(b"x-tensor-format") == b"b64" else "list"
        try:
            inputs = service.decode_input(data["input"])
            # A quick cell runs right here if a slot is free; the loop never waits for one.
            outputs = service.run_if_free(inputs, rid) if service.is_quick() else None
            if outputs is None:
                outputs = await anyio.to_thread.run_sync(service.run, inputs, rid)
            encoded = service.encode_output(outputs, tensors)
            payload = orjson.dumps({"output": encoded}, option=orjson.OPT_SERIALIZE_NUMPY)
        except ValueConversionError as exc:
            return 422, _error_body("ValidationError", exc.reason, field=exc.field)
        except ExecutionError as exc:
            log.warning("[%s] the cell raised %s: %s", rid, exc.error_name, exc.error_message)
            return 500, orjson.dumps({"error_name": exc.error_name,
                                      "error_message": exc.error_message,
                                      "traceback": exc.traceback})  # fmt: skip
        if len(payload) > self.limit:
            return self._too_large(f"the response ({len(payload)} bytes)")
        return 200, payload


class RestApp:
    """The instance's ASGI app: the ``POST /execute`` hot path, Starlette for everything else."""

    def __init__(self, execute: ExecuteEndpoint, other: Starlette) -> None:
        self._execute = execute
        self._other = other

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/execute":
            await self._execute(scope, receive, send)
        else:
            await self._other(scope, receive, send)


def create_app(
    service: CellService, openapi: Callable[[], dict[str, Any]] | None = None
) -> RestApp:
    """The REST app over ``service`` (which bounds how many cells run at once)."""
    metrics = service.metrics

    async def execute_other_method(request: Request) -> Response:
        raise AssertionError("unreachable: POST /execute is served by ExecuteEndpoint")

    async def healthz(request: Request) -> Response:
        return _json(200, {"status": "alive"})

    async def readyz(request: Request) -> Response:
        if service.ready:
            return _json(200, {"status": "ready"})
        return _json(503, {"status": "not ready", "reason": service.not_ready_reason})

    async def metrics_text(request: Request) -> Response:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    async def openapi_json(request: Request) -> Response:
        if openapi is None:
            return _error(404, "NotFound", "this instance has no OpenAPI document")
        return _json(200, openapi())

    async def docs(request: Request) -> Response:
        return HTMLResponse(_SWAGGER_UI.replace("{title}", service.manifest.name))

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, "NotFound", f"no route {request.method} {request.url.path}; "
                      "POST /execute runs the cell, /docs describes the API")  # fmt: skip

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return _error(
            405, "MethodNotAllowed", f"{request.method} is not allowed on {request.url.path}"
        )

    routes = [
        Route("/execute", execute_other_method, methods=["POST"]),  # for 405 on other methods
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Mount("/docs/static", StaticFiles(directory=_swagger_ui_assets())),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        404: not_found,
        405: not_allowed,
    }
    return RestApp(ExecuteEndpoint(service), Starlette(routes=routes, exception_handlers=handlers))


_SWAGGER_UI = """<!DOCTYPE html>
<html><head><title>{title} - Swagger UI</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css">
</head><body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>
"""


def _swagger_ui_assets() -> str:
    """Swagger UI 5 (OpenAPI 3.1), served from a PyPI package: /docs works offline."""
    import fastapi_offline

    return str(Path(fastapi_offline.__file__).resolve().parent / "static")
