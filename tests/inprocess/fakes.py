"""Stand-ins for what the controller drives besides its backends: the gateway (records every
config it is given, and the HAProxy plan that config becomes), the image builder and a
checkpoint on disk (only its manifest: the controller reads the signature from it)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

from checkpoint2svc.control.models import NodeSpec
from checkpoint2svc.errors import Checkpoint2SvcError, GatewayError
from checkpoint2svc.gateway.base import ServerStats
from checkpoint2svc.gateway.config import GatewayConfig, HaproxyPlan, backend_name, plan_haproxy


class RecordingGateway:
    """A gateway that serves nothing: it keeps each config applied, in order, with its plan."""

    def __init__(self, runtime_dir: Path) -> None:
        self.runtime_dir = runtime_dir
        self.configs: list[GatewayConfig] = []
        self.plans: list[HaproxyPlan] = []
        self.starts = 0
        self.stats: ServerStats = {}
        """What ``server_stats`` answers (see ``in_flight``)."""
        self.left_running = False
        """A gateway that a previous controller left running (``adopt`` finds it)."""
        self._running = False

    def start(self, config: GatewayConfig) -> None:
        if self._running:
            raise GatewayError("the gateway is already running; adopt() it")
        self._running = True
        self.starts += 1
        self._record(config)

    def apply(self, config: GatewayConfig) -> None:
        if not self._running:
            raise GatewayError("no gateway is running; start() it first")
        self._record(config)

    def running(self) -> bool:
        return self._running

    def adopt(self) -> bool:
        self._running = self.left_running
        return self._running

    def server_stats(self) -> ServerStats:
        return dict(self.stats)

    def _record(self, config: GatewayConfig) -> None:
        self.plans.append(plan_haproxy(config, self.runtime_dir))  # raises as HAProxy's would
        self.configs.append(config)

    # --- what tests read ----------------------------------------------------------------
    @property
    def config(self) -> GatewayConfig:
        assert self.configs, "the controller has not given the gateway a config yet"
        return self.configs[-1]

    def servers(self, node: str) -> dict[str, bool]:
        """The node's instances the gateway knows -> whether it sends them requests."""
        return {s.id: s.healthy for s in self.config.node(node).servers}

    def weights(self, alias: str) -> dict[str, int]:
        """The HAProxy weight of each instance behind the alias's HTTP backend (0: none)."""
        name = backend_name("alias", alias, "http")
        for backend in self.plans[-1].backends:
            if backend.name == name:
                return {s.name: s.weight if s.enabled else 0 for s in backend.servers}
        raise AssertionError(f"the gateway serves no alias {alias}")

    def in_flight(self, node: str, requests: int) -> None:
        """Make the gateway report ``requests`` in flight for ``node`` (what autoscaling reads)."""
        self.stats[(backend_name("node", node, "http"), "BACKEND")] = {"scur": requests}


class FakeImageBuilder:
    """Builds nothing: reports ``lines``, waits for ``release`` (set unless a test holds the
    build), then returns a tag or raises ``error``. Also the image remover."""

    def __init__(self) -> None:
        self.lines = ("Step 1/4 : FROM python:3.11-slim", "Step 2/4 : COPY checkpoint /srv")
        self.release = threading.Event()
        self.release.set()
        self.reported = threading.Event()
        """Set once a build has reported its lines."""
        self.error: Checkpoint2SvcError | None = None
        self.built: list[str] = []
        self.removed: list[str] = []

    def __call__(self, spec: NodeSpec, progress: Callable[[str], None]) -> str:
        for line in self.lines:
            progress(line)
        self.reported.set()
        assert self.release.wait(10), "the test never released the build"
        if self.error is not None:
            raise self.error
        tag = f"checkpoint2svc-node/{spec.name}:{len(self.built) + 1}"
        self.built.append(tag)
        return tag

    def remove(self, tag: str) -> bool:
        self.removed.append(tag)
        return True


def write_checkpoint(directory: Path, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    """A checkpoint directory with just a manifest whose signature has these fields (name ->
    scalar kind such as ``"int"``); returns its absolute path as the CLI sends it."""
    directory.mkdir(parents=True)

    def variables(fields: dict[str, str]) -> list[dict[str, object]]:
        return [
            {"name": name, "type": {"kind": kind}, "type_text": kind, "example": None}
            for name, kind in fields.items()
        ]

    manifest = {
        "format_version": 1,
        "name": directory.name,
        "notebook": {"name": "demo.ipynb", "sha256": "0" * 64},
        "cell": {"id": "c1", "index": 1, "source": "", "python_source": "", "tags": []},
        "inputs": variables(inputs),
        "outputs": variables(outputs),
        "mode": "isolated",
        "python_version": "3.11",
        "requirements": [],
        "state": [],
        "excluded": [],
        "files": {},
        "created": "2026-01-01T00:00:00Z",
        "checkpoint2svc_version": "0",
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return str(directory.resolve())
