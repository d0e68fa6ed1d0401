"""The gRPC side of a generated client: the typed ``Execute`` over protoc's stubs.

A client package keeps protoc's modules in its ``_proto/`` folder. They import each other by
top-level names (``checkpoint2svc_protos.v1.values_pb2``, ``yandex.cloud.datasphere.v1...``), as
protoc writes them, so ``load_stubs`` puts that folder on ``sys.path`` (as the server does with
its ``gen/``) the first time a gRPC client is made, not when the package is imported.

Values are converted by ``proto_values``, the server's own conversions. A failed call becomes a
``ClientError``: the cell's exception travels as ``NodeExecutionErrorDetails`` packed in the
``google.rpc.Status`` of the call (read with ``grpc_status.rpc_status.from_call``); an invalid
input's field is read from a ``google.rpc.BadRequest`` detail if the server sends one, else from
the status message (``"<field>: <reason>"``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from .client_errors import (
    ClientError,
    ExecutionError,
    ServiceError,
    ValidationError,
    answered,
    mismatched_answer,
)
from .errors import ValueConversionError
from .names import PROTO_DIR
from .proto_values import add_generated_path, decode_message, encode_message
from .signature import Signature

OutputT = TypeVar("OutputT")
DEFAULT_TIMEOUT = 60.0
ERROR_DETAILS_MODULE = "yandex.cloud.datasphere.v1.node_service_pb2"
# The server enforces its own limit and names it; the client does not cut messages short.
UNLIMITED = (("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1))
Metadata = Mapping[str, str] | Sequence[tuple[str, str]]


@dataclass(frozen=True)
class ServiceStubs:
    """Where a client package's protoc modules are, and the names of its typed service."""

    folder: Path
    module: str
    """The stem of the service's modules: ``<module>_pb2``, ``<module>_pb2_grpc``."""
    service: str
    """The typed service, e.g. ``GreetService`` (its stub is ``GreetServiceStub``)."""

    @classmethod
    def beside(cls, module_file: str, module: str, service: str) -> ServiceStubs:
        """The stubs in the ``_proto/`` folder next to ``module_file`` (a module's ``__file__``)."""
        return cls(Path(module_file).resolve().parent / PROTO_DIR, module, service)


@dataclass(frozen=True)
class LoadedStubs:
    input: type[Message]
    output: type[Message]
    stub: Callable[[Any], Any]
    """The service's stub class: takes a channel (blocking or asyncio)."""
    error_details: type[Message]
    """``NodeExecutionErrorDetails``: what a failed call carries when the cell raised."""


@cache
def load_stubs(stubs: ServiceStubs) -> LoadedStubs:
    """Import the service's protoc modules from ``stubs.folder`` (once per process)."""
    add_generated_path(stubs.folder)
    importlib.invalidate_caches()
    messages = importlib.import_module(f"{stubs.module}_pb2")
    services = importlib.import_module(f"{stubs.module}_pb2_grpc")
    errors = importlib.import_module(ERROR_DETAILS_MODULE)
    return LoadedStubs(
        input=messages.Input,
        output=messages.Output,
        stub=getattr(services, f"{stubs.service}Stub"),
        error_details=errors.NodeExecutionErrorDetails,
    )


def request_message(signature: Signature, inputs: Mapping[str, Any], message: type[Message]) -> Any:
    """The typed ``Input`` message for ``inputs``; a ``ValidationError`` names a bad one."""
    values = signature.check_inputs(inputs)
    try:
        return encode_message(values, signature.inputs, message, "input")
    except ValueConversionError as exc:
        raise ValidationError(exc.field, exc.reason) from exc


def response_outputs(signature: Signature, message: Message) -> dict[str, Any]:
    """The Python values of the outputs in a typed ``Output`` message."""
    try:
        return decode_message(message, signature.outputs, "output")
    except ValueConversionError as exc:
        raise mismatched_answer(str(exc)) from exc


def error_from_rpc(error: grpc.RpcError, error_details: type[Message], target: str) -> ClientError:
    """The error for a failed call (a blocking call's ``RpcError`` or an ``AioRpcError``)."""
    call: Any = error
    code: grpc.StatusCode = call.code()
    message: str = call.details() or ""
    try:
        status = rpc_status.from_call(call)
    except ValueError:  # a status that contradicts the call's code or message: not the server's
        status = None
    details = list(status.details) if status is not None else []
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        field, reason = _violation(details) or _split_field(message)
        return answered(ValidationError(field, reason), grpc_code=code.name)
    if code == grpc.StatusCode.INTERNAL:
        for packed in details:
            if packed.Is(error_details.DESCRIPTOR):
                detail: Any = error_details()
                packed.Unpack(detail)
                raised = ExecutionError(
                    detail.error_name, detail.error_message, list(detail.traceback)
                )
                return answered(raised, grpc_code=code.name)
    hint = " (is the service running there?)" if code == grpc.StatusCode.UNAVAILABLE else ""
    return answered(
        ServiceError(f"{code.name} from {target}{hint}: {message}"), grpc_code=code.name
    )


