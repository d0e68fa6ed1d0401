"""The HAProxy gateway in front of real `checkpoint2svc serve` instances: REST and gRPC (h2c) on
one port, body limit, unknown nodes, health changes and reloads under load, adopt and stop."""

from __future__ import annotations

import collections
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from checkpoint2svc.checkpoint import Checkpoint
from checkpoint2svc.errors import GatewayError
from checkpoint2svc.gateway import (
    Gateway,
    GatewayAlias,
    GatewayConfig,
    GatewayNode,
    GatewayServer,
)
from tests.e2e.instance import Instance, free_port
from tests.e2e.test_serve_grpc import NODE_EXECUTE, ReflectedClient, list_form_inputs
from tests.e2e.test_serve_rest import write_whole_body_then_read

pytestmark = pytest.mark.slow

SIXTEEN_MIB = 16 * 1024 * 1024


@pytest.fixture(scope="module")
def greeters(pinned: dict[str, Checkpoint]) -> Iterator[list[Instance]]:
    started: list[Instance] = []
    try:
        for _ in range(2):
            started.append(Instance(pinned["greeter"].path))
        yield started
    finally:
        for instance in started:
            instance.stop()


@pytest.fixture(scope="module")
def greeter_input(pinned: dict[str, Checkpoint]) -> dict[str, Any]:
    return list_form_inputs(pinned["greeter"].manifest)


def servers(
    instances: list[Instance], unhealthy: tuple[int, ...] = ()
) -> tuple[GatewayServer, ...]:
    return tuple(
        GatewayServer(f"greeter-{i}", "127.0.0.1", inst.port, inst.grpc_port, i not in unhealthy)
        for i, inst in enumerate(instances)
    )


def greeter_config(port: int, instances: list[Instance]) -> GatewayConfig:
    return GatewayConfig(port, (GatewayNode("greeter", servers(instances)),))


class RunningGateway:
    def __init__(self, gateway: Gateway, config: GatewayConfig) -> None:
        self.gateway = gateway
        self.config = config
        self.url = f"http://127.0.0.1:{config.port}"
        self.target = f"127.0.0.1:{config.port}"


@pytest.fixture
def gateway(tmp_path: Path, greeters: list[Instance]) -> Iterator[RunningGateway]:
    gateway = Gateway(tmp_path / "gw")
    config = greeter_config(free_port(), greeters)
    gateway.start(config)
    try:
        yield RunningGateway(gateway, config)
    finally:
        gateway.stop()


def test_rest_through_path_and_header_reaches_both_instances(
    gateway: RunningGateway, greeter_input: dict[str, Any]
) -> None:
    answered: collections.Counter[str] = collections.Counter()
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for i in range(100):
            if i % 2:
                response = client.post(
                    "/datasphere/v1/nodes/greeter:execute", json={"input": greeter_input}
                )
            else:
                response = client.post(
                    "/execute", json={"input": greeter_input}, headers={"x-node-id": "greeter"}
                )
            assert response.status_code == 200, response.text
            assert response.json()["output"]["message"] == "Hello, Ada!"
            answered[response.headers["x-node-instance"]] += 1
    assert set(answered) == {"greeter-0", "greeter-1"}, answered
    stats = gateway.gateway.server_stats()
    assert stats[("node.greeter.http", "BACKEND")]["req_tot"] == 100


