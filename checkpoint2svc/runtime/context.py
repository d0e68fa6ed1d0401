"""The names a generated service directory records for the runtime (``context.json``)."""

from __future__ import annotations

import json
from pathlib import Path

from checkpoint2svc.errors import Checkpoint2SvcError
from checkpoint2svc.wire.names import ServiceNames

CONTEXT_FILE = "context.json"
GEN_DIR = "gen"
CHECKPOINT_DIR = "checkpoint"


def read_context(directory: Path) -> ServiceNames:
    """The names recorded in a generated directory; a clear error if it is not one."""
    path = directory / CONTEXT_FILE
    if not path.is_file():
        raise Checkpoint2SvcError(
            f"{directory} is neither a checkpoint nor a generated service (no {CONTEXT_FILE}); "
            "create one with `checkpoint2svc generate CHECKPOINT -o DIR`"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    return ServiceNames(data["name"], data["module"], data["package"], data["service"])
