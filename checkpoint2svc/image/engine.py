"""The Docker engine connection, with one clear error when no engine answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from checkpoint2svc.errors import DockerUnavailableError

if TYPE_CHECKING:
    import docker

Progress = Callable[[str], None]
"""Where the image stage reports what it is doing, a line at a time (the CLI: stderr)."""

START_HINT = (
    "start it (`sudo systemctl start docker`, or `sudo dockerd &` where there is no systemd; "
    "`scripts/setup-engine` installs and starts it on Debian); "
    "`checkpoint2svc serve CHECKPOINT` runs the service without Docker"
)


def docker_client(timeout: float = 300) -> docker.DockerClient:
    """A client for the engine in ``DOCKER_HOST`` (default: the local socket), pinged."""
    import docker
    import requests

    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
        raise DockerUnavailableError(f"no Docker engine answers ({exc}); {START_HINT}") from exc
    return client


def split_tag(reference: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repo, tag); a port in a registry host is not a tag."""
    repository, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:
        return reference, "latest"
    return repository, tag
