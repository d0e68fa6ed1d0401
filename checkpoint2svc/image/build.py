"""``checkpoint2svc build``: checkpoint -> build context -> image, self-tested before it is tagged.

Two images are built. The *requirements image* (base + a virtual environment of the pinned
requirements) is tagged by the hash of its base image and pins, and reused by every build that
shares them, so a warm build needs neither the wheelhouse nor the network. The *service image*
copies that environment onto the base and adds, in this order, the runtime wheel, the state and
the generated code: an edit of the cell's code rebuilds only the last layer.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from checkpoint2svc.checkpoint import Checkpoint
from checkpoint2svc.checkpoint.manifest import STATE_NAME
from checkpoint2svc.errors import BaseImageError, ImageError, ImageSelfTestError
from checkpoint2svc.image.base_image import base_python_version, default_base_image
from checkpoint2svc.image.dockerfile import (
    RequirementsStage,
    ServiceDockerfile,
    render_dockerfile,
    render_requirements_dockerfile,
)
from checkpoint2svc.image.engine import Progress, docker_client, split_tag
from checkpoint2svc.image.labels import PREFIX, ImageLabels, labels_for
from checkpoint2svc.image.self_test import SelfTestReport, self_test_image
from checkpoint2svc.image.wheelhouse import build_runtime_wheel, fill_wheelhouse, image_requirements
from checkpoint2svc.runtime.context import CHECKPOINT_DIR, GEN_DIR

if TYPE_CHECKING:
    import docker

REQUIREMENTS_REPOSITORY = "checkpoint2svc/requirements"


@dataclass(frozen=True)
class BuiltImage:
    id: str
    tag: str
    size: int
    labels: ImageLabels
    steps: int
    cached_steps: int
    """Of the service image's Dockerfile steps (FROM aside), those that reused a cached layer."""
    seconds: float
    self_test: SelfTestReport | None


def _say(progress: Progress | None, text: str) -> None:
    if progress:
        progress(text)


def docker_build(
    client: docker.DockerClient,
    context: Path,
    tag: str | None = None,
    progress: Progress | None = None,
    no_cache: bool = False,
) -> tuple[str, list[str]]:
    """Run a classic ``docker build`` of ``context`` (never pulling); returns (image id, log)."""
    log: list[str] = []
    image_id = ""
    for chunk in client.api.build(
        path=str(context), tag=tag, rm=True, forcerm=True, pull=False, nocache=no_cache,
        decode=True,
    ):  # fmt: skip
        if "error" in chunk:
            tail = "\n".join(log[-25:])
            raise ImageError(f"docker build failed: {chunk['error'].strip()}\n{tail}")
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = str(chunk["aux"]["ID"])
        for line in str(chunk.get("stream", "")).splitlines():
            if line.strip():
                log.append(line)
                _say(progress, line)
    if not image_id:
        raise ImageError("docker build finished without an image id:\n" + "\n".join(log[-25:]))
    return image_id, log


def _check_python(client: docker.DockerClient, base_image: str, checkpoint: Checkpoint) -> None:
    pinned = ".".join(checkpoint.manifest.python_version.split(".")[:2])
    base = base_python_version(client, base_image)
    if base != pinned:
        raise BaseImageError(
            f"the base image {base_image} has Python {base} but the checkpoint was pinned on "
            f"Python {checkpoint.manifest.python_version}; the state only loads on the same minor "
            f"version: pass --base-image with a Python {pinned} image, or pin on Python {base}"
        )


def requirements_tag(base_id: str, requirements: list[str]) -> str:
    """The requirements image's tag: a hash of the base image's id and the pins."""
    key = hashlib.sha256("\n".join([base_id, *requirements]).encode()).hexdigest()[:16]
    return f"{REQUIREMENTS_REPOSITORY}:{key}"


def requirements_image(
    client: docker.DockerClient,
    base_image: str,
    requirements: list[str],
    python: str,
    wheelhouse: Path | None,
    progress: Progress | None,
) -> str:
    """The tag of the requirements image for these pins on this base; built when missing."""
    import docker as docker_sdk

    base_id = client.images.get(base_image).id
    tag = requirements_tag(base_id, requirements)
    try:
        client.images.get(tag)
        _say(progress, f"requirements: reusing {tag} ({len(requirements)} pinned distributions)")
        return tag
    except docker_sdk.errors.ImageNotFound:
        pass
    _say(progress, f"requirements: building {tag} ({len(requirements)} pinned distributions)")
    with tempfile.TemporaryDirectory(prefix="checkpoint2svc-requirements-") as tmp:
        context = Path(tmp)
        fill_wheelhouse(requirements, context / "wheelhouse", python, wheelhouse, progress)
        (context / "requirements.txt").write_text("\n".join(requirements) + "\n")
        stage = RequirementsStage(
            base_image=base_image,
            labels={f"{PREFIX}role": "requirements", f"{PREFIX}base-image": base_id},
        )
        (context / "Dockerfile").write_text(render_requirements_dockerfile(stage))
        docker_build(client, context, tag=tag, progress=progress)
    return tag


