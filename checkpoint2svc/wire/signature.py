"""A service's signature: its inputs and outputs, each a name and a type of the IR.

A generated client embeds one (``models.py``) to check and convert values; a manifest has one
(``Manifest.signature``), and two signatures compare to say whether a client of one can call a
service of the other. Its dict form, ``{"inputs": [{"name", "type"}...], "outputs": [...]}``, is
what ``to_dict`` gives and ``from_dict`` reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .client_errors import ValidationError
from .errors import MalformedTypeError
from .type_ir import Field, Optional, Record, TypeIR, type_from_dict


@dataclass(frozen=True)
class Signature:
    """The inputs and outputs, each side a record (one field per variable, in order)."""

    inputs: Record
    outputs: Record

    @classmethod
    def of(
        cls, inputs: Iterable[tuple[str, TypeIR]], outputs: Iterable[tuple[str, TypeIR]]
    ) -> Signature:
        """The signature of these ``(name, type)`` pairs."""
        return cls(
            Record(tuple(Field(name, type_) for name, type_ in inputs)),
            Record(tuple(Field(name, type_) for name, type_ in outputs)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [{"name": f.name, "type": f.type.to_dict()} for f in self.inputs.fields],
            "outputs": [{"name": f.name, "type": f.type.to_dict()} for f in self.outputs.fields],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        """The inverse of ``to_dict``; ``MalformedTypeError`` if ``data`` is not of that form."""
        try:
            return cls.of(
                ((f["name"], type_from_dict(f["type"])) for f in data["inputs"]),
                ((f["name"], type_from_dict(f["type"])) for f in data["outputs"]),
            )
        except (KeyError, TypeError) as exc:
            raise MalformedTypeError(f"malformed signature: {data!r} ({exc!r})") from exc

    def check_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """``inputs`` with every input present (a missing optional one is ``None``).

        Raises ``ValidationError`` naming an unknown or a missing input.
        """
        names = [f.name for f in self.inputs.fields]
        unknown = sorted(set(inputs) - set(names))
        if unknown:
            raise ValidationError(
                f"input.{unknown[0]}",
                f"not an input of this service (inputs: {', '.join(names) or 'none'})",
            )
        values: dict[str, Any] = {}
        for field in self.inputs.fields:
            if field.name in inputs:
                values[field.name] = inputs[field.name]
            elif isinstance(field.type, Optional):
                values[field.name] = None
            else:
                raise ValidationError(f"input.{field.name}", "field required")
        return values
