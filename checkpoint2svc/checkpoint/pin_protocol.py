"""What the pin host and the kernel half say to each other: a typed request, a typed result,
and the errors that may cross back instead (each keeps its class, message and attributes).

The request travels as a JSON file next to the checkpoint being written; the answer comes back
as ``result.json`` in the same folder: ``{"ok": <PinResult>}`` or ``{"error": <error>}``. The
kernel imports this module: it must stay light (no nbclient, nbformat, Jinja2).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from checkpoint2svc import errors
from checkpoint2svc.checkpoint.manifest import StateVariable, Variable
from checkpoint2svc.checkpoint.requirements import Distribution
from checkpoint2svc.execution.executor import ExecutionMode
from checkpoint2svc.wire import errors as wire_errors

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
    mode: ExecutionMode = "isolated"

    def write(self, directory: Path) -> Path:
        path = directory / REQUEST_NAME
        path.write_text(json.dumps(asdict(self)), encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: Path) -> PinRequest:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class ExcludedVariable:
    """A variable left out of the state: it cannot be serialized, and the cell does not need it."""

    name: str
    type: str
    """The qualified Python type of the value."""
    reason: str
    """Why it cannot be serialized (the pickler's message)."""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type, "reason": self.reason}


@dataclass(frozen=True)
class PinResult:
    """What the kernel half captured: the signature with examples, the state's contents, the
    requirements, and what to tell the user (the host writes the manifest from it)."""

    inputs: tuple[Variable, ...]
    outputs: tuple[Variable, ...]
    """The served outputs only (those with a wire type)."""
    state: tuple[StateVariable, ...]
    excluded: tuple[ExcludedVariable, ...]
    deterministic: bool
    """Whether a second run on the example inputs gave the same outputs."""
    random_state: tuple[str, ...]
    """The global generators captured (their names)."""
    requirements: tuple[Distribution, ...]
    python_version: str
    warnings: tuple[str, ...] = ()
    """Printed as ``warning: ...`` and kept in the manifest."""
    notes: tuple[str, ...] = ()
    """Printed as ``note: ...`` only (how a rule chose for the user)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": [v.to_dict() for v in self.inputs],
            "outputs": [v.to_dict() for v in self.outputs],
            "state": [{"name": s.name, "type": s.type, "size": s.size} for s in self.state],
            "excluded": [e.to_dict() for e in self.excluded],
            "deterministic": self.deterministic,
            "random_state": list(self.random_state),
            "requirements": [d.to_dict() for d in self.requirements],
            "python_version": self.python_version,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PinResult:
        return cls(
            inputs=tuple(Variable.from_dict(v) for v in data["inputs"]),
            outputs=tuple(Variable.from_dict(v) for v in data["outputs"]),
            state=tuple(StateVariable(s["name"], s["type"], s["size"]) for s in data["state"]),
            excluded=tuple(
                ExcludedVariable(e["name"], e["type"], e["reason"]) for e in data["excluded"]
            ),
            deterministic=data["deterministic"],
            random_state=tuple(data["random_state"]),
            requirements=tuple(
                Distribution(d["name"], d["version"], d["direct"]) for d in data["requirements"]
            ),
            python_version=data["python_version"],
            warnings=tuple(data["warnings"]),
            notes=tuple(data["notes"]),
        )


def _defined_in(*modules: ModuleType) -> dict[str, type[errors.Checkpoint2SvcError]]:
    """The error classes ``modules`` define (not those they import), by name."""
    return {
        value.__name__: value
        for module in modules
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, errors.Checkpoint2SvcError)
        and value.__module__ == module.__name__
    }


CROSSING_ERRORS: dict[str, type[errors.Checkpoint2SvcError]] = _defined_in(wire_errors, errors)
"""The errors that may cross from the kernel half, each with its own class: the whole hierarchy of
``checkpoint2svc.wire.errors`` and ``checkpoint2svc.errors``, where everything the kernel half
raises comes from (a unit test reads its modules to keep it so). :func:`error_from_wire` rebuilds
any of them without calling its constructor."""


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


def write_result(directory: Path, outcome: PinResult | errors.Checkpoint2SvcError) -> Path:
    """The kernel half's answer, as ``result.json`` in ``directory``."""
    if isinstance(outcome, PinResult):
        data = {"ok": outcome.to_json()}
    else:
        data = {"error": error_to_wire(outcome)}
    path = directory / RESULT_NAME
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def read_result(path: Path) -> PinResult:
    """The result :func:`write_result` wrote at ``path``; the error it carried is raised here."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))  # ValueError: truncated, not JSON
        if "error" in data:
            error = error_from_wire(data["error"])
        else:
            return PinResult.from_json(data["ok"])
    except (ValueError, KeyError, TypeError, AttributeError, errors.CheckpointError) as exc:
        raise errors.CheckpointError(
            f"the kernel's answer is malformed ({type(exc).__name__}: {exc}): it runs another "
            "version of checkpoint2svc; install this version into the kernel's environment, or "
            "omit --kernel to use this Python"
        ) from None
    raise error


__all__ = [
    "CROSSING_ERRORS",
    "REQUEST_NAME",
    "RESULT_NAME",
    "ExcludedVariable",
    "PinRequest",
    "PinResult",
    "error_from_wire",
    "error_to_wire",
    "read_result",
    "write_result",
]
