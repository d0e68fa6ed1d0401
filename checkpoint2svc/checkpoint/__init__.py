"""Stage 1: pin a notebook cell and its interpreter state into a checkpoint; load it back."""

from checkpoint2svc.checkpoint.checkpoint import Checkpoint
from checkpoint2svc.checkpoint.manifest import Manifest, Variable
from checkpoint2svc.checkpoint.pin import pin_notebook

__all__ = ["Checkpoint", "Manifest", "Variable", "pin_notebook"]
