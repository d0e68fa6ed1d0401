"""What the image installs, and the wheels it installs from.

The host fills a wheelhouse (``pip download``, cached across builds) and the build installs from
it with ``pip install --no-index``: nothing inside ``docker build`` needs the network. The
checkpoint's own pins win over the runtime's (the state was pickled against them).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from packaging.utils import canonicalize_name

from checkpoint2svc.checkpoint.manifest import Manifest
from checkpoint2svc.checkpoint.requirements import resolve_distributions
from checkpoint2svc.errors import WheelhouseError
from checkpoint2svc.image.engine import Progress

# What checkpoint2svc.runtime imports inside an instance (not the authoring tools: nbclient,
# jinja2, grpcio-tools, docker stay on the host).
RUNTIME_DISTRIBUTIONS = (
    "anyio", "dill", "fastapi-offline", "grpcio", "grpcio-health-checking", "grpcio-reflection",
    "grpcio-status", "httptools", "orjson", "packaging", "protobuf", "starlette", "uvicorn",
    "uvloop",
)  # fmt: skip
# PID 1 of the container: forwards signals to the server and reaps orphans, on any base image.
IMAGE_TOOLS = ("dumb-init==1.2.5.post1",)


def default_wheelhouse() -> Path:
    """Where downloaded wheels are kept between builds (``$XDG_CACHE_HOME``-aware)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "checkpoint2svc" / "wheelhouse"


def image_requirements(manifest: Manifest) -> list[str]:
    """Exact pins (``name==version``) for the checkpoint's requirements and the runtime's."""
    pins = {
        canonicalize_name(r["name"]): f"{r['name']}=={r['version']}" for r in manifest.requirements
    }
    for dist in resolve_distributions(RUNTIME_DISTRIBUTIONS):
        pins.setdefault(canonicalize_name(dist.name), f"{dist.name}=={dist.version}")
    for tool in IMAGE_TOOLS:
        pins.setdefault(canonicalize_name(tool.split("==")[0]), tool)
    return sorted(pins.values(), key=str.lower)


def fill_wheelhouse(
    requirements: Iterable[str],
    dest: Path,
    python_version: str,
    cache: Path | None = None,
    progress: Progress | None = None,
) -> list[Path]:
    """Put a wheel for every requirement (and its dependencies) into ``dest``.

    Wheels come from ``cache`` when it has them all; otherwise the missing ones are downloaded
    into the cache first, so the next build of the same requirements needs no network.
    """
    cache = cache or default_wheelhouse()
    cache.mkdir(parents=True, exist_ok=True)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as stream:
        stream.write("\n".join(requirements) + "\n")
        requirements_file = Path(stream.name)
    try:
        offline = ["--no-index", "--find-links", str(cache), "--dest", str(dest)]
        if _pip_download(requirements_file, python_version, offline).returncode != 0:
            if progress:
                progress(f"downloading wheels into {cache}")
            online = ["--find-links", str(cache), "--dest", str(cache)]
            result = _pip_download(requirements_file, python_version, online, progress)
            if result.returncode != 0:
                raise WheelhouseError(_missing_wheel_message(result.stdout, python_version))
            result = _pip_download(requirements_file, python_version, offline)
            if result.returncode != 0:
                raise WheelhouseError(_missing_wheel_message(result.stdout, python_version))
    finally:
        requirements_file.unlink()
    return sorted(dest.glob("*.whl"))


def _pip_download(
    requirements_file: Path, python_version: str, where: list[str], progress: Progress | None = None
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
        "--only-binary=:all:", "--python-version", python_version, *where,
        "-r", str(requirements_file),
    ]  # fmt: skip
    if progress is None:
        return subprocess.run(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
        )
    lines: list[str] = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith(("Collecting", "Saved", "ERROR")):
                progress(line.rstrip())
    return subprocess.CompletedProcess(command, process.returncode, "".join(lines), "")


def _missing_wheel_message(pip_output: str, python_version: str) -> str:
    missing = re.findall(r"No matching distribution found for (\S+)", pip_output)
    if missing:
        return (
            f"no wheel for Python {python_version} is to be had for {', '.join(missing)}; "
            "build one (`pip wheel REQUIREMENT -w DIR`) and pass that folder with --wheelhouse, "
            "or pin a version that ships wheels"
        )
    tail = "\n".join(pip_output.strip().splitlines()[-15:])
    return f"pip could not download the image's requirements:\n{tail}"


def build_runtime_wheel(dest: Path) -> Path:
    """Build this checkpoint2svc as a wheel from its source tree (reproducible bytes)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise WheelhouseError(
            f"checkpoint2svc is not installed from a source tree ({root} has no pyproject.toml), "
            "so its runtime wheel cannot be built; install it from a checkout "
            "(`pip install -e PATH`)"
        )
    dest.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "--target", "wheel", "--directory", str(dest)],
        cwd=root, capture_output=True, text=True, check=False,
    )  # fmt: skip
    wheels = sorted(dest.glob("checkpoint2svc-*.whl"))
    if result.returncode != 0 or not wheels:
        raise WheelhouseError(
            f"building checkpoint2svc's wheel failed:\n{result.stdout}{result.stderr}"
        )
    return wheels[-1]
