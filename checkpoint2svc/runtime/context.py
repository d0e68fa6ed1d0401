"""The names a generated service directory records for the runtime (``context.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from checkpoint2svc.errors import Checkpoint2SvcError

CONTEXT_FILE = "context.json"
GEN_DIR = "gen"
CHECKPOINT_DIR = "checkpoint"


@dataclass(frozen=True)
class ServiceNames:
    """How the generated code is named; written to ``context.json`` for the runtime."""

    name: str
    module: str
    """Stem of the proto file and of its ``_pb2`` modules, e.g. ``predict``."""
    package: str
    """The proto package, e.g. ``checkpoint2svc.generated.predict``."""
    service: str
    """The typed gRPC service, e.g. ``PredictService``."""

    @property
    def full_service(self) -> str:
        return f"{self.package}.{self.service}"


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
