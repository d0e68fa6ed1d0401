"""The errors of the wire: the root of every checkpoint2svc error, and what a call can end in.

Build-time errors (a notebook, a checkpoint, an image...) live in ``checkpoint2svc.errors``,
under the same root.
"""

from __future__ import annotations


class Checkpoint2SvcError(Exception):
    """Root of every error raised on purpose; the CLI prints these without a traceback."""


class MalformedTypeError(Checkpoint2SvcError):
    """A type's dict form (a manifest's, a signature's) is malformed or of an unknown kind."""


class ValueConversionError(Checkpoint2SvcError):
    """A value does not match its declared type; ``field`` names where."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.reason = message


class ExecutionError(Checkpoint2SvcError):
    """The target cell raised while serving a request."""

    def __init__(self, error_name: str, error_message: str, traceback: list[str]) -> None:
        super().__init__(f"{error_name}: {error_message}")
        self.error_name = error_name
        self.error_message = error_message
        self.traceback = traceback


class GrpcCallError(Checkpoint2SvcError):
    """A call by name over gRPC reflection failed: the target is unreachable, reflection knows no
    such service or method, the request does not fit the message, or the server answered with an
    error status; ``code`` is that status's name (``None`` when nothing was answered)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
