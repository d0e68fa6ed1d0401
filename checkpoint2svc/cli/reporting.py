"""The one place a command's error becomes what the user reads, and its exit status."""

from __future__ import annotations

import sys

from checkpoint2svc.errors import (
    CellExecutionError,
    Checkpoint2SvcError,
    ExecutionError,
    ValueConversionError,
)

INTERRUPTED = 130
"""The exit status of a command stopped with Ctrl-C (128 + SIGINT), as shells report it."""


def report(exc: Checkpoint2SvcError | KeyboardInterrupt) -> int:
    """Print ``exc`` on standard error, with the cell's traceback when the cell raised, and
    return the exit status: 1 for an error, 130 for an interrupt."""
    if isinstance(exc, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    if isinstance(exc, CellExecutionError):
        print(f"error: {exc}", file=sys.stderr)
        if exc.traceback:
            print(exc.traceback, file=sys.stderr)
    elif isinstance(exc, ExecutionError):
        print(f"error: the cell raised {exc}", file=sys.stderr)
        print("\n".join(exc.traceback), file=sys.stderr)
    elif isinstance(exc, ValueConversionError):
        print(f"error: invalid input: {exc}", file=sys.stderr)
    else:
        print(f"error: {exc}", file=sys.stderr)
    return 1
