"""checkpoint2svc: turn one notebook cell, on its pinned interpreter state, into a microservice."""

from checkpoint2svc.errors import Checkpoint2SvcError
from checkpoint2svc.version import __version__

__all__ = ["Checkpoint2SvcError", "__version__", "load_ipython_extension"]


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext checkpoint2svc``: the ``%%deploy`` magic and its companions."""
    from checkpoint2svc.magic import load_ipython_extension as load

    load(ipython)
