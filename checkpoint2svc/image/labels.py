"""The labels a service image carries, so that ``inspect IMAGE`` (and the controller) can tell
which checkpoint and signature it serves without running it."""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass
from typing import TYPE_CHECKING, Any

from checkpoint2svc.checkpoint.manifest import MANIFEST_NAME, Manifest, sha256_file
from checkpoint2svc.errors import ImageError
from checkpoint2svc.version import __version__

if TYPE_CHECKING:
    from pathlib import Path

    import docker

PREFIX = "org.checkpoint2svc."
HTTP_PORT = 8080
GRPC_PORT = 9090


def label_name(field: str) -> str:
    return f"{PREFIX}{field.replace('_', '-')}"


@dataclass(frozen=True)
class ImageLabels:
    service: str
    checkpoint_sha256: str
    """sha256 of the checkpoint's manifest.json (which records the sha256 of every payload)."""
    signature_sha256: str
    http_port: int
    grpc_port: int
    mode: str
    python: str
    notebook: str
    cell: int
    version: str
    """The checkpoint2svc that built the image."""
    signature: str = ""
    """The inputs' and outputs' names and types (``Manifest.signature()`` as JSON), so the
    controller can check an image node's compatibility with an alias; empty in an image built
    before it was recorded."""

    def to_docker(self) -> dict[str, str]:
        return {label_name(key): str(value) for key, value in sorted(self.__dict__.items())}

    @classmethod
    def from_docker(cls, labels: dict[str, str], image: str) -> ImageLabels:
        try:
            values: dict[str, Any] = {
                key: labels[label_name(key)]
                for key, spec in cls.__dataclass_fields__.items()
                if spec.default is MISSING or label_name(key) in labels
            }
        except KeyError as exc:
            raise ImageError(
                f"{image} is not a checkpoint2svc service image (it has no {exc.args[0]} label); "
                "build one with `checkpoint2svc build CHECKPOINT -t IMAGE`"
            ) from None
        for key in ("http_port", "grpc_port", "cell"):
            values[key] = int(values[key])
        return cls(**values)


def labels_for(manifest: Manifest, checkpoint_dir: Path) -> ImageLabels:
    return ImageLabels(
        service=manifest.name,
        checkpoint_sha256=sha256_file(checkpoint_dir / MANIFEST_NAME),
        signature_sha256=manifest.signature_sha256(),
        http_port=HTTP_PORT,
        grpc_port=GRPC_PORT,
        mode=manifest.mode,
        python=".".join(manifest.python_version.split(".")[:2]),
        notebook=manifest.notebook,
        cell=manifest.cell.index,
        version=__version__,
        signature=json.dumps(manifest.signature(), sort_keys=True, separators=(",", ":")),
    )


def read_image_labels(client: docker.DockerClient, image: str) -> tuple[ImageLabels, Any]:
    """The labels of a local image, and the image itself (for its id and size)."""
    import docker as docker_sdk

    try:
        found = client.images.get(image)
    except docker_sdk.errors.ImageNotFound:
        raise ImageError(
            f"no image {image} on this machine; build it with `checkpoint2svc build`"
        ) from None
    labels = (found.attrs.get("Config") or {}).get("Labels") or {}
    return ImageLabels.from_docker(labels, image), found
