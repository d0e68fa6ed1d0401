"""Whether a node can join an alias without breaking the alias's clients: same inputs and
outputs, with the same types. What differs is listed, one line per field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from checkpoint2svc.control.models import NodeSpec

Signature = dict[str, Any]


def node_signature(spec: NodeSpec) -> Signature | None:
    """The node's signature from its checkpoint; None for an image node (not known here)."""
    if spec.checkpoint is None:
        return None
    from checkpoint2svc.checkpoint.manifest import Manifest

    return Manifest.read(Path(spec.checkpoint)).signature()


def _fields(signature: Signature, side: str) -> dict[str, str]:
    return {
        f["name"]: json.dumps(f["type"], sort_keys=True, separators=(",", ":"))
        for f in signature[side]
    }


def _type_text(data: str) -> str:
    from checkpoint2svc.signature.types import type_from_dict

    return type_from_dict(json.loads(data)).render()


def signature_differences(current: Signature, candidate: Signature) -> list[str]:
    """What a client of ``current`` would notice with ``candidate``; empty when compatible."""
    lines = []
    for side, missing_text, added_text in (
        ("inputs", "input {} is gone (clients that send it are refused)",
         "new input {}: {} (clients do not send it)"),
        ("outputs", "output {} is gone (clients that read it break)", ""),
    ):  # fmt: skip
        old, new = _fields(current, side), _fields(candidate, side)
        for name in sorted(old.keys() - new.keys()):
            lines.append("- " + missing_text.format(name))
        if added_text:
            for name in sorted(new.keys() - old.keys()):
                lines.append("+ " + added_text.format(name, _type_text(new[name])))
        for name in sorted(old.keys() & new.keys()):
            if old[name] != new[name]:
                singular = side[:-1]
                lines.append(
                    f"~ {singular} {name}: {_type_text(old[name])} -> {_type_text(new[name])}"
                )
    return lines
