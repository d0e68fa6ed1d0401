"""The instance's gRPC side: the typed service, DataSphere's generic NodeService, health and
reflection, in one thread-pool server (measured faster here than grpc.aio)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from checkpoint2svc.errors import ExecutionError, ValueConversionError
from checkpoint2svc.runtime.service import CellService
from checkpoint2svc.wire.names import ServiceNames
from checkpoint2svc.wire.proto_struct import data_to_struct, struct_to_data
from checkpoint2svc.wire.proto_values import RecordCodec, signature_record

log = logging.getLogger("checkpoint2svc.grpc")
NODE_SERVICE = "yandex.cloud.datasphere.v1.NodeService"
M = TypeVar("M", bound=Message)


class _Failed(Exception):
    """A call that ends with a non-OK status (raised inside, turned into an abort at the edge)."""

    def __init__(self, code: grpc.StatusCode, message: str, detail: Message | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail


def _abort(context: grpc.ServicerContext, failure: _Failed) -> None:
    if failure.detail is None:
        context.abort(failure.code, failure.message)
    packed = any_pb2.Any()
    packed.Pack(failure.detail)
    status = status_pb2.Status(
        code=getattr(code_pb2, failure.code.name), message=failure.message, details=[packed]
    )
    context.abort_with_status(rpc_status.to_status(status))


class CallRunner:
    """What every RPC shares: request ids, limits, error mapping and metrics."""

    def __init__(self, service: CellService, error_details: type[Message]) -> None:
        self.service = service
        self._error_details = error_details

    def __call__(self, context: grpc.ServicerContext, call: Callable[[str], M]) -> M:
        started = time.perf_counter()
        rid = alias = ""
        for key, value in context.invocation_metadata():
            if key == "x-request-id":
                rid = str(value)
            elif key == "x-node-alias":
                alias = str(value)
        rid = rid or self.service.next_request_id()
        code = "OK"  # the StatusCode's name: its ``.name`` is a property, slow on every call
        try:
            response = call(rid)
            size = response.ByteSize()
            if size > self.service.limits.max_message_bytes:
                raise _Failed(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"the response ({size} bytes) exceeds the limit of "
                    f"{self.service.limits.describe()} (--max-message-mb)",
                )
            return response
        except ValueConversionError as exc:
            code = "INVALID_ARGUMENT"
            _abort(context, _Failed(grpc.StatusCode.INVALID_ARGUMENT, f"{exc.field}: {exc.reason}"))
        except ExecutionError as exc:
            code = "INTERNAL"
            log.warning("[%s] the cell raised %s: %s", rid, exc.error_name, exc.error_message)
            detail = self._error_details(
                error_name=exc.error_name, error_message=exc.error_message, traceback=exc.traceback
            )
            failure = _Failed(
                grpc.StatusCode.INTERNAL, f"{exc.error_name}: {exc.error_message}", detail
            )
            _abort(context, failure)
        except _Failed as failure:
            code = failure.code.name
            _abort(context, failure)
        finally:
            self.service.metrics.observe(time.perf_counter() - started, grpc_code=code, alias=alias)
        raise AssertionError("unreachable: abort raises")  # pragma: no cover


class TypedExecute:
    """The typed ``Execute``: generated Input message in, generated Output message out."""

    def __init__(self, runner: CallRunner) -> None:
        manifest = runner.service.manifest
        self._runner = runner
        self._inputs = RecordCodec(signature_record(manifest.inputs), "input")
        self._outputs = RecordCodec(signature_record(manifest.outputs), "output")

    def __call__(self, request: Message, context: grpc.ServicerContext, output: type[M]) -> M:
        run = self._runner.service.run

        def call(rid: str) -> M:
            return self._outputs.encode(run(self._inputs.decode(request), rid), output)

        return self._runner(context, call)


def _node_servicer(runner: CallRunner, node_pb2: Any, node_pb2_grpc: Any) -> Any:
    service = runner.service

    def execute_struct(request: Any, context: grpc.ServicerContext, response_type: Any) -> Any:
        def call(rid: str) -> Any:
            output = service.execute_json(struct_to_data(request.input), rid)
            return response_type(output=data_to_struct(output, "output"))

        return runner(context, call)

    class NodeServicer(node_pb2_grpc.NodeServiceServicer):  # type: ignore[misc]
        def Execute(self, request: Any, context: grpc.ServicerContext) -> Any:
            return execute_struct(request, context, node_pb2.NodeExecutionResponse)

        def ExecuteAlias(self, request: Any, context: grpc.ServicerContext) -> Any:
            return execute_struct(request, context, node_pb2.AliasExecutionResponse)

    return NodeServicer()


AddServicer = Callable[[TypedExecute, grpc.Server], None]


def create_grpc_server(
    service: CellService,
    names: ServiceNames,
    add_typed_servicer: AddServicer,
    address: str,
    workers: int = 8,
) -> tuple[grpc.Server, int]:
    """A started-ready (not yet started) server and the port it bound."""
    from yandex.cloud.datasphere.v1 import node_service_pb2, node_service_pb2_grpc

    limit = service.limits.max_message_bytes
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit + 1024),  # the own check names the limit
            ("grpc.so_reuseport", 0),
        ],
    )
    runner = CallRunner(service, node_service_pb2.NodeExecutionErrorDetails)
    add_typed_servicer(TypedExecute(runner), server)
    node_service_pb2_grpc.add_NodeServiceServicer_to_server(
        _node_servicer(runner, node_service_pb2, node_service_pb2_grpc), server
    )
    health_servicer = health.HealthServicer()
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if service.ready
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", names.full_service, NODE_SERVICE):
        health_servicer.set(name, status)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (names.full_service, NODE_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(
            f"cannot bind the gRPC port {address}; is it in use? Pass another --grpc-port"
        )
    return server, port
