"""The errors of a call through a generated client, and how they say how the service answered.

A generated client package (``checkpoint2svc generate`` writes one into ``client/``) is thin glue:
typed ``execute`` methods over ``rest_client`` and ``grpc_client``, which convert values with
``json_values`` and ``proto_values`` exactly as the server does, so that both sides agree on
every type of the README's table.

Errors form one small hierarchy under ``ClientError``:

- ``ValidationError``: an input does not match the signature (HTTP 422, gRPC INVALID_ARGUMENT, or
  found before sending); ``field`` names it, e.g. ``input.features[1]``;
- ``ExecutionError``: the cell raised (HTTP 500, gRPC INTERNAL); ``error_name``,
  ``error_message`` and ``traceback`` are the cell's;
- ``ServiceError``: any other failed call (too large, not ready, unreachable, an answer that does
  not match the signature).

``http_status`` or ``grpc_code`` says how the service answered; both are ``None`` when the call
never left this process.
"""

from __future__ import annotations

from typing import TypeVar

from . import errors


class ClientError(errors.Checkpoint2SvcError):
    """A call through a generated client failed."""

    http_status: int | None = None
    """The HTTP status of the answer (REST clients), if the service answered."""
    grpc_code: str | None = None
    """The gRPC status code's name, e.g. ``INTERNAL`` (gRPC clients), if a call was made."""


class ValidationError(ClientError, errors.ValueConversionError):
    """An input does not match the service's signature; ``field`` names it, ``reason`` says how."""


class ExecutionError(ClientError, errors.ExecutionError):
    """The cell raised; ``error_name``, ``error_message`` and ``traceback`` are its exception's."""


class ServiceError(ClientError):
    """The service refused or failed the call for another reason; the message says which."""


E = TypeVar("E", bound=ClientError)


def answered(error: E, http_status: int | None = None, grpc_code: str | None = None) -> E:
    """``error``, marked with how the service answered (returned for ``raise answered(...)``)."""
    error.http_status = http_status
    error.grpc_code = grpc_code
    return error


def mismatched_answer(reason: str) -> ServiceError:
    """The error for an answer that this client cannot read: the client is out of date."""
    return ServiceError(
        f"the service's answer does not match this client's signature ({reason}); "
        "regenerate the client from the checkpoint the service runs"
    )
