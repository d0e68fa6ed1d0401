"""Run the pinned cell on request inputs, over the pinned interpreter state.

``isolated`` (the default) gives every call a fresh namespace over the state: rebinding a global
never leaks into the next call, variables the cell was seen to mutate at pin time are deep-copied
per call, and notebook functions that read the inputs or those variables are re-bound to the
call's namespace so they see this call's values. ``shared`` runs every call in the one namespace,
one call at a time, as DataSphere does: a call may change what the next one sees.
"""

from __future__ import annotations

import copy
import linecache
import threading
import traceback
import types
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from checkpoint2svc.errors import ExecutionError

ExecutionMode = Literal["isolated", "shared"]
CELL_FILENAME = "<target cell>"


def code_global_names(code: types.CodeType) -> set[str]:
    """Names a code object (and the functions, lambdas and classes nested in it) looks up."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= code_global_names(const)
    return names


def functions_to_rebind(
    state: Mapping[str, Any], watched: Iterable[str]
) -> dict[str, types.FunctionType]:
    """Notebook functions that read (directly or through each other) any ``watched`` global."""
    candidates = {
        name: value
        for name, value in state.items()
        if isinstance(value, types.FunctionType) and value.__globals__ is state
    }
    reads = {name: code_global_names(fn.__code__) for name, fn in candidates.items()}
    selected: set[str] = set()
    targets = set(watched)
    changed = True
    while changed:
        changed = False
        for name, names in reads.items():
            if name not in selected and names & (targets | selected):
                selected.add(name)
                changed = True
    return {name: candidates[name] for name in sorted(selected)}


def _rebound(fn: types.FunctionType, namespace: dict[str, Any]) -> types.FunctionType:
    clone = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    clone.__kwdefaults__ = fn.__kwdefaults__
    clone.__qualname__ = fn.__qualname__
    clone.__dict__.update(fn.__dict__)
    return clone


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
    """Executes one compiled cell; thread-safe in both modes."""

    def __init__(
        self,
        state: dict[str, Any],
        source: str,
        inputs: list[str],
        outputs: list[str],
        mode: ExecutionMode = "isolated",
        copy_per_call: Iterable[str] = (),
    ) -> None:
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.mode: ExecutionMode = mode
        self._state = state
        self._code = compile(source, CELL_FILENAME, "exec")
        # Tracebacks through the cell then show its source lines.
        linecache.cache[CELL_FILENAME] = (len(source), None, source.splitlines(True), CELL_FILENAME)
        self._copy = [name for name in copy_per_call if name in state]
        self._rebind = functions_to_rebind(state, [*self.inputs, *self._copy])
        self._lock = threading.Lock()
        state.setdefault("__builtins__", __builtins__)

    def _namespace(self) -> dict[str, Any]:
        if self.mode == "shared":
            return self._state
        namespace = dict(self._state)
        for name in self._copy:
            namespace[name] = copy.deepcopy(self._state[name])
        for name, fn in self._rebind.items():
            namespace[name] = _rebound(fn, namespace)
        return namespace

    def run(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Set the inputs as globals, execute the cell, return the outputs."""
        missing = [name for name in self.inputs if name not in inputs]
        if missing:
            raise ExecutionError("MissingInput", f"input(s) {', '.join(missing)} not given", [])
        if self.mode == "shared":
            with self._lock:
                return self._execute(self._namespace(), inputs)
        return self._execute(self._namespace(), inputs)

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
    "functions_to_rebind",
]
