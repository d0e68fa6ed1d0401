"""Call any unary gRPC method by name with JSON, knowing no ``.proto``: ``checkpoint2svc grpc``.

Services, methods and message types come from the server's reflection service
(``grpc.reflection.v1alpha``, which every instance serves): ``ProtoReflectionDescriptorDatabase``
feeds a ``DescriptorPool``, and ``message_factory`` builds message classes from its descriptors.
Requests and responses are JSON by ``json_format``, as in ``grpcurl -plaintext``.

The metadata goes with every call, reflection's own streams included (a client interceptor adds
it: the database makes those calls itself), because the gateway routes all of them by
``x-node-id`` / ``x-node-alias``. A failed call's status is decoded by ``grpc_client``'s
``error_from_rpc``, as the generated clients decode it; the result is a ``GrpcCallError``.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from checkpoint2svc.errors import GrpcCallError
from checkpoint2svc.wire.client_errors import ExecutionError, ValidationError
from checkpoint2svc.wire.grpc_client import DEFAULT_TIMEOUT, UNLIMITED, error_from_rpc

T = TypeVar("T")
ERROR_DETAILS = "yandex.cloud.datasphere.v1.NodeExecutionErrorDetails"
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
CONNECT_CHECK_SECONDS = 0.5
"""How long an UNAVAILABLE answer waits to tell "nothing listens there" from a server's answer."""

_SCALARS = {
    FieldDescriptor.TYPE_DOUBLE: "double", FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_INT64: "int64", FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_INT32: "int32", FieldDescriptor.TYPE_FIXED64: "fixed64",
    FieldDescriptor.TYPE_FIXED32: "fixed32", FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_STRING: "string", FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_UINT32: "uint32", FieldDescriptor.TYPE_SFIXED32: "sfixed32",
    FieldDescriptor.TYPE_SFIXED64: "sfixed64", FieldDescriptor.TYPE_SINT32: "sint32",
    FieldDescriptor.TYPE_SINT64: "sint64",
}  # fmt: skip


@dataclass(frozen=True)
class FieldInfo:
    name: str
    type: str
    """As a .proto writes it: ``string``, ``repeated int64``, ``google.protobuf.Struct``."""


@dataclass(frozen=True)
class MethodInfo:
    name: str
    input: str
    """The request message's full name."""
    output: str
    """The response message's full name."""
    input_fields: tuple[FieldInfo, ...]
    client_streaming: bool = False
    server_streaming: bool = False


@dataclass(frozen=True)
class ServiceInfo:
    name: str
    methods: tuple[MethodInfo, ...]


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ["method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"],
    ),
    grpc.ClientCallDetails,  # type: ignore[misc]
):
    pass


