"""Run the pinned cell on request inputs, over the pinned interpreter state.

``isolated`` (the default) starts every call from the pinned state exactly (see
:mod:`isolation`): nothing a call changes, on whatever branch and through whatever path, reaches
the next call, and the global random generators start where the notebook had them. ``shared``
runs every call in the one namespace, as DataSphere does: a call may change what the next one
sees; the generators start from the pinned position once. Either way one call runs at a time.
"""

from __future__ import annotations

import builtins
import linecache
import threading
import traceback
from collections.abc import Collection, Mapping
from typing import Any, Literal

from checkpoint2svc.execution.isolation import PinnedState
from checkpoint2svc.execution.random_state import RandomState
from checkpoint2svc.wire.errors import ExecutionError

ExecutionMode = Literal["isolated", "shared"]
CELL_FILENAME = "<target cell>"


def display(*objects: Any, **options: Any) -> None:
    """IPython's ``display()`` where there is no IPython (a served cell): notebooks call it all
    the time; an instance has no front end, so each object's text goes to the log, as a print
    does."""
    for value in objects:
        print(repr(value))


def cell_traceback(exc: BaseException) -> list[str]:
    """The traceback from the cell's own frame down, without this module's frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != CELL_FILENAME:
        tb = tb.tb_next
    entries = traceback.format_exception(
        type(exc), exc, tb if tb is not None else exc.__traceback__
    )
    return "".join(entries).splitlines()


class CellExecutor:
    """Executes one compiled cell; thread-safe in both modes (calls take turns)."""

    def __init__(
        self,
        state: dict[str, Any],
        source: str,
        inputs: list[str],
        outputs: list[str],
        mode: ExecutionMode = "isolated",
        random_state: RandomState | None = None,
        ignore: Collection[str] = (),
    ) -> None:
        """``ignore``: names of the namespace that are not the notebook's state (IPython's own,
        when the cell runs in the pinning kernel): never copied."""
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.mode: ExecutionMode = mode
        self._state = state
        self._code = compile(source, CELL_FILENAME, "exec")
        # Tracebacks through the cell then show its source lines.
        linecache.cache[CELL_FILENAME] = (len(source), None, source.splitlines(True), CELL_FILENAME)
        self._lock = threading.Lock()
        state.setdefault("__builtins__", __builtins__)
        if not hasattr(builtins, "display"):  # IPython's own, in the pinning kernel
            state.setdefault("display", display)
        self.random_state = random_state
        self.pinned: PinnedState | None = None
        if mode == "isolated":
            self.pinned = PinnedState(state, self._code, random_state, [*self.inputs, *ignore])
        else:
            self.pin_generators()  # shared: go on from where the notebook was

    def pin_generators(self) -> None:
        """Set the global random generators to where the notebook had them."""
        if self.random_state is not None:
            self.random_state.restore()

    def run(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Set the inputs as globals, execute the cell, return the outputs."""
        missing = [name for name in self.inputs if name not in inputs]
        if missing:
            raise ExecutionError("MissingInput", f"input(s) {', '.join(missing)} not given", [])
        with self._lock:
            if self.pinned is None:
                return self._execute(self._state, inputs)
            try:
                self.pinned.prepare()
                return self._execute(self._state, inputs)
            finally:
                self.pinned.restore()  # also after a prepare that failed half-way

    def _execute(self, namespace: dict[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
        for name in self.inputs:
            namespace[name] = inputs[name]
        try:
            exec(self._code, namespace)
        except Exception as exc:
            raise ExecutionError(type(exc).__name__, str(exc), cell_traceback(exc)) from exc
        result = {}
        for name in self.outputs:
            if name not in namespace:
                raise ExecutionError(
                    "NameError", f"the cell did not assign its output {name!r} on these inputs", []
                )
            result[name] = namespace[name]
        return result


__all__ = [
    "CELL_FILENAME",
    "CellExecutor",
    "ExecutionMode",
    "cell_traceback",
    "display",
]
