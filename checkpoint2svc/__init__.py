"""checkpoint2svc: turn one notebook cell, on its pinned interpreter state, into a microservice."""

from checkpoint2svc.errors import Checkpoint2SvcError

__version__ = "0.1.0"

__all__ = ["Checkpoint2SvcError", "__version__"]
