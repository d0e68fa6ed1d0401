"""Whether a node can join an alias (or a new version replace a node) without breaking their
clients: same inputs and outputs, with the same types (IR values compared, not their text).
What differs is listed, one line per field. The one guard the controller's alias routes and the
deployer share."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from checkpoint2svc.control.models import NodeSpec
from checkpoint2svc.errors import Checkpoint2SvcError
from checkpoint2svc.wire.signature import Signature
from checkpoint2svc.wire.type_ir import Record, TypeIR

if TYPE_CHECKING:
    import docker


def node_signature(spec: NodeSpec) -> Signature | None:
    """The node's signature: from its checkpoint's manifest, or its image's signature label;
    None when it cannot be known (the checkpoint is gone, the image is not a checkpoint2svc
    image, or was built before the label was recorded, or the engine does not answer)."""
    return node_signatures([spec])[0]


def node_signatures(specs: Sequence[NodeSpec]) -> list[Signature | None]:
    """Each node's signature (``node_signature``). The image nodes' are read through one
    engine client, opened for the first of them and closed before this returns; an engine that
    does not answer, or errs, leaves their signatures unknown."""
    engine = _Engine()
    try:
        return [_signature(spec, engine) for spec in specs]
    finally:
        engine.close()


class _Engine:
    """A Docker client opened on first use (once: an engine that did not answer is not asked
    again in the same check)."""

    def __init__(self) -> None:
        self._client: docker.DockerClient | None = None
        self._tried = False

    def client(self) -> docker.DockerClient | None:
        if not self._tried:
            from checkpoint2svc.image.engine import docker_client

            self._tried = True
            with contextlib.suppress(Checkpoint2SvcError):  # no engine: signatures unknown
                self._client = docker_client(timeout=10)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _signature(spec: NodeSpec, engine: _Engine) -> Signature | None:
    try:
        if spec.checkpoint is not None:
            from checkpoint2svc.checkpoint.manifest import Manifest

            return Manifest.read(Path(spec.checkpoint)).typed_signature()
        if spec.image is not None:
            return _image_signature(engine, spec.image)
    except (Checkpoint2SvcError, ValueError, KeyError, TypeError):
        return None
    return None


def _image_signature(engine: _Engine, image: str) -> Signature | None:
    import docker as docker_sdk
    import requests

    from checkpoint2svc.image.labels import read_image_labels

    client = engine.client()
    if client is None:
        return None
    try:
        labels, _ = read_image_labels(client, image)
    except (docker_sdk.errors.DockerException, requests.RequestException, OSError):
        return None  # the engine erred: unknown, as for an image without the label
    return Signature.from_dict(json.loads(labels.signature)) if labels.signature else None


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
