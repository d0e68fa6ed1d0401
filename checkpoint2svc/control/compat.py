"""Whether a node can join an alias (or a new version replace a node) without breaking their
clients: same inputs and outputs, with the same types (IR values compared, not their text).
What differs is listed, one line per field. The one guard the controller's alias routes and the
deployer share."""

from __future__ import annotations

import json
from pathlib import Path

from checkpoint2svc.control.models import NodeSpec
from checkpoint2svc.errors import Checkpoint2SvcError
from checkpoint2svc.wire.signature import Signature
from checkpoint2svc.wire.type_ir import Record, TypeIR


def node_signature(spec: NodeSpec) -> Signature | None:
    """The node's signature: from its checkpoint's manifest, or its image's signature label;
    None when it cannot be known (the checkpoint is gone, the image is not a checkpoint2svc
    image, or was built before the label was recorded, or no engine answers)."""
    try:
        if spec.checkpoint is not None:
            from checkpoint2svc.checkpoint.manifest import Manifest

            return Manifest.read(Path(spec.checkpoint)).typed_signature()
        if spec.image is not None:
            from checkpoint2svc.image.engine import docker_client
            from checkpoint2svc.image.labels import read_image_labels

            labels, _ = read_image_labels(docker_client(timeout=10), spec.image)
            return Signature.from_dict(json.loads(labels.signature)) if labels.signature else None
    except (Checkpoint2SvcError, ValueError, KeyError, TypeError):
        return None
    return None


def _types(side: Record) -> dict[str, TypeIR]:
    return {field.name: field.type for field in side.fields}


def signature_differences(current: Signature, candidate: Signature) -> list[str]:
    """What a client of ``current`` would notice with ``candidate``; empty when compatible."""
    lines = []
    for side, missing_text, added_text in (
        ("inputs", "input {} is gone (clients that send it are refused)",
         "new input {}: {} (clients do not send it)"),
        ("outputs", "output {} is gone (clients that read it break)", ""),
    ):  # fmt: skip
        old = _types(getattr(current, side))
        new = _types(getattr(candidate, side))
        for name in sorted(old.keys() - new.keys()):
            lines.append("- " + missing_text.format(name))
        if added_text:
            for name in sorted(new.keys() - old.keys()):
                lines.append("+ " + added_text.format(name, new[name].render()))
        for name in sorted(old.keys() & new.keys()):
            if old[name] != new[name]:
                singular = side[:-1]
                lines.append(f"~ {singular} {name}: {old[name].render()} -> {new[name].render()}")
    return lines


def incompatibility(
    subject: str,
    target: str,
    served_by: str,
    serving: Signature | None,
    candidate: Signature | None,
    fix: str,
) -> str | None:
    """Why ``subject`` cannot serve the clients of ``target`` (now served by ``served_by``),
    ending with ``fix``; None when it can, or when either signature is unknown."""
    if serving is None or candidate is None:
        return None
    differences = signature_differences(serving, candidate)
    if not differences:
        return None
    return (
        f"{subject} is not compatible with {target} (served by {served_by}):\n"
        + "\n".join(differences)
        + f"\n{fix}"
    )
