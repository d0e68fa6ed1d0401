"""The instance backends end to end: real `checkpoint2svc serve` processes and real containers of
a greeter image, called over REST on 127.0.0.1; the same lifecycle test runs on both backends."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx
import pytest

from checkpoint2svc.backends import (
    InstanceBackend,
    InstanceHandle,
    InstanceSpec,
    RunState,
    RunStatus,
    create_backend,
    default_backend_name,
)
from checkpoint2svc.backends.docker import INSTANCE_LABEL, DockerBackend
from checkpoint2svc.backends.local import LocalBackend, read_proc_stat
from checkpoint2svc.checkpoint import Checkpoint
from checkpoint2svc.errors import BackendError
from checkpoint2svc.image.build import build_image
from tests.e2e.docker_engine import ImageTags, engine, image_tags

pytestmark = pytest.mark.slow
# One xdist worker builds the docker images (make test runs --dist loadgroup).
DOCKER = pytest.mark.xdist_group("docker-images")

GREETER_INPUT = {"name": "Grace", "values": [1, 2]}
GREETER_OUTPUT = {"message": "Hello, Grace!", "scaled": [3, 6]}
READY_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    return engine()


@pytest.fixture(scope="module")
def tags(client: docker.DockerClient) -> Iterator[ImageTags]:
    yield from image_tags(client)


@pytest.fixture(scope="module")
def greeter_image(tags: ImageTags, pinned: dict[str, Checkpoint]) -> str:
    """Built once per module (without the build's own self-test: these tests call it anyway)."""
    return build_image(pinned["greeter"], tags.new("backend-greeter"), self_test=False).tag


@dataclass
class Harness:
    """One backend, and how a test reaches around it (as an operator or the kernel would)."""

    name: str
    new_backend: Callable[[], InstanceBackend]
    """A fresh backend object: what a restarted controller would create."""
    spec: Callable[[str, str], InstanceSpec]
    """(instance id, controller id) -> the spec of a greeter instance."""
    kill: Callable[[InstanceHandle], None]
    leftovers: Callable[[InstanceHandle], list[str]]
    """What remains of an instance: its container, process or state file."""


def _local(home: Path, checkpoint: Path) -> Harness:
    def spec(instance_id: str, controller_id: str) -> InstanceSpec:
        return InstanceSpec(
            node="greeter", instance_id=instance_id, controller_id=controller_id,
            checkpoint=checkpoint, env={"CHECKPOINT2SVC_MODE": "isolated"},
        )  # fmt: skip

    def leftovers(handle: InstanceHandle) -> list[str]:
        found = []
        if read_proc_stat(int(handle.ref)) is not None:  # a zombie counts: it was not reaped
            found.append(f"process {handle.ref}")
        backend = LocalBackend(home)
        found += [str(p) for p in (backend.state_path(handle.instance_id),) if p.exists()]
        return found

    return Harness(
        "local", lambda: create_backend("local", home), spec,
        lambda handle: os.kill(int(handle.ref), signal.SIGKILL), leftovers,
    )  # fmt: skip


def _docker(client: docker.DockerClient, image: str) -> Harness:
    def spec(instance_id: str, controller_id: str) -> InstanceSpec:
        return InstanceSpec(
            node="greeter", instance_id=instance_id, controller_id=controller_id, image=image,
            env={"CHECKPOINT2SVC_MODE": "isolated"},
        )  # fmt: skip

    def leftovers(handle: InstanceHandle) -> list[str]:
        label = f"{INSTANCE_LABEL}={handle.instance_id}"
        return [c.name for c in client.containers.list(all=True, filters={"label": label})]

    return Harness(
        "docker", lambda: DockerBackend(client), spec,
        lambda handle: client.containers.get(handle.ref).kill(), leftovers,
    )  # fmt: skip


@pytest.fixture(params=["local", pytest.param("docker", marks=DOCKER)])
def harness(
    request: pytest.FixtureRequest, tmp_path: Path, pinned: dict[str, Checkpoint]
) -> Harness:
    if request.param == "local":
        return _local(tmp_path / "home", pinned["greeter"].path)
    return _docker(request.getfixturevalue("client"), request.getfixturevalue("greeter_image"))


def wait_ready(backend: InstanceBackend, handle: InstanceHandle) -> None:
    url = f"http://{handle.host}:{handle.http_port}/readyz"
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == 200:
                return
            last = f"{response.status_code}: {response.text[:200]}"
        except httpx.TransportError as exc:
            last = repr(exc)
        status = backend.status(handle)
        if status.state == RunState.EXITED:
            tail = "\n".join(backend.logs(handle, 30))
            raise AssertionError(f"{handle.instance_id} exited ({status}) before ready:\n{tail}")
        time.sleep(0.2)
    raise AssertionError(f"{handle.instance_id} not ready in {READY_TIMEOUT_S} s ({last})")


def wait_exited(backend: InstanceBackend, handle: InstanceHandle) -> RunStatus:
    deadline = time.monotonic() + 60
    while (status := backend.status(handle)).state != RunState.EXITED:
        assert time.monotonic() < deadline, f"{handle.instance_id} still {status} after a kill"
        time.sleep(0.1)
    return status


def test_instance_lifecycle(harness: Harness) -> None:
    run = uuid.uuid4().hex[:6]
    controller, stranger = f"ctl-{run}", f"other-ctl-{run}"
    backend = harness.new_backend()
    started: list[InstanceHandle] = []
    try:
        for i in range(2):
            started.append(backend.start(harness.spec(f"greeter-{run}{i}", controller)))
        started.append(backend.start(harness.spec(f"greeter-{run}x", stranger)))
        ours, theirs = started[:2], started[2]
        for handle in started:
            assert handle.backend == harness.name and handle.host == "127.0.0.1"
            assert handle.http_port and handle.grpc_port and handle.http_port != handle.grpc_port
        for handle in ours:
            wait_ready(backend, handle)
            assert backend.status(handle) == RunStatus(RunState.RUNNING)
            response = httpx.post(
                f"http://127.0.0.1:{handle.http_port}/execute",
                json={"input": GREETER_INPUT}, timeout=60,
            )  # fmt: skip
            assert response.status_code == 200, response.text
            assert response.json()["output"] == GREETER_OUTPUT

        assert backend.list(controller) == ours
        assert [h.instance_id for h in backend.list(stranger)] == [theirs.instance_id]

        adopter = harness.new_backend()  # the controller restarted
        assert adopter.list(controller) == ours
        victim, survivor = ours
        harness.kill(victim)
        exited = wait_exited(adopter, victim)
        assert exited.exit_code == 137  # SIGKILL, as a shell or Docker reports it
        assert adopter.status(survivor) == RunStatus(RunState.RUNNING)
        assert [h.instance_id for h in adopter.list(controller)] == [h.instance_id for h in ours]

        last = list(adopter.logs(victim, tail=3))
        assert 0 < len(last) <= 3, last
        everything = list(adopter.logs(victim, tail=1000))
        assert everything[-len(last) :] == last
        assert any("REST on http://" in line for line in everything), everything
        assert list(adopter.logs(victim, tail=3, follow=True)) == last  # ends: it has stopped

        for handle in ours:
            adopter.stop(handle, timeout=20)
            assert adopter.status(handle) == RunStatus(RunState.MISSING)
            assert harness.leftovers(handle) == []
            adopter.stop(handle)  # idempotent
        assert adopter.list(controller) == []
        assert [h.instance_id for h in adopter.list(stranger)] == [theirs.instance_id]
    finally:
        for handle in started:
            with contextlib.suppress(BackendError):
                backend.stop(handle, timeout=5)
    assert all(harness.leftovers(handle) == [] for handle in started)


def test_follow_streams_until_the_instance_stops(harness: Harness) -> None:
    backend = harness.new_backend()
    handle = backend.start(harness.spec(f"greeter-{uuid.uuid4().hex[:6]}", "ctl-follow"))
    try:
        wait_ready(backend, handle)
        lines = backend.logs(handle, tail=100, follow=True)
        assert any("REST on http://" in line for line in _take_until(lines, "REST on http://"))
        harness.kill(handle)
        list(lines)  # returns once the instance is gone
    finally:
        backend.stop(handle)
    assert harness.leftovers(handle) == []


def _take_until(lines: Iterator[str], marker: str) -> list[str]:
    taken = []
    for line in lines:
        taken.append(line)
        if marker in line:
            break
    return taken


@DOCKER
def test_docker_is_the_default_backend_where_an_engine_answers(client: docker.DockerClient) -> None:
    assert default_backend_name() == "docker"


@DOCKER
def test_a_missing_image_is_an_error_naming_it(client: docker.DockerClient) -> None:
    image = f"checkpoint2svc-test/never-built:{uuid.uuid4().hex[:8]}"
    spec = InstanceSpec(
        node="ghost", instance_id="ghost-1", controller_id="ctl-missing", image=image
    )
    with pytest.raises(
        BackendError, match=rf"image {re.escape(image)} is not in.*checkpoint2svc build"
    ):
        DockerBackend(client).start(spec)
    assert DockerBackend(client).list("ctl-missing") == []
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(image)  # and nothing was pulled


def test_a_local_instance_that_cannot_serve_exits_with_its_code(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "home")
    not_a_checkpoint = tmp_path / "empty"
    not_a_checkpoint.mkdir()
    handle = backend.start(
        InstanceSpec(node="broken", instance_id="broken-1", controller_id="ctl-broken",
                     checkpoint=not_a_checkpoint)
    )  # fmt: skip
    try:
        status = wait_exited(backend, handle)
        assert status.exit_code == 1
        assert any("error:" in line for line in backend.logs(handle)), list(backend.logs(handle))
    finally:
        backend.stop(handle)
    assert not backend.state_path(handle.instance_id).exists()
    assert read_proc_stat(int(handle.ref)) is None
