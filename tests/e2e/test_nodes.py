"""Nodes end to end: the real controller (`checkpoint2svc up`), real instances on the local and
docker backends, the real HAProxy gateway; requests over real sockets on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from checkpoint2svc.checkpoint import Checkpoint, pin_notebook
from checkpoint2svc.control.api_client import ControllerClient, start_controller, stop_controller
from checkpoint2svc.control.home import Home
from checkpoint2svc.control.models import InstanceStatus, NodeStatus
from checkpoint2svc.control.store import Store
from checkpoint2svc.control.views import NodeView
from tests.e2e.cli import assert_clean_failure, cli, write_notebook
from tests.e2e.instance import free_port, free_ports

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("docker-images")]

BACKENDS = ["local", "docker"]


class Controller:
    def __init__(self, root: Path) -> None:
        self.home = Home(root)
        self.info = start_controller(self.home, *free_ports(2))
        self.api = ControllerClient(self.home)
        self.gateway = f"http://127.0.0.1:{self.info.gateway_port}"
        self.grpc_target = f"127.0.0.1:{self.info.gateway_port}"

    def cli(self, *args: object) -> Any:
        return cli(*args, "--home", self.home.root)

    def node(self, name: str) -> NodeView:
        return self.api.node(name)

    def wait(self, name: str, ok: Callable[[NodeView], bool], timeout: float = 300) -> NodeView:
        deadline = time.monotonic() + timeout
        node = self.node(name)
        while not ok(node):
            if time.monotonic() > deadline:
                raise AssertionError(f"node {name} did not get there in {timeout} s: {node}")
            time.sleep(0.25)
            node = self.node(name)
        return node

    def metrics(self, *patterns: str, timeout: float = 30) -> str:
        """The controller's /metrics once every regex in `patterns` matches it: the gateway's
        counters are read on the next reconcile pass, and a busy instance may miss a scrape."""
        deadline = time.monotonic() + timeout
        while True:
            text: str = self.api.metrics()
            missing = [p for p in patterns if not re.search(p, text)]
            if not missing:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"not in /metrics after {timeout} s: {missing}\n{text}")
            time.sleep(0.25)

    def execute(self, name: str, inputs: dict[str, Any]) -> httpx.Response:
        return httpx.post(
            f"{self.gateway}/datasphere/v1/nodes/{name}:execute", json={"input": inputs}, timeout=30
        )

    def restart(self, while_stopped: Callable[[], None] | None = None) -> None:
        stop_controller(self.home)
        if while_stopped is not None:
            while_stopped()
        self.info = start_controller(self.home, self.info.api_port, self.info.gateway_port)
        self.api = ControllerClient(self.home)


BUILT_NODES = ("greeter", "slow")
"""The checkpoint nodes these tests create on docker: the controller builds their images."""


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    running = Controller(tmp_path / "home")
    try:
        yield running
    finally:
        try:
            stop_controller(running.home, everything=True)
        finally:
            _remove_node_images()


def _remove_node_images() -> None:
    remove_node_images(*(f"{node}:" for node in BUILT_NODES))


def remove_node_images(*prefixes: str) -> None:
    """A real controller keeps the images it built as a cache; a test leaves nothing behind:
    removes the node images whose name starts with one of ``prefixes``."""
    import docker

    from checkpoint2svc.errors import DockerUnavailableError
    from checkpoint2svc.image.engine import docker_client

    try:
        client = docker_client()
    except DockerUnavailableError:
        return
    for image in client.images.list(name="checkpoint2svc-node/*"):
        for tag in image.tags:
            if tag.removeprefix("checkpoint2svc-node/").startswith(prefixes):
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag, force=True)


def call_until(
    stop: threading.Event, failures: list[str], call: Callable[[], httpx.Response]
) -> None:
    """A load thread's body: `call` again and again until `stop`; an answer other than 200, or
    no answer at all, is recorded in `failures` (a thread that died would hide it)."""
    while not stop.is_set():
        try:
            response = call()
        except httpx.HTTPError as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            continue
        if response.status_code != 200:
            failures.append(f"{response.status_code} {response.text}")


def reported(message: str, since: float) -> Callable[[NodeView], bool]:
    """True once the node's events hold `message`, logged at or after `since` (a time.time())."""

    def check(node: NodeView) -> bool:
        return any(e.time >= since and e.message == message for e in node.events)

    return check


