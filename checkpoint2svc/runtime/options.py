"""How an instance is served: flags (and ``CHECKPOINT2SVC_*`` variables) -> options."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from checkpoint2svc.execution.executor import ExecutionMode


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_port: int = 9090
    mode: ExecutionMode | None = None
    max_message_mb: float = 16
    http_socket: str | None = None
    """A unix socket to serve HTTP on as well (the gateway's way in on the same machine)."""


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The instance's flags; each also reads a ``CHECKPOINT2SVC_*`` variable (for containers)."""
    env = os.environ.get
    parser.add_argument("--host", default=env("CHECKPOINT2SVC_HOST", "127.0.0.1"),
                        help="interface to bind (default 127.0.0.1)")  # fmt: skip
    parser.add_argument("--http-port", type=int, default=int(env("CHECKPOINT2SVC_HTTP_PORT", 8080)),
                        help="REST port (default 8080)")  # fmt: skip
    parser.add_argument("--grpc-port", type=int, default=int(env("CHECKPOINT2SVC_GRPC_PORT", 9090)),
                        help="gRPC port (default 9090)")  # fmt: skip
    parser.add_argument("--mode", choices=["isolated", "shared"],
                        default=env("CHECKPOINT2SVC_MODE"),
                        help="override the checkpoint's execution mode")  # fmt: skip
    parser.add_argument("--max-message-mb", type=float,
                        default=float(env("CHECKPOINT2SVC_MAX_MESSAGE_MB", 16)),
                        help="request and response size limit in MiB (default 16)")  # fmt: skip
    parser.add_argument("--http-socket", metavar="PATH",
                        default=env("CHECKPOINT2SVC_HTTP_SOCKET") or None,
                        help="also serve REST on this unix socket")  # fmt: skip


def options_from(args: argparse.Namespace) -> ServeOptions:
    return ServeOptions(
        host=args.host, http_port=args.http_port, grpc_port=args.grpc_port, mode=args.mode,
        max_message_mb=args.max_message_mb,
        http_socket=args.http_socket,
    )  # fmt: skip