class _EveryCall(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds the metadata, and the deadline if a call sets none, to every call: reflection's
    streams are opened inside ``ProtoReflectionDescriptorDatabase``, out of reach otherwise."""

    def __init__(self, metadata: tuple[tuple[str, str], ...], timeout: float | None) -> None:
        self.metadata = metadata
        self.timeout = timeout

    def _details(self, details: Any) -> _CallDetails:
        return _CallDetails(
            details.method,
            self.timeout if details.timeout is None else details.timeout,
            (*(details.metadata or ()), *self.metadata),
            details.credentials, details.wait_for_ready, details.compression,
        )  # fmt: skip

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


class ReflectionClient:
    """A plaintext (h2c) channel to ``target`` (``host:port``) whose services are learnt by
    reflection; ``metadata`` goes with every call, ``timeout`` (seconds) bounds each one.
    Close it (or use it as a context manager) when done."""

    def __init__(
        self,
        target: str,
        metadata: Sequence[tuple[str, str]] = (),
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self.target = target
        self.metadata = tuple(metadata)
        self.timeout = timeout
        self._plain = grpc.insecure_channel(target, UNLIMITED)
        self._channel = grpc.intercept_channel(self._plain, _EveryCall(self.metadata, timeout))
        self._database = ProtoReflectionDescriptorDatabase(self._channel)
        self._pool = descriptor_pool.DescriptorPool(self._database)

    def services(self) -> list[str]:
        """The full names of the services the server declares, sorted."""
        return sorted(self._reflect(self._database.get_services))

    def describe(self, service: str) -> ServiceInfo:
        """The service's methods, their message types and the fields of their requests."""
        descriptor = self._service(service)
        return ServiceInfo(descriptor.full_name, tuple(_method_info(m) for m in descriptor.methods))

    def call(self, full_method: str, request: str | Mapping[str, Any] = "{}") -> dict[str, Any]:
        """Call the unary method ``full_method`` (``package.Service/Method``) with ``request``
        (a JSON object, or its text) and return the response as JSON with the .proto's names,
        fields at their default value included (an output of 0 or "" is an output too)."""
        method = self._method(full_method)
        if method.client_streaming or method.server_streaming:
            raise GrpcCallError(
                f"{method.full_name} is a streaming method; only unary methods can be called"
            )
        request_type = message_factory.GetMessageClass(method.input_type)
        response_type = message_factory.GetMessageClass(method.output_type)
        stub = self._channel.unary_unary(
            f"/{method.containing_service.full_name}/{method.name}",
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        message = _request_message(request, request_type)
        try:
            response = stub(message, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise self._status_error(exc) from exc
        result: dict[str, Any] = json_format.MessageToDict(
            response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        return result

    def close(self) -> None:
        self._plain.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _service(self, name: str) -> ServiceDescriptor:
        try:
            found: ServiceDescriptor = self._reflect(self._pool.FindServiceByName, name)
        except KeyError:
            raise GrpcCallError(
                f"{self.target} serves no service {name!r}; it serves: "
                + ", ".join(self.services())
            ) from None
        return found

    def _method(self, full_method: str) -> MethodDescriptor:
        name = full_method.strip("/")
        service_name, slash, method_name = name.rpartition("/")
        if not slash:  # grpcurl also accepts package.Service.Method
            service_name, _, method_name = name.rpartition(".")
        if not service_name or not method_name:
            raise GrpcCallError(
                f"{full_method!r} is not a method name; write SERVICE/METHOD, e.g. "
                "yandex.cloud.datasphere.v1.NodeService/Execute (`list` shows the services)"
            )
        service = self._service(service_name)
        method: MethodDescriptor | None = service.methods_by_name.get(method_name)
        if method is None:
            raise GrpcCallError(
                f"service {service.full_name} has no method {method_name!r}; its methods: "
                + ", ".join(m.name for m in service.methods)
            )
        return method

    def _reflect(self, lookup: Callable[..., T], *args: Any) -> T:
        """``lookup(*args)``, which may ask the reflection service: its failure, explained."""
        try:
            return lookup(*args)
        except grpc.RpcError as exc:
            code, details = _status(exc)
            if code == grpc.StatusCode.UNAVAILABLE and not self._connected():
                message = (
                    f"cannot reach {self.target} ({details}); is the server (checkpoint2svc "
                    "serve) or the gateway running there, on that port?"
                )
                raise GrpcCallError(message, code.name) from exc
            if code == grpc.StatusCode.CANCELLED:
                code, details = self._unary_answer() or (code, details)
            message = f"{code.name} from {self.target}: {details}"
            if code == grpc.StatusCode.UNIMPLEMENTED:
                message += f" (this command needs the server's {REFLECTION})"
            raise GrpcCallError(message, code.name) from exc

    def _unary_answer(self) -> tuple[grpc.StatusCode, str] | None:
        """The error status of a unary call (a health check) with the same metadata.

        A proxy that refuses a call as soon as it sees its headers (HAProxy, for an unknown node)
        resets a stream the client has not finished sending, and the reset may arrive before the
        status; a unary call is sent whole, so its status arrives. ``None`` if it succeeds.
        """
        check = self._channel.unary_unary(
            HEALTH_CHECK,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            check(health_pb2.HealthCheckRequest(), timeout=self.timeout)
        except grpc.RpcError as exc:
            return _status(exc)
        return None

    def _connected(self) -> bool:
        try:
            grpc.channel_ready_future(self._plain).result(timeout=CONNECT_CHECK_SECONDS)
        except grpc.FutureTimeoutError:
            return False
        return True

    def _status_error(self, error: grpc.RpcError) -> GrpcCallError:
        """The failed call's code and message, with our error details (the cell's exception, an
        invalid field) decoded as the generated clients decode them."""
        code, details = _status(error)
        details_type = self._error_details_type()
        if details_type is None:  # not our server: it sends no NodeExecutionErrorDetails
            return GrpcCallError(f"{code.name} from {self.target}: {details}", code.name)
        decoded = error_from_rpc(error, details_type, self.target)
        if isinstance(decoded, ExecutionError):
            lines = [
                f"{code.name} from {self.target}: the cell raised {decoded}",
                *decoded.traceback,
            ]
            return GrpcCallError("\n".join(lines), code.name)
        if isinstance(decoded, ValidationError):
            return GrpcCallError(f"{code.name} from {self.target}: {decoded}", code.name)
        return GrpcCallError(str(decoded), code.name)

    def _error_details_type(self) -> type[Message] | None:
        try:
            descriptor = self._pool.FindMessageTypeByName(ERROR_DETAILS)
        except (KeyError, grpc.RpcError):
            return None
        details: type[Message] = message_factory.GetMessageClass(descriptor)
        return details


def _status(error: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    call: Any = error  # a failed call's RpcError is also its grpc.Call
    return call.code(), call.details() or ""


def _request_message(request: str | Mapping[str, Any], message_type: type[Message]) -> Message:
    """``request`` parsed into ``message_type``; an error names the bad JSON or field."""
    if isinstance(request, str):
        try:
            data = json.loads(request) if request.strip() else {}
        except json.JSONDecodeError as exc:
            raise GrpcCallError(f"the request is not valid JSON ({exc})") from exc
    else:
        data = dict(request)
    name = message_type.DESCRIPTOR.full_name
    if not isinstance(data, dict):
        raise GrpcCallError(f"the request must be a JSON object (a {name}), e.g. {{}}")
    try:
        return json_format.ParseDict(data, message_type())
    except json_format.ParseError as exc:
        reason = " ".join(str(exc).split())
        raise GrpcCallError(f"the request does not fit {name}: {reason}") from exc


def _method_info(method: MethodDescriptor) -> MethodInfo:
    return MethodInfo(
        method.name, method.input_type.full_name, method.output_type.full_name,
        _fields(method.input_type), method.client_streaming, method.server_streaming,
    )  # fmt: skip


def _fields(message: Descriptor) -> tuple[FieldInfo, ...]:
    return tuple(FieldInfo(f.name, _type_text(f)) for f in message.fields)


def _type_text(field: FieldDescriptor) -> str:
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
        return f"map<{_type_text(key)}, {_type_text(value)}>"
    if entry is not None:
        name = entry.full_name
    elif field.enum_type is not None:
        name = field.enum_type.full_name
    else:
        name = _SCALARS.get(field.type, "unknown")
    return f"repeated {name}" if field.is_repeated else name
