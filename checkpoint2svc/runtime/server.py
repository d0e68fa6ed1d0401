"""Run one instance: load the checkpoint, self-test it, serve REST and gRPC until stopped.

The instance serves a generated service directory (``context.json``, ``server.py``,
``openapi.json``, protoc's modules in ``gen/``); the runtime never generates one (it imports
nothing of ``checkpoint2svc.codegen``): ``checkpoint2svc serve CHECKPOINT`` renders it into a
``work_dir`` first and serves the checkpoint where it is.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from checkpoint2svc.checkpoint import Checkpoint
from checkpoint2svc.runtime import cell_output
from checkpoint2svc.runtime.context import CHECKPOINT_DIR, GEN_DIR, read_context
from checkpoint2svc.runtime.grpc_server import AddServicer, create_grpc_server
from checkpoint2svc.runtime.http_protocol import CoalescingHttpToolsProtocol
from checkpoint2svc.runtime.options import ServeOptions, add_serve_arguments, options_from
from checkpoint2svc.runtime.rest import create_app
from checkpoint2svc.runtime.service import CellService, SelfTestError
from checkpoint2svc.wire.limits import Limits
from checkpoint2svc.wire.proto_values import add_generated_path

log = logging.getLogger("checkpoint2svc.instance")


def _uvicorn_server() -> type:
    import uvicorn

    return uvicorn.Server


def use_generated_modules(context_dir: Path) -> None:
    """Make the generated ``_pb2`` modules of a service directory importable."""
    add_generated_path(context_dir / GEN_DIR)


def build_service(checkpoint_path: Path, options: ServeOptions) -> CellService:
    checkpoint = Checkpoint.open(checkpoint_path)
    limits = Limits(max_message_bytes=int(options.max_message_mb * 1024 * 1024))
    service = CellService(checkpoint, options.mode, limits)
    try:
        service.self_test()
    except SelfTestError as exc:
        service.not_ready_reason = f"self-test failed: {exc}"
        log.error("%s; /readyz answers 503 and gRPC health NOT_SERVING", exc)
    return service


def run_instance(
    context_dir: Path,
    add_servicer: AddServicer,
    options: ServeOptions,
    checkpoint_dir: Path | None = None,
) -> None:
    """Serve a generated service directory until SIGINT/SIGTERM, then stop gracefully; the
    checkpoint is the directory's ``checkpoint/`` unless ``checkpoint_dir`` is given."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    cell_output.install()
    names = read_context(context_dir)
    use_generated_modules(context_dir)
    service = build_service(checkpoint_dir or context_dir / CHECKPOINT_DIR, options)
    grpc_server, grpc_port = create_grpc_server(
        service, names, add_servicer, f"{options.host}:{options.grpc_port}",
        workers=4,  # one cell at a time; more threads only add GIL hand-offs (bench_grpc)
    )  # fmt: skip
    app = create_app(service, openapi=_openapi(context_dir))
    config = uvicorn.Config(
        app, host=options.host, port=options.http_port, loop="uvloop",
        http=CoalescingHttpToolsProtocol,  # one write per response (bench_rest)
        log_level="warning", access_log=False, timeout_graceful_shutdown=10,
    )  # fmt: skip
    sockets = [config.bind_socket()]
    if options.http_socket:
        sockets.append(unix_listener(options.http_socket))
    grpc_server.start()
    log.info(
        "serving %s: REST on http://%s:%d%s, gRPC on %s:%d",
        names.name, options.host, options.http_port,
        f" and unix:{options.http_socket}" if options.http_socket else "", options.host, grpc_port,
    )  # fmt: skip
    try:
        _GracefulServer(config).run(sockets=sockets)
    finally:
        grpc_server.stop(grace=5).wait()
        for listener in sockets:
            listener.close()
        if options.http_socket:
            Path(options.http_socket).unlink(missing_ok=True)
        log.info("stopped")


def unix_listener(path: str) -> socket.socket:
    """A listening unix socket at ``path`` (a stale file from a killed instance is replaced),
    open to any local user: the directory it is in decides who may reach it."""
    Path(path).unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o666)
    listener.listen(2048)
    return listener


class _GracefulServer(_uvicorn_server()):  # type: ignore[misc]
    """uvicorn re-raises SIGTERM/SIGINT after its shutdown, which would kill the process before
    the gRPC server drains and temporary files are removed; here the signal only stops serving."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def main(context_dir: Path, add_servicer: AddServicer, argv: list[str] | None = None) -> int:
    """Entry point of a generated ``server.py``."""
    parser = argparse.ArgumentParser(description=f"Serve {context_dir.name}.")
    add_serve_arguments(parser)
    run_instance(context_dir, add_servicer, options_from(parser.parse_args(argv)))
    return 0


def load_server_module(context_dir: Path) -> ModuleType:
    """Import a service directory's generated ``server.py``."""
    names = read_context(context_dir)
    spec = importlib.util.spec_from_file_location(
        f"{names.module}_server", context_dir / "server.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def serve(context_dir: Path, options: ServeOptions, checkpoint_dir: Path | None = None) -> None:
    """Serve a generated service directory (with its own checkpoint, or ``checkpoint_dir``)."""
    run_instance(context_dir, load_server_module(context_dir).add_servicer, options, checkpoint_dir)


WORK_DIR_PREFIX = "checkpoint2svc-serve-"
OWNER_FILE = "owner.pid"


@contextlib.contextmanager
def work_dir() -> Iterator[Path]:
    """A temporary directory of this process for a service directory rendered to serve it,
    removed afterwards (and, if the process is killed, by the next instance that starts)."""
    remove_orphaned_work_dirs()
    with tempfile.TemporaryDirectory(prefix=WORK_DIR_PREFIX) as tmp:
        (Path(tmp) / OWNER_FILE).write_text(str(os.getpid()))
        yield Path(tmp)


def remove_orphaned_work_dirs() -> None:
    """Remove the generated directories of instances that were killed (SIGKILL leaves no chance
    to clean up): those whose owner process is gone."""
    for directory in Path(tempfile.gettempdir()).glob(f"{WORK_DIR_PREFIX}*"):
        try:
            owner = int((directory / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours to judge (or still being created)
        if not Path(f"/proc/{owner}").exists():
            shutil.rmtree(directory, ignore_errors=True)


def _openapi(context_dir: Path) -> Any:
    path = context_dir / "openapi.json"

    @functools.cache
    def document() -> dict[str, Any]:
        import json

        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data

    return document
