"""What the pin host and the kernel half say to each other: a typed request, and the errors that
may cross back (each keeps its class, message and attributes).

The request travels as a JSON file next to the checkpoint being written; the answer comes back
as ``result.json`` in the same folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from checkpoint2svc import errors

REQUEST_NAME = "request.json"
RESULT_NAME = "result.json"


@dataclass(frozen=True)
class PinRequest:
    python_source: str
    """The target cell as plain Python."""
    parameters_source: str | None
    """The cell tagged ``parameters`` as plain Python, if the notebook has one."""
    inputs: list[str] | None
    outputs: list[str] | None
    strict: bool
    label: str
    """How messages name the target cell (``the target cell #3``)."""
    mode: str = "isolated"

    def write(self, directory: Path) -> Path:
        path = directory / REQUEST_NAME
        path.write_text(json.dumps(asdict(self)), encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: Path) -> PinRequest:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


# The errors the kernel half raises on purpose: each crosses with its own class.
CROSSING_ERRORS: dict[str, type[errors.Checkpoint2SvcError]] = {
    cls.__name__: cls
    for cls in (
        errors.Checkpoint2SvcError,
        errors.SignatureError,
        errors.TypeInferenceError,
        errors.UnserializableStateError,
        errors.CellExecutionError,
        errors.ValueConversionError,
        errors.ExecutionError,
        errors.CheckpointError,
    )
}


def error_to_wire(exc: errors.Checkpoint2SvcError) -> dict[str, Any]:
    """An error as JSON data: class name, message, and its JSON-able attributes."""
    attributes = {}
    for key, value in vars(exc).items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        attributes[key] = value
    return {"class": type(exc).__name__, "message": str(exc), "attributes": attributes}


def error_from_wire(data: dict[str, Any]) -> errors.Checkpoint2SvcError:
    """The error ``error_to_wire`` described, with the same message whatever its constructor
    takes; an unknown class arrives as the root class, message intact."""
    cls = CROSSING_ERRORS.get(data.get("class", ""), errors.Checkpoint2SvcError)
    exc = cls.__new__(cls)
    Exception.__init__(exc, data.get("message", "the kernel reported an error"))
    exc.__dict__.update(data.get("attributes", {}))
    return exc


__all__ = [
    "CROSSING_ERRORS",
    "REQUEST_NAME",
    "RESULT_NAME",
    "PinRequest",
    "error_from_wire",
    "error_to_wire",
]
