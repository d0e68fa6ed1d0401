"""The real Docker engine for image tests: skipped locally when absent, required in CI.

``make test`` sets CHECKPOINT2SVC_REQUIRE_DOCKER=1 (after scripts/setup-engine), so a missing
engine or base image fails there instead of skipping silently.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import docker
import pytest

from checkpoint2svc.errors import DockerUnavailableError
from checkpoint2svc.image.base_image import default_base_image
from checkpoint2svc.image.engine import docker_client

TEST_LABEL = "org.checkpoint2svc.test"


def engine() -> docker.DockerClient:
    required = os.environ.get("CHECKPOINT2SVC_REQUIRE_DOCKER") == "1"
    try:
        client = docker_client()
        client.images.get(default_base_image())
    except (DockerUnavailableError, docker.errors.ImageNotFound) as exc:
        if required:
            pytest.fail(f"the Docker engine or base image is missing: {exc}")
        pytest.skip(f"no Docker engine or base image here ({exc}); run scripts/setup-engine")
    return client


class ImageTags:
    """Unique tags for the images a test builds; every one is removed afterwards."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.run = uuid.uuid4().hex[:8]
        self.tags: list[str] = []

    def new(self, name: str) -> str:
        tag = f"checkpoint2svc-test/{name}:{self.run}"
        self.tags.append(tag)
        return tag

    def remove_all(self) -> None:
        for tag in self.tags:
            with contextlib.suppress(docker.errors.ImageNotFound):
                self.client.images.remove(tag, force=True)


def image_tags(client: docker.DockerClient) -> Iterator[ImageTags]:
    tags = ImageTags(client)
    try:
        yield tags
    finally:
        tags.remove_all()
