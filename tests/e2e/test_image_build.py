"""`checkpoint2svc build` on the real Docker engine: images for the example checkpoints, run and
called from the host on 127.0.0.1 over REST and gRPC; the self-test, the layer cache, PID 1."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from checkpoint2svc.checkpoint import Checkpoint, pin_notebook
from checkpoint2svc.errors import ImageSelfTestError
from checkpoint2svc.image.build import BuiltImage, build_image
from checkpoint2svc.image.labels import read_image_labels
from checkpoint2svc.image.self_test import running_container
from tests.e2e.cli import assert_clean_failure, cli, write_notebook
from tests.e2e.docker_engine import ImageTags, engine, image_tags
from tests.e2e.test_serve_grpc import (
    NODE_EXECUTE,
    ReflectedClient,
    as_pinned,
    list_form_inputs,
    whole_numbers,
)

# One xdist worker builds these images (make test runs --dist loadgroup); two would each build
# the same images at once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("docker-images")]

EXAMPLES = ["classifier", "image", "table", "greeter", "counter"]
EXAMPLES_DIR = Path(__file__).resolve().parent.parent.parent / "examples"


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    return engine()


@pytest.fixture(scope="module")
def tags(client: docker.DockerClient) -> Iterator[ImageTags]:
    yield from image_tags(client)


@pytest.fixture(scope="module")
def built(
    client: docker.DockerClient, tags: ImageTags, pinned: dict[str, Checkpoint]
) -> dict[str, BuiltImage]:
    """Each example built (and self-tested) once."""
    return {key: build_image(pinned[key], tags.new(key)) for key in [*EXAMPLES, "counter-shared"]}


@pytest.mark.parametrize("key", EXAMPLES)
def test_image_serves_the_pinned_outputs_over_rest_and_grpc(
    client: docker.DockerClient,
    built: dict[str, BuiltImage],
    pinned: dict[str, Checkpoint],
    key: str,
) -> None:
    manifest = pinned[key].manifest
    expected = {v.name: v.example for v in manifest.outputs}
    assert built[key].self_test is not None
    assert built[key].self_test.protocols == ("REST", "gRPC")
    with running_container(client, built[key].tag) as running:
        ports = running.container.attrs["NetworkSettings"]["Ports"]
        assert {b["HostIp"] for bindings in ports.values() for b in bindings} == {"127.0.0.1"}
        response = httpx.post(
            f"{running.http_url}/execute", json={"input": list_form_inputs(manifest)}, timeout=60
        )
        assert response.status_code == 200, response.text
        assert as_pinned(manifest, response.json()["output"]) == expected
        reflected = ReflectedClient(running.grpc_target)
        reply = reflected.call(
            NODE_EXECUTE, "Execute", {"node_id": key, "input": list_form_inputs(manifest)}
        )
        assert as_pinned(manifest, whole_numbers(reply["output"])) == expected
        with grpc.insecure_channel(running.grpc_target) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_shared_mode_keeps_state_inside_the_container(
    client: docker.DockerClient, built: dict[str, BuiltImage]
) -> None:
    with running_container(client, built["counter-shared"].tag) as running:
        totals = [
            httpx.post(
                f"{running.http_url}/execute", json={"input": {"step": 1}}, timeout=30
            ).json()
            for _ in range(3)
        ]
    # the instance's own readiness self-test runs isolated, so the count starts where it was pinned
    assert [t["output"]["total"] for t in totals] == [1, 2, 3], totals


def test_labels_are_read_back_by_inspect(
    client: docker.DockerClient, built: dict[str, BuiltImage], pinned: dict[str, Checkpoint]
) -> None:
    labels, image = read_image_labels(client, built["greeter"].tag)
    manifest = pinned["greeter"].manifest
    assert labels == built["greeter"].labels
    assert labels.service == manifest.name
    assert labels.signature_sha256 == manifest.signature_sha256()
    assert (labels.http_port, labels.grpc_port) == (8080, 9090)
    config = image.attrs["Config"]
    assert set(config["ExposedPorts"]) == {"8080/tcp", "9090/tcp"}
    assert config["User"] == "10001:10001"
    assert config["Healthcheck"]["Test"][-1] == "checkpoint2svc.runtime.healthcheck"
    done = cli("inspect", built["greeter"].tag)
    assert done.returncode == 0, done.stderr
    assert f"service: {manifest.name}" in done.stdout
    assert f"signature_sha256: {manifest.signature_sha256()}" in done.stdout


def test_container_runs_as_non_root_turns_healthy_and_stops_gracefully(
    client: docker.DockerClient, built: dict[str, BuiltImage]
) -> None:
    container = client.containers.run(
        built["greeter"].tag, detach=True, ports={"8080/tcp": ("127.0.0.1", None)}
    )
    try:
        assert container.exec_run(["id", "-u"]).output.decode().strip() == "10001"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            container.reload()
            if container.attrs["State"].get("Health", {}).get("Status") == "healthy":
                break
            time.sleep(0.5)
        assert container.attrs["State"]["Health"]["Status"] == "healthy"
        # PID 1 is dumb-init, which forwards SIGTERM to the server: it drains and exits 0
        # within docker stop's timeout (a server ignoring SIGTERM would be killed: exit 137)
        container.stop(timeout=10)
        container.reload()
        assert container.attrs["State"]["ExitCode"] == 0, container.logs().decode()
        assert "stopped" in container.logs().decode()
    finally:
        container.remove(force=True)


def _pin_greeter(tmp_path: Path, name: str, greeting_cell: str) -> Checkpoint:
    notebook = tmp_path / name / "greeter.ipynb"
    notebook.parent.mkdir()
    shutil.copy(EXAMPLES_DIR / "greeter.ipynb", notebook)
    text = notebook.read_text().replace(
        "message = greeter.greet(name)", greeting_cell.replace('"', '\\"')
    )
    notebook.write_text(text)
    return pin_notebook(
        notebook, "greet", tmp_path / name / "greet.ckpt", progress=lambda _: None,
        warn=lambda _: None,
    )  # fmt: skip


def test_editing_only_the_cells_code_rebuilds_only_the_last_layer(
    client: docker.DockerClient, tags: ImageTags, tmp_path: Path
) -> None:
    first = _pin_greeter(tmp_path, "v1", "message = greeter.greet(name)")
    second = _pin_greeter(tmp_path, "v2", "message = greeter.greet(name).upper()")
    assert second.manifest.outputs[0].example == "HELLO, ADA!"
    one = build_image(first, tags.new("greet-v1"))
    two = build_image(second, tags.new("greet-v2"))
    layers = [client.images.get(image.id).attrs["RootFS"]["Layers"] for image in (one, two)]
    assert layers[0][:-1] == layers[1][:-1], "base, requirements, runtime and state are reused"
    assert layers[0][-1] != layers[1][-1], "the generated code layer is new"
    # every step but two comes from the cache: the code's COPY and the labels
    assert two.cached_steps == two.steps - 2, two


def test_a_build_whose_outputs_differ_in_the_container_fails_with_a_diff(
    client: docker.DockerClient, tags: ImageTags, tmp_path: Path
) -> None:
    notebook = write_notebook(
        tmp_path / "where.ipynb",
        [
            (["parameters"], "who = 'Ada'"),
            (["where"], "import socket\nhost = socket.gethostname()\nline = f'{who} on {host}'"),
        ],
    )
    checkpoint = pin_notebook(
        notebook, "where", tmp_path / "where.ckpt", progress=lambda _: None, warn=lambda _: None
    )
    tag = tags.new("where")
    with pytest.raises(ImageSelfTestError) as failure:
        build_image(checkpoint, tag)
    message = str(failure.value)
    assert "host, line differ over REST" in message
    assert f'-  "host": "{socket_hostname()}"' in message
    assert f"was not tagged {tag}" in message
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(tag)
    done = cli("build", checkpoint.path, "-t", tag, "--no-self-test", "-q")
    assert done.returncode == 0, done.stderr
    assert client.images.get(tag).id == done.stdout.strip()


def socket_hostname() -> str:
    import socket

    return socket.gethostname()


def test_build_cli_reports_progress_and_the_result(
    client: docker.DockerClient, tags: ImageTags, pinned: dict[str, Checkpoint]
) -> None:
    tag = tags.new("greeter-cli")
    done = cli("build", pinned["greeter"].path, "-t", tag)
    assert done.returncode == 0, done.stderr
    assert "Step 1/" in done.stderr
    assert "self-test: container ready" in done.stderr
    assert done.stdout.startswith(f"built {tag} (")
    assert "self-test passed over REST and gRPC" in done.stdout


def test_wrong_python_in_the_base_image_is_refused_showing_both(
    client: docker.DockerClient, tags: ImageTags, pinned: dict[str, Checkpoint], tmp_path: Path
) -> None:
    from checkpoint2svc.image.base_image import default_base_image

    (tmp_path / "Dockerfile").write_text(
        f"FROM {default_base_image()}\nLABEL org.checkpoint2svc.python=3.10\n"
    )
    other = tags.new("python310-base")
    client.images.build(path=str(tmp_path), tag=other, pull=False, rm=True)
    stderr = assert_clean_failure(
        cli("build", pinned["greeter"].path, "-t", tags.new("x"), "--base-image", other)
    )
    assert "Python 3.10" in stderr
    assert f"Python {pinned['greeter'].manifest.python_version}" in stderr


def test_a_base_image_from_elsewhere_is_asked_for_its_python(
    client: docker.DockerClient, tags: ImageTags, pinned: dict[str, Checkpoint], tmp_path: Path
) -> None:
    """A base image without checkpoint2svc's label (as python:3.11-slim would be): its python3
    is run to learn the version, and the image builds and passes its self-test on it."""
    from checkpoint2svc.image.base_image import default_base_image

    (tmp_path / "Dockerfile").write_text(
        f"FROM {default_base_image()}\nLABEL org.checkpoint2svc.python=\n"
    )
    foreign = tags.new("foreign-base")
    client.images.build(path=str(tmp_path), tag=foreign, pull=False, rm=True)
    built = build_image(pinned["greeter"], tags.new("on-foreign"), base_image=foreign)
    assert built.self_test is not None
    assert built.labels.python == "3.11"


def test_missing_base_image_says_which_command_builds_it(
    pinned: dict[str, Checkpoint], tags: ImageTags
) -> None:
    stderr = assert_clean_failure(
        cli("build", pinned["greeter"].path, "-t", tags.new("y"), "--base-image", "nope/none:1")
    )
    assert "nope/none:1 is not on this machine" in stderr
    assert "checkpoint2svc base-image --tag nope/none:1" in stderr


def test_no_engine_says_how_to_start_it_and_that_serve_needs_none(
    pinned: dict[str, Checkpoint], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    stderr = assert_clean_failure(cli("build", pinned["greeter"].path, "-t", "svc:v1"))
    assert "no Docker engine answers" in stderr
    assert "dockerd" in stderr
    assert "checkpoint2svc serve CHECKPOINT" in stderr


def test_base_image_command_builds_a_debian_python_image(
    client: docker.DockerClient, tags: ImageTags
) -> None:
    tag = tags.new("base")
    done = cli("base-image", "--tag", tag, "--quiet")
    assert done.returncode == 0, done.stderr
    image = client.images.get(tag)
    python = image.attrs["Config"]["Labels"]["org.checkpoint2svc.python"]
    version = client.containers.run(tag, ["python3", "-V"], remove=True).decode()
    assert version.startswith(f"Python {python}.")
    os_release = client.containers.run(tag, ["cat", "/etc/os-release"], remove=True).decode()
    assert "bookworm" in os_release
