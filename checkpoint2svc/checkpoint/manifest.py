"""The checkpoint manifest: what was pinned, from where, with which signature and requirements."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checkpoint2svc.errors import CheckpointError, MalformedTypeError
from checkpoint2svc.execution.executor import ExecutionMode
from checkpoint2svc.wire.signature import Signature
from checkpoint2svc.wire.type_ir import TypeIR, type_from_dict

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
STATE_NAME = "state.dill"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Variable:
    """One input or output of the cell: its name, type and the value seen at pin time (JSON)."""

    name: str
    type: TypeIR
    example: Any

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type.to_dict(),
            "type_text": self.type.render(),
            "example": self.example,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Variable:
        try:
            type_ = type_from_dict(data["type"])
        except MalformedTypeError as exc:
            raise CheckpointError(str(exc)) from exc
        return cls(data["name"], type_, data.get("example"))


@dataclass(frozen=True)
class TargetCell:
    id: str
    index: int
    """Position among all the notebook's cells."""
    source: str
    python_source: str
    """The source with IPython syntax turned into plain Python: what the service executes."""
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "index": self.index,
            "source": self.source,
            "python_source": self.python_source,
            "tags": list(self.tags),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetCell:
        return cls(
            data["id"], data["index"], data["source"], data["python_source"],
            tuple(data.get("tags", ())),
        )  # fmt: skip


@dataclass(frozen=True)
class StateVariable:
    name: str
    type: str
    """The qualified Python type of the value."""
    size: int
    """Bytes the value takes serialized on its own."""


@dataclass
class Manifest:
    name: str
    notebook: str
    notebook_sha256: str
    cell: TargetCell
    inputs: list[Variable]
    outputs: list[Variable]
    mode: ExecutionMode
    python_version: str
    requirements: list[dict[str, Any]]
    state: list[StateVariable]
    excluded: list[dict[str, str]]
    files: dict[str, str]
    created: str
    checkpoint2svc_version: str
    warnings: list[str] = field(default_factory=list)
    deterministic: bool = True
    """False when two runs of the cell on the example gave different outputs at pin time: the
    readiness self-test then checks the outputs' types and shapes, not their values."""
    random_state: list[str] = field(default_factory=list)
    """The global generators captured at pin time (restored before every isolated call)."""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "name": self.name,
            "notebook": {"name": self.notebook, "sha256": self.notebook_sha256},
            "cell": self.cell.to_dict(),
            "inputs": [v.to_dict() for v in self.inputs],
            "outputs": [v.to_dict() for v in self.outputs],
            "mode": self.mode,
            "python_version": self.python_version,
            "requirements": self.requirements,
            "state": [{"name": s.name, "type": s.type, "size": s.size} for s in self.state],
            "excluded": self.excluded,
            "deterministic": self.deterministic,
            "random_state": self.random_state,
            "files": self.files,
            "created": self.created,
            "checkpoint2svc_version": self.checkpoint2svc_version,
            "warnings": self.warnings,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint format version {version!r} is not supported (this checkpoint2svc "
                f"reads version {FORMAT_VERSION}); pin the notebook again with this version"
            )
        return cls(
            name=data["name"],
            notebook=data["notebook"]["name"],
            notebook_sha256=data["notebook"]["sha256"],
            cell=TargetCell.from_dict(data["cell"]),
            inputs=[Variable.from_dict(v) for v in data["inputs"]],
            outputs=[Variable.from_dict(v) for v in data["outputs"]],
            mode=data["mode"],
            python_version=data["python_version"],
            requirements=data["requirements"],
            state=[StateVariable(s["name"], s["type"], s["size"]) for s in data["state"]],
            excluded=data["excluded"],
            deterministic=data.get("deterministic", True),
            random_state=data.get("random_state", []),
            files=data["files"],
            created=data["created"],
            checkpoint2svc_version=data["checkpoint2svc_version"],
            warnings=data.get("warnings", []),
        )

    def signature(self) -> dict[str, Any]:
        """The inputs' and outputs' names and types: what a client of the service depends on
        (``Signature.to_dict``'s form; ``typed_signature`` is the object)."""
        return self.typed_signature().to_dict()

    def typed_signature(self) -> Signature:
        return Signature.of(
            ((v.name, v.type) for v in self.inputs), ((v.name, v.type) for v in self.outputs)
        )

    def signature_sha256(self) -> str:
        text = json.dumps(self.signature(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def write(self, directory: Path) -> None:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"
        (directory / MANIFEST_NAME).write_text(text, encoding="utf-8")

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_NAME
        if not path.is_file():
            raise CheckpointError(
                f"{directory} is not a checkpoint: it has no {MANIFEST_NAME} "
                "(make one with `checkpoint2svc pin NOTEBOOK --cell SELECTOR -o DIR`)"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls.from_dict(data)
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path} is malformed ({exc!r}); pin the notebook again") from exc
