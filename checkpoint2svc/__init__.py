"""checkpoint2svc: turn one notebook cell, on its pinned interpreter state, into a microservice.

The names below are the library's front door, one per stage of the flow (pin → generate → build
→ run on a controller). They are imported on first use: ``import checkpoint2svc`` stays cheap,
and a Jupyter kernel that only loads the extension pays for nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from checkpoint2svc.errors import Checkpoint2SvcError
from checkpoint2svc.version import __version__

if TYPE_CHECKING:
    from checkpoint2svc.checkpoint.checkpoint import Checkpoint
    from checkpoint2svc.checkpoint.pin import pin_notebook
    from checkpoint2svc.codegen.service_context import generate
    from checkpoint2svc.control.api_client import ControllerClient
    from checkpoint2svc.control.models import AliasSpec, NodeSpec
    from checkpoint2svc.image.build import build_image

__all__ = [
    "AliasSpec",
    "Checkpoint",
    "Checkpoint2SvcError",
    "ControllerClient",
    "NodeSpec",
    "__version__",
    "build_image",
    "generate",
    "load_ipython_extension",
    "pin_notebook",
]

_HOMES = {
    "Checkpoint": "checkpoint2svc.checkpoint.checkpoint",
    "pin_notebook": "checkpoint2svc.checkpoint.pin",
    "generate": "checkpoint2svc.codegen.service_context",
    "build_image": "checkpoint2svc.image.build",
    "ControllerClient": "checkpoint2svc.control.api_client",
    "NodeSpec": "checkpoint2svc.control.models",
    "AliasSpec": "checkpoint2svc.control.models",
}
"""Each lazily imported name -> the module that defines it."""


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext checkpoint2svc``: the ``%%deploy`` magic and its companions."""
    from checkpoint2svc.magic import load_ipython_extension as load

    load(ipython)
