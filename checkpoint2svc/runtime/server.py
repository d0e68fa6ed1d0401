"""Run one instance: load the checkpoint, self-test it, serve REST (and gRPC) until stopped."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from checkpoint2svc.checkpoint import Checkpoint
from checkpoint2svc.runtime import cell_output
from checkpoint2svc.runtime.executor import ExecutionMode
from checkpoint2svc.runtime.rest import create_app
from checkpoint2svc.runtime.service import CellService, Limits, SelfTestError

log = logging.getLogger("checkpoint2svc.instance")


def build_service(
    checkpoint_path: Path, mode: ExecutionMode | None, max_message_mb: float
) -> CellService:
    checkpoint = Checkpoint.open(checkpoint_path)
    limits = Limits(max_message_bytes=int(max_message_mb * 1024 * 1024))
    service = CellService(checkpoint, mode=mode, limits=limits)
    try:
        service.self_test()
    except SelfTestError as exc:
        log.error("%s; /readyz answers 503", exc)
    return service


def serve(
    checkpoint_path: Path,
    host: str = "127.0.0.1",
    http_port: int = 8080,
    mode: ExecutionMode | None = None,
    concurrency: int = 1,
    max_message_mb: float = 16,
) -> None:
    """Serve until interrupted (SIGINT/SIGTERM end it gracefully)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    cell_output.install()
    service = build_service(checkpoint_path, mode, max_message_mb)
    app = create_app(service, concurrency=concurrency, openapi=_openapi(service))
    log.info("serving %s: REST on http://%s:%d", service.manifest.name, host, http_port)
    uvicorn.run(
        app, host=host, port=http_port, loop="uvloop", http="httptools",
        log_level="warning", access_log=False,
    )  # fmt: skip


def _openapi(service: CellService) -> Any:
    try:
        from checkpoint2svc.codegen.json_schema import openapi_document
    except ImportError:  # pragma: no cover - the generator ships with the package
        return None
    return functools.cache(lambda: openapi_document(service.manifest))
