"""The REST side of a generated client: ``POST {base_url}/execute`` with JSON, over httpx.

Inputs travel as the server reads them (``json_values``), tensors in their base64 form both ways
(``x-tensor-format: b64``): several times faster than nested lists, and exact about the shape of
an empty tensor. Outputs are decoded by the same rules. A generated
``RestClient`` subclass sets ``signature`` and ``output_type`` and adds a typed ``execute``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar

import httpx
import orjson

from .client_errors import (
    ClientError,
    ExecutionError,
    ServiceError,
    ValidationError,
    answered,
    mismatched_answer,
)
from .errors import ValueConversionError
from .json_values import decode_json, encode_json
from .signature import Signature

OutputT = TypeVar("OutputT")
DEFAULT_TIMEOUT = 60.0


def request_body(signature: Signature, inputs: Mapping[str, Any]) -> bytes:
    """The JSON body ``{"input": {...}}`` for ``inputs``; a ``ValidationError`` names a bad one."""
    values = signature.check_inputs(inputs)
    try:
        data = {
            f.name: encode_json(values[f.name], f.type, f"input.{f.name}", tensors="b64")
            for f in signature.inputs.fields
        }
        return orjson.dumps({"input": data})
    except ValueConversionError as exc:
        raise ValidationError(exc.field, exc.reason) from exc
    except TypeError as exc:  # orjson: e.g. an integer beyond 64 bits inside a json value
        raise ValidationError("input", f"cannot be sent as JSON ({exc})") from exc


def response_outputs(signature: Signature, body: bytes) -> dict[str, Any]:
    """The Python values of the outputs in a 200 answer's body ``{"output": {...}}``."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise mismatched_answer(f"the body is not JSON: {exc}") from exc
    output = data.get("output") if isinstance(data, dict) else None
    if not isinstance(output, dict):
        raise mismatched_answer('the body is not {"output": {...}}')
    try:
        return {
            f.name: decode_json(output.get(f.name), f.type, f"output.{f.name}")
            for f in signature.outputs.fields
        }
    except ValueConversionError as exc:
        raise mismatched_answer(str(exc)) from exc


def error_from_response(status: int, body: bytes, url: str) -> ClientError:
    """The error for a non-200 answer: 422 and 500 carry the server's JSON error body."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("error_message"), str):
        text = body.decode("utf-8", errors="replace").strip()
        return answered(ServiceError(f"HTTP {status} from {url}: {text[:500]}"), http_status=status)
    message: str = data["error_message"]
    if status == 422:
        field = data.get("field")
        return answered(
            ValidationError(field if isinstance(field, str) else "", message), http_status=status
        )
    name = data.get("error_name")
    traceback = data.get("traceback")
    if status == 500 and isinstance(name, str) and isinstance(traceback, list):
        lines = [str(line) for line in traceback]
        return answered(ExecutionError(name, message, lines), http_status=status)
    return answered(ServiceError(f"HTTP {status} from {url}: {message}"), http_status=status)


class _Base(Generic[OutputT]):
    signature: ClassVar[Signature]
    """Set by the generated subclass: the service's inputs and outputs."""
    output_type: Callable[..., OutputT]
    """Set by the generated subclass: the ``Output`` dataclass."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float | None,
        headers: Mapping[str, str] | None,
        node_id: str | None,
        alias: str | None,
        path: str,
    ) -> None:
        self.url = base_url.rstrip("/") + "/" + path.lstrip("/")
        self.timeout = timeout
        self.headers = {
            "content-type": "application/json",
            "x-tensor-format": "b64",
            **(headers or {}),
        }
        if node_id is not None:
            self.headers["x-node-id"] = node_id
        if alias is not None:
            self.headers["x-node-alias"] = alias

    def _unreachable(self, error: httpx.TransportError) -> ServiceError:
        return ServiceError(
            f"no answer from {self.url} ({type(error).__name__}: {error}); is the service "
            "running there, and is the timeout long enough?"
        )

    def _read(self, response: httpx.Response) -> OutputT:
        if response.status_code != 200:
            raise error_from_response(response.status_code, response.content, self.url)
        return self.output_type(**response_outputs(self.signature, response.content))


class RestClient(_Base[OutputT]):
    """Blocking calls over REST; close it (or use it as a context manager) when done.

    ``base_url`` is the instance's (or the gateway's) address, e.g. ``http://127.0.0.1:8080``;
    ``timeout`` is in seconds per call (``None``: wait forever); ``headers`` go with every call,
    and ``node_id`` / ``alias`` add DataSphere's ``x-node-id`` / ``x-node-alias`` for a gateway.
    ``path`` is where to post (DataSphere's ``/datasphere/v1/nodes/{node}:execute`` works too).
    ``http_client`` replaces the client's own ``httpx.Client`` (proxies, TLS, auth, transports);
    it is then the caller's to close.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        node_id: str | None = None,
        alias: str | None = None,
        path: str = "/execute",
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(
            base_url, timeout=timeout, headers=headers, node_id=node_id, alias=alias, path=path
        )
        self._owned = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(timeout=timeout)

    def _execute(self, inputs: Mapping[str, Any]) -> OutputT:
        body = request_body(self.signature, inputs)
        try:
            response = self._http.post(
                self.url, content=body, headers=self.headers, timeout=self.timeout
            )
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        return self._read(response)

    def close(self) -> None:
        if self._owned:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncRestClient(_Base[OutputT]):
    """``RestClient`` for asyncio: ``await client.execute(...)``; ``await client.aclose()``.

    Takes the same arguments as ``RestClient`` (``http_client`` is an ``httpx.AsyncClient``).
    Use one client within one event loop.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        node_id: str | None = None,
        alias: str | None = None,
        path: str = "/execute",
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            base_url, timeout=timeout, headers=headers, node_id=node_id, alias=alias, path=path
        )
        self._owned = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient(timeout=timeout)

    async def _execute(self, inputs: Mapping[str, Any]) -> OutputT:
        body = request_body(self.signature, inputs)
        try:
            response = await self._http.post(
                self.url, content=body, headers=self.headers, timeout=self.timeout
            )
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        return self._read(response)

    async def aclose(self) -> None:
        if self._owned:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