def write_service_context(
    checkpoint: Checkpoint,
    context: Path,
    base_image: str,
    requirements_tag: str,
    labels: ImageLabels,
) -> Path:
    """The service image's build context; returns the generated service directory in it.

    ``service/`` holds what the instance reads (``instance_context``) and the checkpoint's small
    files, ``state/`` the checkpoint's state, copied there directly: the Dockerfile copies it
    before the code, so that an edit of the cell's code does not copy the state again.
    """
    from checkpoint2svc.codegen.service_context import checkpoint_context, instance_context

    service = context / "service"
    files = instance_context(checkpoint.manifest).merged(
        checkpoint_context(checkpoint).under(CHECKPOINT_DIR)
    )
    files.write_to(service)
    (context / "state").mkdir()
    shutil.copyfile(checkpoint.path / STATE_NAME, context / "state" / STATE_NAME)
    wheel = build_runtime_wheel(context / "runtime")
    dockerfile = ServiceDockerfile(
        service=checkpoint.manifest.name, base_image=base_image,
        requirements_image=requirements_tag, runtime_wheel=wheel.name,
        http_port=labels.http_port, grpc_port=labels.grpc_port, labels=labels.to_docker(),
    )  # fmt: skip
    (context / "Dockerfile").write_text(render_dockerfile(dockerfile))
    _readable_by_all(context)
    return service


def _readable_by_all(root: Path) -> None:
    """COPY keeps file modes: make the tree readable by the image's non-root user (and the
    modes, which the layer cache hashes, independent of the umask and of mkdtemp's 0700)."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def build_image(
    checkpoint: Checkpoint,
    tag: str,
    base_image: str | None = None,
    wheelhouse: Path | None = None,
    self_test: bool = True,
    progress: Progress | None = None,
    no_cache: bool = False,
) -> BuiltImage:
    """Build, self-test and tag the service image of ``checkpoint``.

    The image is tagged only after its self-test passes, so a failing build never replaces a
    working image under the same tag.
    """
    started = time.monotonic()
    _check_tag(tag)
    checkpoint.verify()
    client = docker_client()
    base_image = base_image or default_base_image()
    _check_python(client, base_image, checkpoint)
    manifest = checkpoint.manifest
    requirements = image_requirements(manifest)
    python = ".".join(manifest.python_version.split(".")[:2])
    requirements_tag = requirements_image(
        client, base_image, requirements, python, wheelhouse, progress
    )
    labels = labels_for(manifest, checkpoint.path)
    with tempfile.TemporaryDirectory(prefix="checkpoint2svc-build-") as tmp:
        context = Path(tmp)
        service = write_service_context(checkpoint, context, base_image, requirements_tag, labels)
        _say(progress, f"building the {manifest.name} service image")
        image_id, log = docker_build(client, context, progress=progress, no_cache=no_cache)
        report = None
        if self_test:
            try:
                report = self_test_image(client, image_id, manifest, service / GEN_DIR, progress)
            except ImageSelfTestError as exc:
                raise ImageSelfTestError(
                    f"the self-test of image {image_id[7:19]} failed, so it was not tagged "
                    f"{tag}: {exc}\n(--no-self-test skips the self-test; `docker run "
                    f"{image_id[7:19]}` starts the image to look into it)"
                ) from None
    repository, version = split_tag(tag)
    image = client.images.get(image_id)
    image.tag(repository, version)
    steps, cached = _count_steps(log)
    return BuiltImage(
        id=image_id, tag=f"{repository}:{version}", size=int(image.attrs["Size"]), labels=labels,
        steps=steps, cached_steps=cached, seconds=time.monotonic() - started, self_test=report,
    )  # fmt: skip


_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_VERSION = re.compile(r"\w[\w.-]{0,127}")
_REGISTRY = re.compile(r"(?:localhost|[\w-]+(?:\.[\w-]+)+)(?::\d+)?|[\w.-]+:\d+")


def _check_tag(tag: str) -> None:
    repository, version = split_tag(tag)
    parts = repository.split("/")
    if len(parts) > 1 and _REGISTRY.fullmatch(parts[0]):
        parts = parts[1:]
    if not (all(_COMPONENT.fullmatch(p) for p in parts) and _VERSION.fullmatch(version)):
        raise ImageError(
            f"{tag!r} is not a valid image name: use lowercase letters, digits and . _ - "
            "(e.g. `-t greeter:v1` or `-t registry.example:5000/team/greeter:v1`)"
        )


def _count_steps(log: Iterable[str]) -> tuple[int, int]:
    lines = list(log)
    steps = sum(1 for line in lines if re.match(r"^Step \d+/\d+ : (?!FROM )", line))
    cached = sum(1 for line in lines if "Using cache" in line)
    return steps, cached
