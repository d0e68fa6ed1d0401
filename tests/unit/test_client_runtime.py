"""The generated clients' bases: every type through REST (httpx's mock transport) and gRPC (an
in-process echo server), blocking and asyncio; errors and what travels with every call.

A generated package runs its copy of the wire (``_wire/``), so its errors are its own classes
(``package.ValidationError``); checkpoint2svc.wire's functions called directly raise
checkpoint2svc's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent import futures
from types import ModuleType
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from checkpoint2svc.checkpoint.manifest import Variable
from checkpoint2svc.errors import ValueConversionError
from checkpoint2svc.wire.client_errors import (
    ClientError,
    ExecutionError,
    ServiceError,
    ValidationError,
)
from checkpoint2svc.wire.grpc_client import error_from_rpc, load_stubs
from checkpoint2svc.wire.json_values import decode_json, encode_json
from checkpoint2svc.wire.proto_values import decode_message, encode_message, signature_record
from checkpoint2svc.wire.rest_client import error_from_response
from checkpoint2svc.wire.signature import Signature
from checkpoint2svc.wire.type_ir import Field, ListOf, Optional, Record, Scalar
from tests.generated_client import imported_package, names_of, write_package
from tests.unit.test_proto import CASES, assert_same, manifest

# A service whose outputs are its inputs: what goes in must come back out.
ECHO = manifest(
    "client-echo",
    [Variable(n, t, None) for n, t, _, _ in CASES],
    [Variable(n, t, None) for n, t, _, _ in CASES],
)
VALUES = {name: value for name, _, value, _ in CASES}
BACK = {name: value if back is None else back for name, _, value, back in CASES}
INPUTS = signature_record(ECHO.inputs)
OUTPUTS = signature_record(ECHO.outputs)


def as_json(value: Any, variable: Variable) -> bytes:
    """A value in its JSON wire form (tensors in b64), for comparing what REST carried."""
    encoded = encode_json(value, variable.type, variable.name, tensors="b64")
    return orjson.dumps(encoded, option=orjson.OPT_SERIALIZE_NUMPY)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    client = write_package(ECHO, tmp_path_factory.mktemp("echo"))
    with imported_package(client, "client_echo_client") as imported:
        yield imported


# ------------------------------------------------------------------------------- REST


class RestEcho:
    """A stand-in for the REST server: decodes the inputs and answers them as the outputs."""

    def __init__(self) -> None:
        self.headers: list[httpx.Headers] = []
        self.answer: Callable[[httpx.Request], httpx.Response] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.headers.append(request.headers)
        if self.answer is not None:
            return self.answer(request)
        data = orjson.loads(request.content)["input"]
        values = {v.name: decode_json(data[v.name], v.type, v.name) for v in ECHO.inputs}
        # As the server: tensors as nested lists unless asked for b64 (which the client asks
        # for: as nested lists, an empty tensor of shape (0, 3) would come back as (0,)).
        tensors = "b64" if request.headers.get("x-tensor-format") == "b64" else "list"
        output = {
            v.name: encode_json(values[v.name], v.type, v.name, tensors=tensors)
            for v in ECHO.outputs
        }
        return httpx.Response(200, content=orjson.dumps({"output": output}))


@pytest.fixture
def rest_echo() -> RestEcho:
    return RestEcho()


def test_every_kind_through_rest(package: ModuleType, rest_echo: RestEcho) -> None:
    http = httpx.Client(transport=httpx.MockTransport(rest_echo))
    with package.RestClient("http://echo", http_client=http) as client:
        output = client.execute(**VALUES)
    assert isinstance(output, package.Output)
    for v in ECHO.outputs:
        assert as_json(getattr(output, v.name), v) == as_json(BACK[v.name], v), v.name
    assert isinstance(output.tensor_2d, np.ndarray) and isinstance(output.frame, pd.DataFrame)
    assert not http.is_closed  # the caller's client is the caller's to close


def test_every_kind_through_async_rest(package: ModuleType, rest_echo: RestEcho) -> None:
    async def call() -> Any:
        http = httpx.AsyncClient(transport=httpx.MockTransport(rest_echo))
        async with package.AsyncRestClient("http://echo/", http_client=http) as client:
            return await client.execute(**VALUES)

    output = asyncio.run(call())
    for v in ECHO.outputs:
        assert as_json(getattr(output, v.name), v) == as_json(BACK[v.name], v), v.name


def test_headers_node_and_alias_travel_with_every_call(
    package: ModuleType, rest_echo: RestEcho
) -> None:
    http = httpx.Client(transport=httpx.MockTransport(rest_echo))
    client = package.RestClient(
        "http://gateway/base/", http_client=http, headers={"authorization": "Bearer t"},
        node_id="node-1", alias="stable", path="/datasphere/v1/nodes/node-1:execute",
    )  # fmt: skip
    assert client.url == "http://gateway/base/datasphere/v1/nodes/node-1:execute"
    client.execute(**VALUES)
    [headers] = rest_echo.headers
    assert headers["authorization"] == "Bearer t"
    assert headers["x-node-id"] == "node-1" and headers["x-node-alias"] == "stable"
    assert headers["content-type"] == "application/json"
    assert headers["x-tensor-format"] == "b64"


def answering(status: int, body: Any) -> Callable[[httpx.Request], httpx.Response]:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return lambda request: httpx.Response(status, content=content)


@pytest.mark.parametrize(
    ("status", "body", "kind", "text"),
    [
        (422, {"error_name": "ValidationError", "error_message": "expected a number",
               "traceback": [], "field": "input.x[1]"}, ValidationError, "input.x[1]: expected"),
        (500, {"error_name": "ValueError", "error_message": "bad", "traceback": ["line 1"]},
         ExecutionError, "ValueError: bad"),
        (413, {"error_name": "PayloadTooLarge", "error_message": "over the limit of 16 MiB",
               "traceback": []}, ServiceError, "HTTP 413 from http://x/execute: over the limit"),
        (502, b"<html>Bad Gateway</html>", ServiceError, "HTTP 502 from http://x/execute: <html>"),
        (500, b"Internal Server Error", ServiceError, "HTTP 500"),
    ],
)  # fmt: skip
def test_error_answers_become_client_errors(
    status: int, body: Any, kind: type[ClientError], text: str
) -> None:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    error = error_from_response(status, content, "http://x/execute")
    assert type(error) is kind and text in str(error)
    assert error.http_status == status and error.grpc_code is None
    if isinstance(error, ExecutionError):
        assert (error.error_name, error.error_message, error.traceback) == ("ValueError", "bad",
                                                                            ["line 1"])  # fmt: skip
    if isinstance(error, ValidationError):
        assert error.field == "input.x[1]" and error.reason == "expected a number"
        assert isinstance(error, ValueConversionError)


def test_a_rest_client_raises_them(package: ModuleType, rest_echo: RestEcho) -> None:
    rest_echo.answer = answering(
        500, {"error_name": "KeyError", "error_message": "'k'", "traceback": ["a", "b"]}
    )
    client = package.RestClient("http://echo", http_client=httpx.Client(
        transport=httpx.MockTransport(rest_echo)))  # fmt: skip
    with pytest.raises(package.ExecutionError) as raised:
        client.execute(**VALUES)
    assert raised.value.error_name == "KeyError" and raised.value.traceback == ["a", "b"]

    rest_echo.answer = answering(200, {"output": {}})
    with pytest.raises(package.ServiceError, match="regenerate the client"):
        client.execute(**VALUES)

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    rest_echo.answer = unreachable
    with pytest.raises(package.ServiceError, match="no answer from http://echo/execute"):
        client.execute(**VALUES)


def test_bad_inputs_are_refused_before_sending(package: ModuleType, rest_echo: RestEcho) -> None:
    client = package.RestClient("http://echo", http_client=httpx.Client(
        transport=httpx.MockTransport(rest_echo)))  # fmt: skip
    with pytest.raises(package.ValidationError) as wrong:
        client.execute(**{**VALUES, "floats": [1.0, "x"]})
    assert wrong.value.field == "input.floats[1]" and wrong.value.http_status is None
    with pytest.raises(package.ValidationError, match=r"input\.nope: not an input"):
        client._execute({**VALUES, "nope": 1})
    with pytest.raises(package.ValidationError, match=r"input\.flag: field required"):
        client._execute({k: v for k, v in VALUES.items() if k != "flag"})
    with pytest.raises(package.ValidationError, match="cannot be sent as JSON"):
        client.execute(**{**VALUES, "json_object": {"big": 2**70}})
    assert rest_echo.headers == []  # nothing was sent


def test_missing_optional_inputs_are_none() -> None:
    signature = Signature(
        Record((Field("a", Scalar("int")), Field("b", Optional(ListOf(Scalar("int")))))),
        Record(()),
    )
    assert signature.check_inputs({"a": 1}) == {"a": 1, "b": None}


# ------------------------------------------------------------------------------- gRPC


class GrpcEcho:
    """An in-process typed service answering its inputs as outputs, or failing on request (the
    metadata ``x-fail``) the way the real server fails."""

    def __init__(self, package: ModuleType) -> None:
        stubs = load_stubs(package.grpc.STUBS)
        self.error_details = stubs.error_details
        self.output = stubs.output
        self.metadata: list[dict[str, str]] = []
        handler = grpc.method_handlers_generic_handler(
            names_of(ECHO).full_service,
            {"Execute": grpc.unary_unary_rpc_method_handler(
                self.execute, request_deserializer=stubs.input.FromString,
                response_serializer=stubs.output.SerializeToString,
            )},
        )  # fmt: skip
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((handler,))
        self.target = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def execute(self, request: Any, context: grpc.ServicerContext) -> Any:
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        self.metadata.append(metadata)
        fail = metadata.get("x-fail")
        if fail == "raised":
            detail = self.error_details(
                error_name="ZeroDivisionError", error_message="division by zero",
                traceback=["Traceback", "ZeroDivisionError: division by zero"],
            )  # fmt: skip
            self.abort(context, code_pb2.INTERNAL, "ZeroDivisionError: division by zero", detail)
        if fail == "invalid":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "input.points[0].x: expected float")
        if fail == "bad-request":
            violation = error_details_pb2.BadRequest.FieldViolation(
                field="input.count", description="expected int"
            )
            detail = error_details_pb2.BadRequest(field_violations=[violation])
            self.abort(context, code_pb2.INVALID_ARGUMENT, "invalid input", detail)
        if fail == "exhausted":
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "over the limit of 16 MiB")
        values = decode_message(request, INPUTS, "input")
        return encode_message(values, OUTPUTS, self.output, "output")

    @staticmethod
    def abort(context: grpc.ServicerContext, code: int, message: str, detail: Any) -> None:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status = status_pb2.Status(code=code, message=message, details=[packed])
        context.abort_with_status(rpc_status.to_status(status))


@pytest.fixture(scope="module")
def grpc_echo(package: ModuleType) -> Iterator[GrpcEcho]:
    echo = GrpcEcho(package)
    try:
        yield echo
    finally:
        echo.server.stop(None).wait()


def test_every_kind_through_grpc(package: ModuleType, grpc_echo: GrpcEcho) -> None:
    with package.GrpcClient(grpc_echo.target) as client:
        output = client.execute(**VALUES)
    for v in ECHO.outputs:
        assert_same(getattr(output, v.name), BACK[v.name], v.name)


def test_every_kind_through_async_grpc(package: ModuleType, grpc_echo: GrpcEcho) -> None:
    async def call() -> Any:
        async with package.AsyncGrpcClient(grpc_echo.target) as client:
            first = await client.execute(**VALUES)
            again = await client.execute(**VALUES)  # the channel is reused
            return first, again

    for output in asyncio.run(call()):
        for v in ECHO.outputs:
            assert_same(getattr(output, v.name), BACK[v.name], v.name)


def test_metadata_node_and_alias_travel_with_every_call(
    package: ModuleType, grpc_echo: GrpcEcho
) -> None:
    grpc_echo.metadata.clear()
    with package.GrpcClient(
        grpc_echo.target, metadata={"x-request-id": "r-1"}, node_id="n", alias="a"
    ) as client:
        client.execute(**VALUES)
    [metadata] = grpc_echo.metadata
    assert metadata["x-request-id"] == "r-1"
    assert metadata["x-node-id"] == "n" and metadata["x-node-alias"] == "a"


def fail(package: ModuleType, target: str, how: str, asynchronous: bool) -> Any:
    """The client error (the package's own class: its wire is a copy) of one failed call."""
    metadata = {"x-fail": how}
    if asynchronous:

        async def call() -> None:
            async with package.AsyncGrpcClient(target, metadata=metadata) as client:
                await client.execute(**VALUES)

        runner: Callable[[], object] = lambda: asyncio.run(call())  # noqa: E731
    else:
        runner = lambda: package.GrpcClient(target, metadata=metadata).execute(**VALUES)  # noqa: E731
    with pytest.raises(package.ClientError) as info:
        runner()
    return info.value


@pytest.mark.parametrize("asynchronous", [False, True], ids=["blocking", "asyncio"])
def test_grpc_failures_become_client_errors(
    package: ModuleType, grpc_echo: GrpcEcho, asynchronous: bool
) -> None:
    raised = fail(package, grpc_echo.target, "raised", asynchronous)
    assert isinstance(raised, package.ExecutionError) and raised.grpc_code == "INTERNAL"
    assert raised.error_name == "ZeroDivisionError"
    assert raised.error_message == "division by zero"
    assert raised.traceback[-1] == "ZeroDivisionError: division by zero"

    invalid = fail(package, grpc_echo.target, "invalid", asynchronous)
    assert isinstance(invalid, package.ValidationError) and invalid.grpc_code == "INVALID_ARGUMENT"
    assert (invalid.field, invalid.reason) == ("input.points[0].x", "expected float")

    bad = fail(package, grpc_echo.target, "bad-request", asynchronous)
    assert isinstance(bad, package.ValidationError)
    assert (bad.field, bad.reason) == ("input.count", "expected int")

    exhausted = fail(package, grpc_echo.target, "exhausted", asynchronous)
    assert type(exhausted) is package.ServiceError and exhausted.grpc_code == "RESOURCE_EXHAUSTED"
    assert "over the limit of 16 MiB" in str(exhausted)

    unreachable = fail(package, "127.0.0.1:1", "", asynchronous)
    assert type(unreachable) is package.ServiceError and unreachable.grpc_code == "UNAVAILABLE"
    assert "is the service running there?" in str(unreachable)


def test_bad_grpc_inputs_are_refused_before_sending(
    package: ModuleType, grpc_echo: GrpcEcho
) -> None:
    grpc_echo.metadata.clear()
    with (
        package.GrpcClient(grpc_echo.target) as client,
        pytest.raises(package.ValidationError) as wrong,
    ):
        client.execute(**{**VALUES, "count": "3"})
    assert wrong.value.field == "input.count" and wrong.value.grpc_code is None
    assert grpc_echo.metadata == []


def test_an_answer_without_details_keeps_the_message() -> None:
    class Failed(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.INVALID_ARGUMENT

        def details(self) -> str:
            return "the body must be an object"

        def trailing_metadata(self) -> tuple[()]:
            return ()

    error = error_from_rpc(Failed(), Any, "t")  # type: ignore[arg-type]
    assert isinstance(error, ValidationError)
    assert (error.field, error.reason) == ("", "the body must be an object")