def healthy_with(count: int) -> Callable[[NodeView], bool]:
    def check(node: NodeView) -> bool:
        healthy = [i for i in node.instances if i.status == InstanceStatus.HEALTHY]
        return node.status == NodeStatus.HEALTHY and len(healthy) == count

    return check


def _needs_engine(backend: str) -> None:
    if backend == "docker":
        from tests.e2e.docker_engine import engine

        engine()


@pytest.mark.parametrize("backend", BACKENDS)
def test_node_lifecycle(
    controller: Controller, pinned: dict[str, Checkpoint], backend: str, tmp_path: Path
) -> None:
    _needs_engine(backend)
    checkpoint = pinned["greeter"].path
    done = controller.cli(
        "node", "create", "greeter", "--checkpoint", checkpoint, "--backend", backend,
        "--min", "2", "--max", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    if backend == "docker":  # the build's steps show in the node's view while it runs
        build_lines = set()
        deadline = time.monotonic() + 600
        while not (view := controller.node("greeter")).image:
            assert time.monotonic() < deadline and view.status != NodeStatus.UNHEALTHY, view
            if view.build:
                build_lines.add(view.build)
            time.sleep(0.05)
        assert any(re.match(r"Step \d+/\d+ : ", line) for line in build_lines), build_lines
        assert view.build is None
    node = controller.wait("greeter", healthy_with(2))
    first_ids = {i.id for i in node.instances}

    # 200 requests over REST through the gateway, shared by both instances
    answered: Counter[str] = Counter()
    for i in range(200):
        response = controller.execute("greeter", {"name": f"n{i}", "values": [i]})
        assert response.status_code == 200, response.text
        assert response.json()["output"] == {"message": f"Hello, n{i}!", "scaled": [3 * i]}
        answered[response.headers.get("x-node-instance", "")] += 1
    assert set(answered) == first_ids, answered
    sockets = re.findall(
        r"server \S+ unix@(\S+)", (controller.home.gateway_dir / "haproxy.cfg").read_text()
    )
    assert len(sockets) == 2 and all(Path(s).is_socket() for s in sockets)  # REST by unix socket
    oversized = httpx.post(
        f"{controller.gateway}/datasphere/v1/nodes/greeter:execute",
        content=b"x" * (16 * 1024 * 1024 + 1), headers={"content-type": "application/json"},
        timeout=30,
    )  # fmt: skip
    assert oversized.status_code == 413, oversized.text

    # gRPC through the same port, routed by metadata, to the generic NodeService
    reply = node_service_call(
        controller.grpc_target, "greeter", {"name": "Ada", "values": [1]}, tmp_path, calls=40
    )
    assert reply["message"] == "Hello, Ada!"
    served_both = [  # both instances served both protocols
        rf'node_{kind}_codes_total{{[^}}]*code="{code}"[^}}]*instance="{i}"}} [1-9]'
        for i in first_ids
        for kind, code in (("http", "200"), ("grpc", "OK"))
    ]
    gateway_counted = r'gateway_node_responses_total\{node_id="greeter",protocol="http",code="2xx"'
    controller.metrics(*served_both, gateway_counted)

    # an instance dies: the node reports what its minimum implies, then a replacement comes up
    victim = node.instances[0]
    victim_socket = victim.http_socket
    killed_at = time.time()
    _kill(backend, victim.ref)
    # the replacement can be Healthy within 0.2 s, so the status is read from the node's events
    controller.wait("greeter", reported("node Unhealthy (1 healthy, minimum 2)", killed_at), 30)
    node = controller.wait("greeter", healthy_with(2))
    assert victim.id not in {i.id for i in node.instances}
    assert not Path(victim_socket).parent.exists()  # its socket directory went with it
    events = " ".join(e.message for e in node.events)
    assert "exited" in events
    for _ in range(50):
        assert controller.execute("greeter", {"name": "x", "values": []}).status_code == 200

    if backend == "docker":  # its image removed by hand: the next replacement builds it again
        from tests.e2e.docker_engine import engine

        engine().images.remove(node.image, force=True)  # the running containers keep theirs
        victim = node.instances[0]
        _kill(backend, victim.ref)
        node = controller.wait(
            "greeter",
            lambda n: healthy_with(2)(n) and victim.id not in {i.id for i in n.instances},
            timeout=300,
        )
        events = controller.api.node("greeter", events=50)
        assert any("building it again" in e.message for e in events.events), events
        assert engine().images.get(node.image)

    # a restarted controller adopts the running instances instead of starting new ones
    before = {i.id for i in node.instances}
    controller.restart()
    node = controller.wait("greeter", healthy_with(2))
    assert {i.id for i in node.instances} == before

    # logs of every instance, and of one
    logs = controller.cli("node", "logs", "greeter", "--tail", "50")
    assert logs.returncode == 0, logs.stderr
    for instance in before:
        assert f"==> {instance} <==" in logs.stdout
    assert "serving greet: REST on" in logs.stdout

    # a settings change rolls out new instances while a load runs: no request fails
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        call_until(
            stop, failures, lambda: controller.execute("greeter", {"name": "r", "values": [1]})
        )

    runner = threading.Thread(target=load)
    runner.start()
    try:
        assert controller.cli("node", "update", "greeter", "--env", "ROLL=1").returncode == 0
        node = controller.wait(
            "greeter",
            lambda n: healthy_with(2)(n) and not {i.id for i in n.instances} & before,
        )
    finally:
        stop.set()
        runner.join()
    assert not failures, failures[:3]

    # fewer instances
    assert controller.cli("node", "update", "greeter", "--min", "1", "--max", "1").returncode == 0
    controller.wait("greeter", lambda n: healthy_with(1)(n) and len(n.instances) == 1)
    assert controller.cli("node", "update", "greeter", "--min", "2", "--max", "2").returncode == 0
    controller.wait("greeter", healthy_with(2))

    # suspend and resume
    assert controller.cli("node", "suspend", "greeter").returncode == 0
    node = controller.wait(
        "greeter", lambda n: n.status == NodeStatus.SUSPENDED and not n.instances
    )
    assert controller.execute("greeter", {"name": "x", "values": []}).status_code == 503
    assert controller.cli("node", "resume", "greeter").returncode == 0
    controller.wait("greeter", healthy_with(2))

    # delete leaves nothing behind: no instance, and on docker not the image it built
    node = controller.node("greeter")
    refs = [i.ref for i in node.instances]
    assert controller.cli("node", "delete", "greeter").returncode == 0
    deadline = time.monotonic() + 60
    while controller.api.nodes():
        assert time.monotonic() < deadline, "the node was not deleted"
        time.sleep(0.2)
    for ref in refs:
        assert not _running(backend, ref), f"{ref} still runs after the node was deleted"
    if backend == "docker":
        from tests.e2e.docker_engine import engine

        assert node.image.startswith("checkpoint2svc-node/greeter:")
        while any(node.image in i.tags for i in engine().images.list("checkpoint2svc-node")):
            assert time.monotonic() < deadline, f"{node.image} was not removed"
            time.sleep(0.2)


def node_service_call(
    target: str,
    node: str,
    inputs: dict[str, Any],
    tmp_path: Path,
    calls: int = 1,
    metadata_key: str = "x-node-id",
) -> dict[str, Any]:
    """DataSphere's generic NodeService/Execute through the gateway, routed by ``x-node-id``:
    ``calls`` calls on one channel (HAProxy balances each HTTP/2 stream); returns the last."""
    import grpc
    from google.protobuf import json_format

    from checkpoint2svc.codegen.proto import compile_shared_protos
    from checkpoint2svc.wire.proto_values import import_generated

    compile_shared_protos(tmp_path / "gen")
    pb2 = import_generated("yandex.cloud.datasphere.v1.node_service_pb2", tmp_path / "gen")
    request = pb2.NodeExecutionRequest(node_id=node)
    json_format.ParseDict(inputs, request.input)
    with grpc.insecure_channel(target) as channel:
        execute = channel.unary_unary(
            "/yandex.cloud.datasphere.v1.NodeService/Execute",
            request_serializer=pb2.NodeExecutionRequest.SerializeToString,
            response_deserializer=pb2.NodeExecutionResponse.FromString,
        )
        for _ in range(calls):
            reply = execute(request, metadata=((metadata_key, node),), timeout=30)
    result: dict[str, Any] = json_format.MessageToDict(reply.output)
    return result


def _kill(backend: str, ref: str) -> None:
    if backend == "local":
        os.kill(int(ref), signal.SIGKILL)
    else:
        from tests.e2e.docker_engine import engine

        engine().containers.get(ref).kill()


def _running(backend: str, ref: str) -> bool:
    if backend == "local":
        try:
            os.kill(int(ref), 0)
        except ProcessLookupError:
            return False
        return (
            Path(f"/proc/{ref}").exists()
            and "Z" not in Path(f"/proc/{ref}/stat").read_text().rsplit(")", 1)[-1].split()[:1]
        )
    import docker

    from tests.e2e.docker_engine import engine

    try:
        engine().containers.get(ref)
    except docker.errors.NotFound:
        return False
    return True


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_rollout_the_controller_did_not_finish_goes_on_after_a_restart(
    controller: Controller, pinned: dict[str, Checkpoint], backend: str
) -> None:
    _needs_engine(backend)
    done = controller.cli(
        "node", "create", "greeter", "--checkpoint", pinned["greeter"].path,
        "--backend", backend, "--min", "1", "--max", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    before = controller.wait("greeter", healthy_with(1))
    old = before.instances[0].id

    def accept_an_update() -> None:
        """What a controller killed right after it accepted `node update --env` leaves: the
        new spec stored, the instances of the old version still running."""
        store = Store(controller.home.database)
        row = store.node("greeter")
        store.update_node("greeter", spec=row.spec.updated(env={"GREETING": "hi"}))
        store.close()

    controller.restart(while_stopped=accept_an_update)
    after = controller.wait(
        "greeter",
        lambda n: healthy_with(1)(n) and old not in {i.id for i in n.instances},
    )
    assert after.version != before.version
    assert {i.version for i in after.instances} == {after.version}


@pytest.mark.parametrize("backend", BACKENDS)
def test_node_scales_up_under_load_and_back_down(
    controller: Controller, tmp_path: Path, backend: str
) -> None:
    _needs_engine(backend)
    notebook = write_notebook(
        tmp_path / "slow.ipynb",
        [(["parameters"], "x = 1"), (["slow"], "import time\ntime.sleep(0.2)\ny = x + 1")],
    )
    checkpoint = pin_notebook(
        notebook, "slow", tmp_path / "slow.ckpt", progress=lambda _: None, warn=lambda _: None
    )
    done = controller.cli(
        "node", "create", "slow", "--checkpoint", checkpoint.path, "--backend", backend,
        "--min", "1", "--max", "2", "--target-in-flight", "1",
        "--scale-up-window", "1", "--scale-down-window", "3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    controller.wait("slow", healthy_with(1))  # on docker: after the controller built the image
    stop = threading.Event()
    failures: list[str] = []

    def load() -> None:
        call_until(stop, failures, lambda: controller.execute("slow", {"x": 1}))

    threads = [threading.Thread(target=load) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        controller.wait("slow", healthy_with(2), timeout=180)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures, failures[:3]
    controller.wait("slow", lambda n: len(n.instances) == 1, timeout=180)


def test_bad_requests_name_the_problem(
    controller: Controller, pinned: dict[str, Checkpoint]
) -> None:
    greeter = pinned["greeter"].path
    stderr = assert_clean_failure(controller.cli("node", "get", "nope"))
    assert "no node named 'nope'" in stderr
    stderr = assert_clean_failure(
        controller.cli("node", "create", "x", "--checkpoint", greeter, "--min", "3", "--max", "2")
    )
    assert "--min 3 is greater than --max 2" in stderr
    ok = controller.cli("node", "create", "dup", "--checkpoint", greeter, "--backend", "local")
    assert ok.returncode == 0, ok.stderr
    stderr = assert_clean_failure(
        controller.cli("node", "create", "dup", "--checkpoint", greeter, "--backend", "local")
    )
    assert "already exists" in stderr
    response = httpx.get(
        f"{controller.info.api_url}/v1/nodes", headers={"authorization": "Bearer x"}, timeout=30
    )
    assert response.status_code == 401
    assert "token" in response.json()["detail"]


def test_cli_without_a_controller_says_how_to_start_it(tmp_path: Path) -> None:
    stderr = assert_clean_failure(cli("node", "list", "--home", tmp_path / "none"))
    assert "is not running" in stderr and "checkpoint2svc up" in stderr


@pytest.fixture(scope="module")
def images(
    pinned: dict[str, Checkpoint], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Images the tests build from the local base: a tiny HTTP server, one that exits at start,
    and the greeter service image."""
    from checkpoint2svc.image.base_image import default_base_image
    from checkpoint2svc.image.build import build_image
    from tests.e2e.docker_engine import engine, image_tags

    client = engine()
    tags_iter = image_tags(client)
    tags = next(tags_iter)
    root = tmp_path_factory.mktemp("images")
    commands = {
        # pages on 8000; on 9100 a Prometheus exposition at /metrics, as an exporter would serve
        "web": '["sh", "-c", "python3 -m http.server 9100 --bind 0.0.0.0 --directory /tmp/exporter'
        ' & exec python3 -m http.server 8000 --bind 0.0.0.0"]',
        "crash": '["sh", "-c", "echo boom-at-start; exit 3"]',
    }
    exporter = (
        "RUN mkdir -p /tmp/exporter"
        " && printf '# TYPE web_up gauge\\nweb_up 1\\n' > /tmp/exporter/metrics\n"
    )
    built = {}
    for name, command in commands.items():
        (root / name).mkdir()
        (root / name / "Dockerfile").write_text(
            f"FROM {default_base_image()}\n{exporter if name == 'web' else ''}CMD {command}\n"
        )
        built[name] = tags.new(name)
        client.images.build(path=str(root / name), tag=built[name], pull=False, rm=True)
    built["greeter"] = build_image(pinned["greeter"], tags.new("greeter"), self_test=False).tag
    yield built
    tags.remove_all()


def test_node_from_any_image_with_an_http_health_check(
    controller: Controller, images: dict[str, str]
) -> None:
    done = controller.cli(
        "node", "create", "web", "--image", images["web"], "--backend", "docker",
        "--port", "8000", "--no-grpc", "--metrics-port", "9100",
        "--health-port", "9100", "--health-path", "/metrics",  # 8000 has no /metrics: 404
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    node = controller.wait("web", healthy_with(1))
    response = httpx.get(f"{controller.gateway}/", headers={"x-node-id": "web"}, timeout=30)
    assert response.status_code == 200
    assert "Directory listing" in response.text
    instance = node.instances[0].id
    assert response.headers["x-node-instance"] == instance
    # its exporter's metrics, scraped on the telemetry port, in the controller's /metrics
    controller.metrics(rf'web_up\{{instance="{instance}"\}} 1')


def test_node_from_an_image_with_a_grpc_health_check(
    controller: Controller, images: dict[str, str], tmp_path: Path
) -> None:
    done = controller.cli(
        "node", "create", "typed", "--image", images["greeter"], "--backend", "docker",
        "--health-grpc-service", "",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    controller.wait("typed", healthy_with(1))
    reply = node_service_call(
        controller.grpc_target, "typed", {"name": "Bo", "values": []}, tmp_path
    )
    assert reply["message"] == "Hello, Bo!"


def test_an_image_that_exits_at_start_makes_the_node_unhealthy_with_its_log(
    controller: Controller, images: dict[str, str]
) -> None:
    done = controller.cli(
        "node", "create", "crash", "--image", images["crash"], "--backend", "docker", "--no-grpc"
    )
    assert done.returncode == 0, done.stderr
    controller.wait("crash", lambda n: n.status == NodeStatus.UNHEALTHY, timeout=60)
    shown = controller.cli("node", "get", "crash")
    assert "exited with code 3" in shown.stdout
    assert "boom-at-start" in shown.stdout


def test_a_port_the_image_does_not_serve_never_becomes_healthy(
    controller: Controller, images: dict[str, str]
) -> None:
    done = controller.cli(
        "node", "create", "wrong-port", "--image", images["web"], "--backend", "docker",
        "--port", "9999", "--no-grpc", "--health-path", "/", "--health-interval", "0.5",
        "--health-fails", "2", "--health-start-period", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    node = controller.wait("wrong-port", lambda n: n.status == NodeStatus.UNHEALTHY, timeout=60)
    assert node.instances[0].status == InstanceStatus.UNHEALTHY
    assert "GET /" in node.instances[0].last_error


def test_up_on_a_busy_port_names_it_and_starts_nothing(tmp_path: Path) -> None:
    from checkpoint2svc.gateway.haproxy import Gateway

    home = Home(tmp_path / "home")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        for flags, names in (
            (("--port", taken, "--gateway-port", free_port()), "the controller's API"),
            (("--port", free_port(), "--gateway-port", taken), "the gateway"),
        ):
            done = cli("up", "--home", home.root, *flags)
            stderr = assert_clean_failure(done)
            assert f"port {taken} for {names} is in use" in stderr, stderr
            assert home.read_info() is None and not Gateway(home.gateway_dir).running()
            assert not home.gateway_dir.exists()  # nothing created
