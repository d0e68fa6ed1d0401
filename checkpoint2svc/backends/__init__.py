"""Where a node's instances run: Docker containers of a local image, or local processes."""

from checkpoint2svc.backends.base import (
    BACKEND_NAMES,
    InstanceBackend,
    InstanceHandle,
    InstanceSpec,
    RunState,
    RunStatus,
    create_backend,
    default_backend_name,
)

__all__ = [
    "BACKEND_NAMES",
    "InstanceBackend",
    "InstanceHandle",
    "InstanceSpec",
    "RunState",
    "RunStatus",
    "create_backend",
    "default_backend_name",
]
