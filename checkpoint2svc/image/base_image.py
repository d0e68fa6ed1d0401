"""The default base image: Debian with python3, made locally by mmdebstrap and ``docker import``.

Machines here cannot pull from public registries, so the base image is built from the machine's
own apt sources (passed to mmdebstrap on stdin, never written anywhere). A user with a registry can
pass any image with ``python3`` instead (``--base-image python:3.11-slim``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from checkpoint2svc.errors import BaseImageError
from checkpoint2svc.image.engine import Progress, split_tag

if TYPE_CHECKING:
    import docker

BASE_IMAGE_VARIABLE = "CHECKPOINT2SVC_BASE_IMAGE"
PYTHON_LABEL = "org.checkpoint2svc.python"
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv")
_SLIM = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")
_VERSION_PROBE = 'import sys; print(*sys.version_info[:2], sep=".")'
_APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


def default_base_image() -> str:
    """``$CHECKPOINT2SVC_BASE_IMAGE``, else a tag naming the suite and this Python's version."""
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    return os.environ.get(BASE_IMAGE_VARIABLE) or f"checkpoint2svc/python:{minor}-{SUITE}"


def apt_sources(roots: tuple[Path, ...] = _APT_SOURCES) -> str:
    """The machine's enabled apt sources, one-line and deb822 files concatenated for mmdebstrap."""
    files: list[Path] = []
    for root in roots:
        if root.is_file():
            files.append(root)
        elif root.is_dir():
            files += sorted(p for p in root.iterdir() if p.suffix in (".list", ".sources"))
    chunks = [p.read_text(encoding="utf-8").strip() for p in files]
    text = "\n\n".join(c for c in chunks if c)
    if not text:
        raise BaseImageError(
            "this machine has no apt sources (/etc/apt/sources.list[.d]) for mmdebstrap; build "
            "the base image on a Debian machine, or pass --base-image with an image that has "
            "python3 (e.g. python:3.11-slim where you can pull it)"
        )
    return text + "\n"


def build_base_image(
    client: docker.DockerClient, tag: str, progress: Progress | None = None
) -> str:
    """Build ``tag`` from the machine's apt sources; returns the image id."""
    if shutil.which("mmdebstrap") is None:
        raise BaseImageError(
            "mmdebstrap is not installed; install it (`sudo apt-get install mmdebstrap`) "
            "or pass --base-image with an image that has python3"
        )
    sources = apt_sources()
    with tempfile.TemporaryDirectory(prefix="checkpoint2svc-base-") as tmp:
        rootfs, version_file = Path(tmp) / "rootfs.tar", Path(tmp) / "python-version"
        command = [
            "mmdebstrap", "--variant=apt", f"--include={','.join(PACKAGES)}",
            *(f"--dpkgopt=path-exclude={pattern}" for pattern in _SLIM),
            "--aptopt=Acquire::Languages \"none\"",
            f"--customize-hook=chroot \"$1\" python3 -c '{_VERSION_PROBE}' > {version_file}",
            SUITE, str(rootfs), "-",
        ]  # fmt: skip
        _run_streaming(command, sources, progress)
        python = version_file.read_text(encoding="utf-8").strip()
        if progress:
            progress(f"importing the root filesystem as {tag} (python {python})")
        repository, version_tag = split_tag(tag)
        client.api.import_image(
            src=str(rootfs), repository=repository, tag=version_tag,
            changes=[f"LABEL {PYTHON_LABEL}={python}", "ENV LANG=C.UTF-8", 'CMD ["python3"]'],
        )  # fmt: skip
    return str(client.images.get(tag).id)


def _run_streaming(command: list[str], stdin: str, progress: Progress | None) -> None:
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(stdin)
    process.stdin.close()
    tail: list[str] = []
    for line in process.stdout:
        tail = [*tail[-19:], line.rstrip()]
        if progress:
            progress(line.rstrip())
    if process.wait() != 0:
        raise BaseImageError(
            f"mmdebstrap failed (exit {process.returncode}):\n" + "\n".join(tail) + "\n"
            "check that the machine's apt sources reach a Debian mirror"
        )


_versions: dict[str, str] = {}


def base_python_version(client: docker.DockerClient, image: str) -> str:
    """The ``major.minor`` Python of ``image``: its label, else asked of ``python3`` in it."""
    import docker as docker_sdk

    try:
        found = client.images.get(image)
    except docker_sdk.errors.ImageNotFound:
        raise BaseImageError(
            f"the base image {image} is not on this machine (nothing is pulled); build it with "
            f"`checkpoint2svc base-image --tag {image}`, or pass --base-image with a local image"
        ) from None
    labels = (found.attrs.get("Config") or {}).get("Labels") or {}
    if labels.get(PYTHON_LABEL):
        return str(labels[PYTHON_LABEL])
    if found.id not in _versions:
        try:
            output = client.containers.run(
                found.id, ["python3", "-c", _VERSION_PROBE], remove=True, network_disabled=True,
                entrypoint=[],
            )  # fmt: skip
        except docker_sdk.errors.ContainerError as exc:
            raise BaseImageError(
                f"the base image {image} has no working python3 ({exc}); use an image with python3"
            ) from exc
        _versions[found.id] = output.decode().strip()
    return _versions[found.id]
