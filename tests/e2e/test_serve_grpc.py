"""`checkpoint2svc serve` over gRPC and plain HTTP, with clients that know only what the server
tells them: a JSON body over HTTP, and gRPC through server reflection (no .proto file)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status

from checkpoint2svc.checkpoint import Checkpoint, Manifest
from checkpoint2svc.image.self_test import whole_numbers
from checkpoint2svc.wire.json_values import decode_json, encode_json
from tests.e2e.instance import Instance

pytestmark = pytest.mark.slow

EXAMPLES = ["classifier", "image", "table", "greeter", "counter", "text"]
NODE_EXECUTE = "yandex.cloud.datasphere.v1.NodeService"
SIXTEEN_MIB = 16 * 1024 * 1024


class ReflectedClient:
    """Calls any unary method by its full name, with message types learnt by reflection."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(
            target, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
        )
        self.database = ProtoReflectionDescriptorDatabase(self.channel)
        self.pool = descriptor_pool.DescriptorPool(self.database)

    def services(self) -> list[str]:
        return list(self.database.get_services())

    def call(self, service: str, method: str, request: dict[str, Any]) -> dict[str, Any]:
        descriptor = self.pool.FindServiceByName(service).FindMethodByName(method)
        request_type = message_factory.GetMessageClass(descriptor.input_type)
        response_type = message_factory.GetMessageClass(descriptor.output_type)
        stub = self.channel.unary_unary(
            f"/{service}/{method}",
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        message = json_format.ParseDict(request, request_type())
        result: dict[str, Any] = json_format.MessageToDict(
            stub(message, timeout=60), preserving_proto_field_name=True
        )
        return result


def as_pinned(manifest: Manifest, outputs: dict[str, Any]) -> dict[str, Any]:
    """JSON outputs in the manifest's example form (tensors as b64), for exact comparison."""
    return {
        v.name: encode_json(decode_json(outputs[v.name], v.type, v.name), v.type, tensors="b64")
        for v in manifest.outputs
    }


def list_form_inputs(manifest: Manifest) -> dict[str, Any]:
    """The pinned example inputs with tensors as nested lists (what a JSON client sends)."""
    return {
        v.name: encode_json(decode_json(v.example, v.type, v.name), v.type, tensors="list")
        for v in manifest.inputs
    }


@pytest.fixture(scope="module")
def instances(pinned: dict[str, Checkpoint]) -> Iterator[dict[str, Instance]]:
    started: dict[str, Instance] = {}
    try:
        for key in EXAMPLES:
            started[key] = Instance(pinned[key].path)
        yield started
    finally:
        for instance in started.values():
            instance.stop()


@pytest.mark.parametrize("key", EXAMPLES)
def test_plain_http_json_gives_the_pinned_outputs(
    pinned: dict[str, Checkpoint], instances: dict[str, Instance], key: str
) -> None:
    manifest = pinned[key].manifest
    response = httpx.post(
        f"{instances[key].url}/execute", content=httpx.Request(
            "POST", "/", json={"input": list_form_inputs(manifest)}
        ).content, headers={"content-type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert as_pinned(manifest, response.json()["output"]) == {
        v.name: v.example for v in manifest.outputs
    }


@pytest.mark.parametrize("key", EXAMPLES)
def test_reflection_client_calls_the_generic_node_service(
    pinned: dict[str, Checkpoint], instances: dict[str, Instance], key: str
) -> None:
    manifest = pinned[key].manifest
    client = ReflectedClient(instances[key].grpc_target)
    assert NODE_EXECUTE in client.services()
    response = client.call(
        NODE_EXECUTE, "Execute",
        {"folder_id": "f", "node_id": key, "input": list_form_inputs(manifest)},
    )  # fmt: skip
    output = whole_numbers(response["output"])
    assert as_pinned(manifest, output) == {v.name: v.example for v in manifest.outputs}


def test_reflection_lists_typed_service_health_and_reflection(
    instances: dict[str, Instance],
) -> None:
    client = ReflectedClient(instances["greeter"].grpc_target)
    assert set(client.services()) >= {
        "checkpoint2svc.generated.greet.GreetService",
        NODE_EXECUTE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    typed = client.call(
        "checkpoint2svc.generated.greet.GreetService", "Execute", {"name": "Ada", "values": [2]}
    )
    # `message` is a proto keyword, so the field is `message_`; int64 is a JSON string.
    assert typed == {"message_": "Hello, Ada!", "scaled": ["6"]}


def test_grpc_health_reports_serving(instances: dict[str, Instance]) -> None:
    with grpc.insecure_channel(instances["greeter"].grpc_target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", NODE_EXECUTE, "checkpoint2svc.generated.greet.GreetService"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_grpc_errors_name_the_field_and_carry_the_cells_traceback(
    instances: dict[str, Instance],
) -> None:
    client = ReflectedClient(instances["classifier"].grpc_target)
    with pytest.raises(grpc.RpcError) as invalid:
        client.call(NODE_EXECUTE, "Execute", {"input": {"features": [1.0, "x", 2.0, 3.0]}})
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input.features[1]" in invalid.value.details()

    with pytest.raises(grpc.RpcError) as raised:
        client.call(NODE_EXECUTE, "Execute", {"input": {"features": [1.0]}})
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    status = rpc_status.from_call(raised.value)
    assert status is not None and len(status.details) == 1
    detail = client.pool.FindMessageTypeByName(
        "yandex.cloud.datasphere.v1.NodeExecutionErrorDetails"
    )
    details = message_factory.GetMessageClass(detail)()
    status.details[0].Unpack(details)
    assert details.error_name == "ValueError"
    assert any("model.predict_proba" in line for line in details.traceback)

    ok = client.call(NODE_EXECUTE, "Execute", {"input": {"features": [6.7, 3.0, 5.2, 2.3]}})
    assert ok["output"]["label"] == "virginica"  # the instance keeps serving

    metrics = httpx.get(f"{instances['classifier'].url}/metrics").text
    assert 'node_grpc_codes_total{node_id="predict",code="INVALID_ARGUMENT"} 1' in metrics
    assert 'node_grpc_codes_total{node_id="predict",code="INTERNAL"} 1' in metrics


def test_sixteen_mib_plus_one_byte_is_refused_on_both_protocols(
    instances: dict[str, Instance],
) -> None:
    instance = instances["greeter"]
    name = "x" * SIXTEEN_MIB  # the JSON body around it makes the request just over 16 MiB
    body = b'{"input": {"name": "' + name.encode() + b'", "values": []}}'
    assert len(body) > SIXTEEN_MIB
    response = httpx.post(f"{instance.url}/execute", content=body, timeout=60)
    assert response.status_code == 413
    assert "16 MiB" in response.json()["error_message"]

    exactly_over = b"x" * (SIXTEEN_MIB + 1)
    response = httpx.post(f"{instance.url}/execute", content=exactly_over, timeout=60)
    assert response.status_code == 413

    client = ReflectedClient(instance.grpc_target)
    with pytest.raises(grpc.RpcError) as info:
        client.call(NODE_EXECUTE, "Execute", {"input": {"name": name, "values": []}})
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(SIXTEEN_MIB) in info.value.details()
    # Just under the limit still works on gRPC.
    small = client.call(NODE_EXECUTE, "Execute", {"input": {"name": "y" * 1000, "values": []}})
    assert small["output"]["message"].startswith("Hello, yyy")