def test_grpc_over_h2c_on_the_same_port(gateway: RunningGateway, greeter_input: Any) -> None:
    metadata = (("x-node-id", "greeter"),)
    with grpc.insecure_channel(gateway.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply, call = health.Check.with_call(
            health_pb2.HealthCheckRequest(service=NODE_EXECUTE), metadata=metadata, timeout=10
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert dict(call.initial_metadata())["x-node-instance"] in {"greeter-0", "greeter-1"}

    # test_serve_grpc's client, its reflection stream and calls all carrying x-node-id
    client = ReflectedClient(gateway.target)
    client.channel = grpc.intercept_channel(client.channel, AddMetadata(metadata))
    client.database = ProtoReflectionDescriptorDatabase(client.channel)
    client.pool = descriptor_pool.DescriptorPool(client.database)
    response = client.call(
        NODE_EXECUTE, "Execute", {"folder_id": "f", "node_id": "greeter", "input": greeter_input}
    )
    assert response["output"]["message"] == "Hello, Ada!"
    client.channel.close()


def test_grpc_to_an_unknown_node_is_not_found(gateway: RunningGateway) -> None:
    with grpc.insecure_channel(gateway.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(
                health_pb2.HealthCheckRequest(), metadata=(("x-node-id", "nope"),), timeout=10
            )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "nope" in caught.value.details()


def test_body_over_the_limit_is_refused_by_the_gateway(gateway: RunningGateway) -> None:
    body = b"x" * (SIXTEEN_MIB + 1)
    response = httpx.post(
        f"{gateway.url}/datasphere/v1/nodes/greeter:execute",
        content=body, headers={"content-type": "application/json"}, timeout=30,
    )  # fmt: skip
    assert response.status_code == 413
    error = response.json()
    assert error["error_name"] == "PayloadTooLarge"
    assert "gateway limit of 16 MiB" in error["error_message"]
    assert "x-node-instance" not in response.headers  # no instance saw it
    stats = gateway.gateway.server_stats()
    assert stats[("node.greeter.http", "BACKEND")].get("req_tot", 0) == 0


@pytest.mark.parametrize("connection", ["keep-alive", "close"])
def test_a_client_that_writes_its_whole_body_first_gets_the_gateways_413(
    gateway: RunningGateway, greeter_input: dict[str, Any], connection: str
) -> None:
    """HAProxy's own replies close the connection with the body unread: http.client and urllib
    got "broken pipe" instead of the 413. The refusal now leaves the body to be read first."""
    path = "/datasphere/v1/nodes/greeter:execute"
    client = http.client.HTTPConnection("127.0.0.1", gateway.config.port, timeout=60)
    try:
        status, error = write_whole_body_then_read(
            client, path, b"x" * (SIXTEEN_MIB + (1 << 20)), connection=connection
        )
        assert status == 413
        assert error["error_name"] == "PayloadTooLarge"
        assert "exceeds the gateway limit of 16 MiB" in error["error_message"]
        kept = client.sock  # None when the answer said "close": http.client connects anew
        status, answer = write_whole_body_then_read(
            client, path, json.dumps({"input": greeter_input}).encode()
        )
        assert status == 200 and answer["output"]["message"] == "Hello, Ada!"
        assert (client.sock is kept) == (connection == "keep-alive")  # the same connection
    finally:
        client.close()


def test_chunked_body_over_the_limit_is_refused_by_the_instance(gateway: RunningGateway) -> None:
    """No length to check up front: HAProxy streams it, and the instance's own limit answers."""

    def chunks() -> Iterator[bytes]:
        for _ in range(17):
            yield b"x" * (1024 * 1024)

    response = httpx.post(
        f"{gateway.url}/datasphere/v1/nodes/greeter:execute", content=chunks(), timeout=30
    )
    assert response.status_code == 413
    assert response.json()["error_name"] == "PayloadTooLarge"


def test_unknown_node_is_404_json_naming_it(gateway: RunningGateway) -> None:
    for response in (
        httpx.post(
            f"{gateway.url}/datasphere/v1/nodes/nope:execute", json={"input": {}}, timeout=30
        ),
        httpx.get(f"{gateway.url}/anything", headers={"x-node-id": "nope"}, timeout=30),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error_name"] == "NodeNotFound"
        assert "nope" in response.json()["error_message"]
    response = httpx.get(f"{gateway.url}/execute", timeout=30)
    assert response.status_code == 404
    assert response.json()["error_name"] == "NoRoute"


def test_no_healthy_instance_is_503_json(gateway: RunningGateway, greeters: list[Instance]) -> None:
    node = gateway.config.nodes[0]
    gateway.gateway.apply(
        replace(gateway.config, nodes=(replace(node, servers=servers(greeters, unhealthy=(0, 1))),))
    )
    response = httpx.post(f"{gateway.url}/datasphere/v1/nodes/greeter:execute", json={}, timeout=30)
    assert response.status_code == 503
    assert response.json()["error_name"] == "NoHealthyInstance"


class Load:
    """Threads posting to the gateway until stopped; every failure is kept."""

    def __init__(self, url: str, body: dict[str, Any], threads: int = 4) -> None:
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.answered: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, args=(url, body)) for _ in range(threads)
        ]
        for thread in self.threads:
            thread.start()

    def _run(self, url: str, body: dict[str, Any]) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    response = client.post(url, json=body)
                except httpx.HTTPError as exc:
                    failure: str | None = repr(exc)
                else:
                    failure = None if response.status_code == 200 else response.text
                with self.lock:
                    if failure is None:
                        self.answered[response.headers["x-node-instance"]] += 1
                    else:
                        self.failures.append(failure)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def total(self) -> int:
        with self.lock:
            return sum(self.answered.values()) + len(self.failures)


def under_load(gateway: RunningGateway, body: dict[str, Any], change: Callable[[], None]) -> Load:
    load = Load(f"{gateway.url}/datasphere/v1/nodes/greeter:execute", {"input": body})
    try:
        _wait_for_answers(load, 200)
        change()
        _wait_for_answers(load, load.total() + 200)
    finally:
        load.finish()
    return load


def _wait_for_answers(load: Load, total: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while load.total() < total:
        assert time.monotonic() < deadline, f"{load.total()} of {total} answers in {timeout} s"
        time.sleep(0.05)


def test_marking_a_server_unhealthy_under_load_fails_nothing(
    gateway: RunningGateway, greeters: list[Instance], greeter_input: dict[str, Any]
) -> None:
    node = gateway.config.nodes[0]
    drained = replace(
        gateway.config, nodes=(replace(node, servers=servers(greeters, unhealthy=(1,))),)
    )
    load = under_load(gateway, greeter_input, lambda: gateway.gateway.apply(drained))
    assert load.failures == [], load.failures[:3]
    assert set(load.answered) == {"greeter-0", "greeter-1"}
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for _ in range(20):
            response = client.post("/execute", json={"input": greeter_input},
                                   headers={"x-node-id": "greeter"})  # fmt: skip
            assert response.status_code == 200
            assert response.headers["x-node-instance"] == "greeter-0"


def test_reloads_under_load_fail_nothing(
    gateway: RunningGateway, greeters: list[Instance], greeter_input: dict[str, Any]
) -> None:
    """Changes beyond health (here: timeouts, then a server added) reload HAProxy hitlessly."""
    node = gateway.config.nodes[0]
    one = replace(gateway.config, nodes=(replace(node, servers=servers(greeters[:1])),))
    gateway.gateway.apply(one)

    def reload_repeatedly() -> None:
        for timeout in (30, 40, 50):
            gateway.gateway.apply(
                replace(one, nodes=(replace(one.nodes[0], request_timeout_s=timeout),))
            )
            time.sleep(0.2)
        gateway.gateway.apply(gateway.config)  # the second server is back

    reloads = gateway.gateway._process_table().reloads
    load = under_load(gateway, greeter_input, reload_repeatedly)
    assert gateway.gateway._process_table().reloads == reloads + 4
    assert load.failures == [], load.failures[:3]
    assert load.answered["greeter-1"] > 0


def test_adopt_then_stop_leaves_no_process(
    tmp_path: Path, greeters: list[Instance], greeter_input: dict[str, Any]
) -> None:
    runtime = tmp_path / "gw"
    config = greeter_config(free_port(), greeters)
    first = Gateway(runtime)
    first.start(config)
    try:
        master = first._process_table()
        pids = [master.master, *master.workers]
        second = Gateway(runtime)  # a restarted controller
        assert second.adopt()
        with pytest.raises(GatewayError, match="already running"):
            second.start(config)
        second.apply(config)  # the same config: nothing to do
        assert second._process_table().reloads == master.reloads
        response = httpx.post(
            f"http://127.0.0.1:{config.port}/datasphere/v1/nodes/greeter:execute",
            json={"input": greeter_input},
            timeout=30,
        )
        assert response.status_code == 200
        second.stop()
        assert not first.running() and not second.running()
        assert not any(alive(pid) for pid in pids)
        assert not Gateway(runtime).adopt()
    finally:
        first.stop()


def test_alias_splits_by_weight_over_nodes(
    tmp_path: Path, greeters: list[Instance], greeter_input: dict[str, Any]
) -> None:
    first, second = servers(greeters)
    config = GatewayConfig(
        free_port(),
        (GatewayNode("greeter", (first,)), GatewayNode("greeter-two", (second,))),
        aliases=(GatewayAlias("main", (("greeter", 75), ("greeter-two", 25))),),
    )
    gateway = Gateway(tmp_path / "gw")
    gateway.start(config)
    try:
        answered: collections.Counter[str] = collections.Counter()
        with httpx.Client(base_url=f"http://127.0.0.1:{config.port}", timeout=30) as client:
            body = {"input": greeter_input}
            for i in range(200):
                if i % 2:
                    response = client.post("/datasphere/v1/aliases/main:execute", json=body)
                else:
                    response = client.post("/execute", json=body, headers={"x-node-alias": "main"})
                assert response.status_code == 200, response.text
                answered[response.headers["x-node-instance"]] += 1
            assert answered["greeter-0"] == pytest.approx(150, abs=6), answered
            missing = client.get("/execute", headers={"x-node-alias": "nope"})
            assert missing.status_code == 404
            assert missing.json()["error_name"] == "AliasNotFound"
        with grpc.insecure_channel(f"127.0.0.1:{config.port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), metadata=(("x-node-alias", "main"),), timeout=10
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        # the first node has no healthy instance: the whole alias goes to the second
        drained = replace(config, nodes=(
            GatewayNode("greeter", (replace(first, healthy=False),)), config.nodes[1],
        ))  # fmt: skip
        gateway.apply(drained)
        with httpx.Client(base_url=f"http://127.0.0.1:{config.port}", timeout=30) as client:
            for _ in range(10):
                response = client.post(
                    "/datasphere/v1/aliases/main:execute", json={"input": greeter_input}
                )
                assert response.headers["x-node-instance"] == "greeter-1"
    finally:
        gateway.stop()


def test_start_on_a_busy_port_names_it(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        gateway = Gateway(tmp_path / "gw")
        with pytest.raises(GatewayError, match=f"port {port}") as caught:
            gateway.start(GatewayConfig(port, ()))
        assert "cannot bind" in str(caught.value)
        assert not gateway.running()


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for init to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


class AddMetadata(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds fixed metadata (here: x-node-id) to every call, reflection's stream too."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.metadata = metadata

    def _details(self, details: Any) -> Any:
        return CallDetails(
            details.method, details.timeout, (*(details.metadata or ()), *self.metadata),
            details.credentials, details.wait_for_ready, details.compression,
        )  # fmt: skip

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


class CallDetails(
    collections.namedtuple(
        "CallDetails",
        ["method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"],
    ),
    grpc.ClientCallDetails,  # type: ignore[misc]
):
    pass


def test_a_new_alias_routes_from_the_first_request_after_apply(
    gateway: RunningGateway, greeter_input: dict[str, Any]
) -> None:
    """apply() returns only once new connections reach the new config: until the master has
    told it to stop, the old worker still accepts connections and knows no new alias."""
    config = gateway.config
    for n in range(8):
        config = replace(config, aliases=(GatewayAlias(f"fresh-{n}", (("greeter", 100),)),))
        gateway.gateway.apply(config)
        response = httpx.post(  # a new connection each time
            f"{gateway.url}/datasphere/v1/aliases/fresh-{n}:execute",
            json={"input": greeter_input}, timeout=30,
        )  # fmt: skip
        assert response.status_code == 200, (n, response.text)
