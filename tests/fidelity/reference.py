"""Reference values: run a notebook top to bottom in a plain kernel and capture, after each result
cell, every name it assigns encoded as the service would encode it (``infer_type`` then
``encode_json``, then through orjson as a server writes it).

The capture runs as an extra execution in the same kernel (store_history=False) whose code lives
in a throwaway dict, so it binds no global of the notebook and leaves its history alone.

    python -m tests.fidelity.reference NOTEBOOK OUT.json
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.fidelity.rules import result_cells

PLAIN_KERNEL = "fidelity-plain-python"
CELL_TIMEOUT = 300

CAPTURE_SOURCE = """
def capture(namespace, names, path):
    import json

    import orjson

    from checkpoint2svc.wire.json_values import encode_json
    from checkpoint2svc.signature.infer import infer_type

    result = {}
    for name in names:
        if name not in namespace:
            result[name] = {"error": "not bound after the cell", "python_type": "-"}
            continue
        value = namespace[name]
        entry = {"python_type": f"{type(value).__module__}.{type(value).__qualname__}"}
        try:
            type_ = infer_type(value, name, lambda message: None)
            entry["type"] = type_.to_dict()
            entry["type_text"] = type_.render()
            for form in ("b64", "list"):
                encoded = encode_json(value, type_, name, tensors=form)
                wire = orjson.dumps(encoded, option=orjson.OPT_SERIALIZE_NUMPY)
                entry[form] = orjson.loads(wire)
        except Exception as exc:
            entry.pop("type", None)
            entry.pop("type_text", None)
            entry["error"] = f"{type(exc).__name__}: {exc}"[:300]
        result[name] = entry
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(result, stream)
"""


class _PlainSpecs(KernelSpecManager):
    """A kernel on this interpreter, whatever kernelspecs are installed."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name != PLAIN_KERNEL:
            return super().get_kernel_spec(kernel_name)
        return KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                  "--IPKernelApp.log_level=ERROR"],
            display_name="plain python", language="python", resource_dir="",
        )  # fmt: skip


def _capture_code(names: tuple[str, ...], path: Path) -> str:
    return (
        f"exec(compile({CAPTURE_SOURCE!r} + 'capture(_ns, _names, _path)\\n', "
        f"'<fidelity capture>', 'exec'), "
        f"{{'_ns': globals(), '_names': {list(names)!r}, '_path': {str(path)!r}}})"
    )


def run_notebook(path: Path) -> dict[str, Any]:
    """Run ``path`` top to bottom in a fresh plain kernel (cwd: its folder).

    Returns ``{"cells": {"N": {name: entry}}, "error": str | None, "seconds": float}`` with one
    entry per result cell that ran (N: its code-cell position)."""
    started = time.perf_counter()
    notebook = nbformat.read(path, as_version=4)
    wanted = {cell.cell_index: cell for cell in result_cells(notebook)}
    code = [(i, c) for i, c in enumerate(notebook.cells) if c.cell_type == "code"]
    scratch = nbformat.v4.new_code_cell("", id="fidelity-capture")
    notebook.cells.append(scratch)
    manager = AsyncKernelManager(kernel_name=PLAIN_KERNEL, kernel_spec_manager=_PlainSpecs())
    client = NotebookClient(
        notebook,
        km=manager,
        timeout=CELL_TIMEOUT,
        startup_timeout=120,
        allow_errors=False,
        resources={"metadata": {"path": str(path.resolve().parent)}},
    )
    cells: dict[str, Any] = {}
    error = None
    with tempfile.TemporaryDirectory(prefix="fidelity-reference-") as scratch_dir:
        out = Path(scratch_dir) / "capture.json"
        try:
            with client.setup_kernel():
                for code_index, (cell_index, cell) in enumerate(code):
                    try:
                        client.execute_cell(cell, cell_index)
                    except CellExecutionError as exc:
                        error = f"cell #{code_index} raised {exc.ename}: {exc.evalue}"
                        break
                    if cell_index not in wanted:
                        continue
                    scratch.source = _capture_code(wanted[cell_index].names, out)
                    client.execute_cell(scratch, len(notebook.cells) - 1, store_history=False)
                    cells[str(code_index)] = json.loads(out.read_text(encoding="utf-8"))
        except Exception as exc:  # the kernel died, a cell timed out, the capture failed
            error = error or f"{type(exc).__name__}: {exc}"
        finally:
            if run_sync(manager.is_alive)():
                run_sync(manager.shutdown_kernel)(now=True)
    return {"cells": cells, "error": error, "seconds": round(time.perf_counter() - started, 2)}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m tests.fidelity.reference NOTEBOOK OUT.json", file=sys.stderr)
        return 2
    result = run_notebook(Path(args[0]))
    tmp = Path(args[1]).with_suffix(".partial")
    tmp.write_text(json.dumps(result), encoding="utf-8")
    os.replace(tmp, args[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
