"""The exception hierarchy. Every message names the culprit and says what to do about it."""

from __future__ import annotations


class Checkpoint2SvcError(Exception):
    """Root of every error raised on purpose; the CLI prints these without a traceback."""


class NotebookError(Checkpoint2SvcError):
    """The notebook file is missing, unreadable or not a valid notebook."""


class CellSelectionError(Checkpoint2SvcError):
    """A cell selector matched no cell or more than one."""


class CellExecutionError(Checkpoint2SvcError):
    """A notebook cell raised while the notebook was being pinned."""

    def __init__(self, message: str, traceback: str = "") -> None:
        super().__init__(message)
        self.traceback = traceback


class SignatureError(Checkpoint2SvcError):
    """The cell's inputs or outputs cannot be determined as asked."""


class TypeInferenceError(SignatureError):
    """A variable's type has no representation in the type IR."""


class UnserializableStateError(Checkpoint2SvcError):
    """A variable the target cell needs cannot be serialized."""


class CheckpointError(Checkpoint2SvcError):
    """A checkpoint directory is missing, malformed, or written by another format version."""


class IntegrityError(CheckpointError):
    """A checkpoint file does not match the sha256 recorded in its manifest."""


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


class ImageError(Checkpoint2SvcError):
    """Building, testing or reading a service's container image failed."""


class DockerUnavailableError(ImageError):
    """No Docker engine answers."""


class BaseImageError(ImageError):
    """The base image is missing, cannot be built, or has the wrong Python."""


class WheelhouseError(ImageError):
    """A requirement of the image has no wheel to be had, or the runtime wheel cannot be built."""


class ImageSelfTestError(ImageError):
    """The built image did not start, or served outputs that differ from the pinned examples."""


class GatewayError(Checkpoint2SvcError):
    """The gateway's configuration is invalid, or HAProxy cannot be started, reloaded or reached."""


class BackendError(Checkpoint2SvcError):
    """An instance cannot be started, observed or stopped on its backend (docker, local)."""


class ImageMissingError(BackendError):
    """The image of an instance is not in the local engine (removed by hand, or never built)."""


class GrpcCallError(Checkpoint2SvcError):
    """A call by name over gRPC reflection failed: the target is unreachable, reflection knows no
    such service or method, the request does not fit the message, or the server answered with an
    error status; ``code`` is that status's name (``None`` when nothing was answered)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
