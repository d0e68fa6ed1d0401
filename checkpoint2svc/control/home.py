"""The controller's home directory: its database, token, identity, logs and runtime files."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

HOME_VARIABLE = "CHECKPOINT2SVC_HOME"
DEFAULT_API_PORT = 7070
DEFAULT_GATEWAY_PORT = 8090


def default_home() -> Path:
    return Path(os.environ.get(HOME_VARIABLE) or Path.home() / ".checkpoint2svc")


@dataclass(frozen=True)
class ControllerInfo:
    """What a running controller writes for its clients (``controller.json``)."""

    pid: int
    api_port: int
    gateway_port: int
    controller_id: str

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def database(self) -> Path:
        return self.root / "controller.db"

    @property
    def token_file(self) -> Path:
        return self.root / "token"

    @property
    def info_file(self) -> Path:
        return self.root / "controller.json"

    @property
    def log_file(self) -> Path:
        return self.root / "controller.log"

    @property
    def gateway_dir(self) -> Path:
        """The gateway's runtime files, its unix sockets among them: a socket's path holds at
        most ~100 bytes, so a deep home puts them in a short directory derived from it."""
        inside = self.root / "gateway"
        from checkpoint2svc.gateway.haproxy import MAX_SOCKET_PATH

        longest = inside / "instances" / ("0" * 12) / "http.sock"  # see Controller._socket_dir
        if len(os.fsencode(longest)) <= MAX_SOCKET_PATH:
            return inside
        digest = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"checkpoint2svc-gateway-{digest}"

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.gateway_dir.mkdir(exist_ok=True, mode=0o700)

    def token(self, create: bool = False) -> str:
        """The API's bearer token (created on first use, readable by its owner only)."""
        if not self.token_file.exists() and create:
            fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as stream:
                stream.write(secrets.token_urlsafe(32))
        return self.token_file.read_text().strip()

    def controller_id(self) -> str:
        """Stable across restarts: the label by which this controller finds its instances."""
        path = self.root / "controller-id"
        if not path.exists():
            path.write_text(f"c2s-{secrets.token_hex(4)}\n")
        return path.read_text().strip()

    def write_info(self, info: ControllerInfo) -> None:
        partial = self.info_file.with_suffix(".partial")
        partial.write_text(json.dumps(asdict(info)) + "\n")
        partial.replace(self.info_file)

    def read_info(self) -> ControllerInfo | None:
        try:
            return ControllerInfo(**json.loads(self.info_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None
