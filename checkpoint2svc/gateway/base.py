"""What the controller needs of a gateway: ``haproxy.Gateway`` offers it, and so does the
in-process test tier's recording fake (tests/inprocess/fakes.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from checkpoint2svc.gateway.config import GatewayConfig

ServerStats = dict[tuple[str, str], dict[str, int | str]]
"""Counters keyed by (proxy, server); a backend's total is under (backend, "BACKEND")."""


class GatewayLike(Protocol):
    @property
    def runtime_dir(self) -> Path:
        """Where the gateway keeps its files; instances' unix socket directories go below it."""
        ...

    def start(self, config: GatewayConfig) -> None:
        """Start serving ``config`` (the gateway is not running yet)."""
        ...

    def apply(self, config: GatewayConfig) -> None:
        """Serve ``config`` from now on, without failing a request in flight."""
        ...

    def running(self) -> bool: ...

    def adopt(self) -> bool:
        """Re-attach to a gateway a previous controller started; False when none runs."""
        ...

    def server_stats(self) -> ServerStats:
        """The gateway's counters (``scur``, ``qcur``, ``hrsp_2xx``...)."""
        ...
