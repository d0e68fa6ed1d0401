"""Pin from inside a running kernel: the kernel's current state and one cell, with no re-run of
the notebook (what ``%%deploy`` does).

The state is captured before the cell runs, then the cell runs once on the live namespace, as
it would in the notebook; its outputs become the checkpoint's examples, exactly as with ``pin``.
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from checkpoint2svc.checkpoint.checkpoint import Checkpoint
from checkpoint2svc.checkpoint.kernel_side import capture_into, kernel_namespace
from checkpoint2svc.checkpoint.manifest import TargetCell
from checkpoint2svc.checkpoint.pin import staged_checkpoint, write_manifest
from checkpoint2svc.checkpoint.pin_protocol import PinRequest
from checkpoint2svc.errors import SignatureError
from checkpoint2svc.execution.executor import ExecutionMode
from checkpoint2svc.signature.cell_analysis import analyze_cell, parse_cell, to_python

_PLAIN_DATA = (bool, int, float, complex, str, bytes, list, tuple, dict, type(None))
_ARRAY_TYPES = {("numpy", "ndarray"), ("pandas", "DataFrame"), ("pandas", "Series")}


def _is_data(value: Any) -> bool:
    """A value a caller could send: plain data, an array or a table (not a model, a function…)."""
    if isinstance(value, _PLAIN_DATA):
        return True
    kind = type(value)
    return (kind.__module__.split(".")[0], kind.__name__) in _ARRAY_TYPES or (
        kind.__module__ == "numpy" and hasattr(value, "dtype")  # numpy scalars
    )


def kernel_annotations(history: list[str]) -> str:
    """The annotated assignments (``features: list[float] = ...``) of the cells run so far, the
    latest of each name, as source: the kernel's stand-in for the ``parameters`` cell."""
    seen: dict[str, str] = {}
    for source in reversed(history):
        try:
            tree = ast.parse(to_python(source))
        except (SyntaxError, ValueError):
            continue
        for stmt in tree.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                seen.setdefault(stmt.target.id, ast.unparse(stmt.annotation))
    return "".join(f"{name}: {annotation}\n" for name, annotation in sorted(seen.items()))


def default_inputs(source: str, namespace: dict[str, Any], annotated: set[str]) -> list[str]:
    """The inputs when none are named: the data the cell reads that an earlier cell annotated
    (``text: str = ...``); failing that, every data value it reads except CONSTANTS and names
    the cell itself updates (``count += 1``)."""
    cell = analyze_cell(source, "the cell")
    data = [n for n in cell.reads if n in namespace and _is_data(namespace[n])]
    chosen = [n for n in data if n in annotated]
    if not chosen:
        chosen = [n for n in data if not n.isupper() and n not in cell.assigns]
    if not chosen:
        raise SignatureError(
            "the cell reads no variable that could be an input (plain data, an array or a "
            "table defined earlier); name them with --inputs a,b"
        )
    return chosen


def pin_live_cell(
    cell_source: str,
    out_dir: Path,
    *,
    name: str,
    inputs: list[str] | None = None,
    outputs: list[str] | None = None,
    mode: ExecutionMode = "isolated",
    strict: bool = False,
    cell_id: str = "",
    cell_index: int = 0,
    force: bool = True,
    warn: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
) -> Checkpoint:
    """Pin ``cell_source`` over this kernel's namespace into ``out_dir``.

    The cell runs once here (its output shows as usual, its results stay in the namespace)."""
    python_source = to_python(cell_source)
    parse_cell(python_source, "the %%deploy cell")
    namespace = kernel_namespace()
    annotations = kernel_annotations(list(namespace.get("In", [])))
    annotated = {line.split(":", 1)[0] for line in annotations.splitlines()}
    if inputs is None:
        inputs = default_inputs(python_source, namespace, annotated)
    request = PinRequest(
        python_source=python_source,
        parameters_source=annotations or None,
        inputs=inputs,
        outputs=outputs,
        strict=strict,
        label="the %%deploy cell",
        mode=mode,
    )
    notebook = os.environ.get("JPY_SESSION_NAME", "")  # set by Jupyter Server for a notebook
    cell = TargetCell(id=cell_id, index=cell_index, source=cell_source, python_source=python_source)
    with staged_checkpoint(out_dir, force) as staging:
        captured = capture_into(request, staging, keep_outputs=True)
        manifest = write_manifest(
            staging, captured, name=name, notebook=Path(notebook).name or "<kernel>",
            notebook_sha256="", cell=cell, mode=mode, warn=warn,
        )  # fmt: skip
    return Checkpoint(out_dir, manifest)
