"""Stage 1: pin a notebook cell and its interpreter state into a checkpoint; load it back.

Names are imported lazily: the kernel imports ``kernel_side`` from this package during a pin,
and must not pay for nbclient and nbformat, which only the host side uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from checkpoint2svc.checkpoint.checkpoint import Checkpoint
    from checkpoint2svc.checkpoint.manifest import Manifest, Variable
    from checkpoint2svc.checkpoint.pin import pin_notebook

__all__ = ["Checkpoint", "Manifest", "Variable", "pin_notebook"]

_HOMES = {
    "Checkpoint": "checkpoint2svc.checkpoint.checkpoint",
    "Manifest": "checkpoint2svc.checkpoint.manifest",
    "Variable": "checkpoint2svc.checkpoint.manifest",
    "pin_notebook": "checkpoint2svc.checkpoint.pin",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
