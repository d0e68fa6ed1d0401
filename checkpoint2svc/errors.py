"""The exception hierarchy. Every message names the culprit and says what to do about it.

These are the build-time errors (pin, generate, build, deploy); the root and the errors of a
call (a value that does not fit its type, a cell that raised) belong to the wire
(``checkpoint2svc.wire.errors``) and are re-exported here.
"""

from __future__ import annotations

from checkpoint2svc.wire.errors import (
    Checkpoint2SvcError,
    ExecutionError,
    GrpcCallError,
    MalformedTypeError,
    ValueConversionError,
)


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


__all__ = [
    "BackendError",
    "BaseImageError",
    "CellExecutionError",
    "CellSelectionError",
    "Checkpoint2SvcError",
    "CheckpointError",
    "DockerUnavailableError",
    "ExecutionError",
    "GatewayError",
    "GrpcCallError",
    "ImageError",
    "ImageMissingError",
    "ImageSelfTestError",
    "IntegrityError",
    "MalformedTypeError",
    "NotebookError",
    "SignatureError",
    "TypeInferenceError",
    "UnserializableStateError",
    "ValueConversionError",
    "WheelhouseError",
]