def _violation(details: list[Any]) -> tuple[str, str] | None:
    for packed in details:
        if packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            packed.Unpack(bad)
            if bad.field_violations:
                violation = bad.field_violations[0]
                return violation.field, violation.description
    return None


def _split_field(message: str) -> tuple[str, str]:
    """``"input.x[1]: expected a number"`` -> the field and the reason (the server's form)."""
    field, separator, reason = message.partition(": ")
    return (field, reason) if separator and " " not in field.split(".", 1)[0] else ("", message)


def _metadata(
    metadata: Metadata | None, node_id: str | None, alias: str | None
) -> tuple[tuple[str, str], ...]:
    items = list(metadata.items() if isinstance(metadata, Mapping) else metadata or ())
    if node_id is not None:
        items.append(("x-node-id", node_id))
    if alias is not None:
        items.append(("x-node-alias", alias))
    return tuple(items)


class _Base(Generic[OutputT]):
    signature: ClassVar[Signature]
    """Set by the generated subclass: the service's inputs and outputs."""
    stubs: ClassVar[ServiceStubs]
    """Set by the generated subclass: where its protoc modules are."""
    output_type: Callable[..., OutputT]
    """Set by the generated subclass: the ``Output`` dataclass."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None,
        metadata: Metadata | None,
        node_id: str | None,
        alias: str | None,
        options: Sequence[tuple[str, Any]],
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.metadata = _metadata(metadata, node_id, alias)
        self.options = tuple({**dict(UNLIMITED), **dict(options)}.items())
        self._stubs = load_stubs(self.stubs)

    def _request(self, inputs: Mapping[str, Any]) -> Any:
        return request_message(self.signature, inputs, self._stubs.input)

    def _read(self, response: Message) -> OutputT:
        return self.output_type(**response_outputs(self.signature, response))

    def _error(self, error: grpc.RpcError) -> ClientError:
        return error_from_rpc(error, self._stubs.error_details, self.target)


class GrpcClient(_Base[OutputT]):
    """Blocking calls over gRPC; close it (or use it as a context manager) when done.

    ``target`` is ``host:port`` of the instance (or the gateway); ``timeout`` is in seconds per
    call (``None``: no deadline); ``metadata`` goes with every call, and ``node_id`` / ``alias``
    add DataSphere's ``x-node-id`` / ``x-node-alias`` for a gateway. ``credentials`` makes a TLS
    channel; ``options`` are channel options (by default messages of any size may be sent and
    received: the server enforces its own limit).
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        metadata: Metadata | None = None,
        node_id: str | None = None,
        alias: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        super().__init__(
            target, timeout=timeout, metadata=metadata, node_id=node_id, alias=alias,
            options=options,
        )  # fmt: skip
        if credentials is None:
            self._channel = grpc.insecure_channel(target, self.options)
        else:
            self._channel = grpc.secure_channel(target, credentials, self.options)
        self._call = self._stubs.stub(self._channel).Execute

    def _execute(self, inputs: Mapping[str, Any]) -> OutputT:
        request = self._request(inputs)
        try:
            response = self._call(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from exc
        return self._read(response)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncGrpcClient(_Base[OutputT]):
    """``GrpcClient`` for asyncio (grpc.aio): ``await client.execute(...)``; ``await
    client.aclose()``. Takes the same arguments; the channel opens at the first call, in the
    running event loop: use one client within one loop."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        metadata: Metadata | None = None,
        node_id: str | None = None,
        alias: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        super().__init__(
            target, timeout=timeout, metadata=metadata, node_id=node_id, alias=alias,
            options=options,
        )  # fmt: skip
        self._credentials = credentials
        self._channel: grpc.aio.Channel | None = None
        self._call: Any = None

    def _open(self) -> Any:
        if self._channel is None:
            if self._credentials is None:
                self._channel = grpc.aio.insecure_channel(self.target, self.options)
            else:
                self._channel = grpc.aio.secure_channel(
                    self.target, self._credentials, self.options
                )
            self._call = self._stubs.stub(self._channel).Execute
        return self._call

    async def _execute(self, inputs: Mapping[str, Any]) -> OutputT:
        request = self._request(inputs)
        call = self._open()
        try:
            response = await call(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from exc
        return self._read(response)

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
