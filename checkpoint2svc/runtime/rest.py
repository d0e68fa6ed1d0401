"""The instance's REST API on Starlette: a lean hot path, documented in /openapi.json."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from checkpoint2svc.errors import ExecutionError, ValueConversionError
from checkpoint2svc.runtime.json_values import TensorFormat
from checkpoint2svc.runtime.service import CellService

log = logging.getLogger("checkpoint2svc.rest")
JSON = "application/json"


class PayloadTooLarge(Exception):
    pass


def _json(status: int, body: Any) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status, media_type=JSON)


def _error(status: int, name: str, message: str, **extra: Any) -> Response:
    return _json(status, {"error_name": name, "error_message": message, "traceback": [], **extra})


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    service: CellService, openapi: Callable[[], dict[str, Any]] | None = None
) -> Starlette:
    """The REST app over ``service`` (which bounds how many cells run at once)."""
    limit = service.limits.max_message_bytes
    metrics = service.metrics

    async def execute(request: Request) -> Response:
        started = time.perf_counter()
        response = await _execute(request)
        metrics.observe(time.perf_counter() - started, http_code=response.status_code)
        return response

    async def _execute(request: Request) -> Response:
        rid = request.headers.get("x-request-id") or service.next_request_id()
        try:
            body = await _read_body(request, limit)
        except PayloadTooLarge:
            return _error(413, "PayloadTooLarge",
                          f"the request body exceeds the limit of {service.limits.describe()} "
                          "(--max-message-mb)")  # fmt: skip
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _error(422, "ValidationError", f"the body is not valid JSON ({exc})", field="")
        if not isinstance(data, dict) or "input" not in data:
            return _error(
                422, "ValidationError", 'the body must be {"input": {...}}', field="input"
            )
        try:
            inputs = service.decode_input(data["input"])
            outputs = await anyio.to_thread.run_sync(service.run, inputs, rid)
            tensors: TensorFormat = (
                "b64" if request.headers.get("x-tensor-format") == "b64" else "list"
            )
            encoded = service.encode_output(outputs, tensors)
            payload = orjson.dumps({"output": encoded}, option=orjson.OPT_SERIALIZE_NUMPY)
        except ValueConversionError as exc:
            return _error(422, "ValidationError", exc.reason, field=exc.field)
        except ExecutionError as exc:
            log.warning("[%s] the cell raised %s: %s", rid, exc.error_name, exc.error_message)
            return _json(500, {"error_name": exc.error_name, "error_message": exc.error_message,
                               "traceback": exc.traceback})  # fmt: skip
        if len(payload) > limit:
            return _error(413, "PayloadTooLarge",
                          f"the response ({len(payload)} bytes) exceeds the limit of "
                          f"{service.limits.describe()} (--max-message-mb)")  # fmt: skip
        return Response(payload, 200, media_type=JSON, headers={"x-request-id": rid})

    async def healthz(request: Request) -> Response:
        return _json(200, {"status": "alive"})

    async def readyz(request: Request) -> Response:
        if service.ready:
            return _json(200, {"status": "ready"})
        return _json(503, {"status": "not ready"})

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
        Route("/execute", execute, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        404: not_found,
        405: not_allowed,
    }
    return Starlette(routes=routes, exception_handlers=handlers)


_SWAGGER_UI = """<!DOCTYPE html>
<html><head><title>{title} - Swagger UI</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head><body><div id="swagger-ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>
"""
