"""Read a notebook and find the cell a selector names."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from checkpoint2svc.errors import CellSelectionError, NotebookError


@dataclass(frozen=True)
class SelectedCell:
    index: int
    """Position among all cells."""
    code_index: int
    """Position among code cells (what ``#N`` counts)."""
    cell: Any
    by_tag: str | None
    """The tag the selector matched, if it matched a tag."""


def read_notebook(path: Path) -> tuple[Any, str]:
    """The parsed notebook and the sha256 of its file; errors say what is wrong with it."""
    if path.is_dir():
        raise NotebookError(f"{path} is a directory; pass the .ipynb file in it")
    if not path.is_file():
        raise NotebookError(f"notebook {path} does not exist; check the path")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotebookError(f"{path} is not a text file ({exc}); pass an .ipynb notebook") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookError(
            f"{path} is not JSON (line {exc.lineno} column {exc.colno}: {exc.msg}), so not a "
            "Jupyter notebook; pass an .ipynb file"
        ) from exc
    if not isinstance(data, dict) or "nbformat" not in data:
        found = "has no `nbformat` key" if isinstance(data, dict) else "is not a JSON object"
        raise NotebookError(
            f"{path} is JSON but not a Jupyter notebook (it {found}; a notebook is an object "
            "with `nbformat` and `cells`); pass an .ipynb file"
        )
    try:
        notebook = nbformat.reads(text, as_version=4)  # type: ignore[no-untyped-call]
        nbformat.validate(notebook)
    except Exception as exc:  # nbformat raises several unrelated types for bad input
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NotebookError(
            f"{path} is not a valid Jupyter notebook ({first_line}); open and re-save it in "
            "Jupyter, or check that it is an .ipynb file"
        ) from exc
    return notebook, hashlib.sha256(raw).hexdigest()


def first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip():
            return line.strip()[:60]
    return "(empty)"


def describe_cell(index: int, cell: Any) -> str:
    return f"cell {index} (`{first_line(cell.source)}`)"


def code_cells(notebook: Any) -> list[tuple[int, Any]]:
    return [(i, c) for i, c in enumerate(notebook.cells) if c.cell_type == "code"]


def select_cell(notebook: Any, selector: str) -> SelectedCell:
    """The one code cell ``selector`` names: ``#N`` (N-th code cell, 0-based), a tag, or an id."""
    cells = code_cells(notebook)
    if not cells:
        raise CellSelectionError("the notebook has no code cells")
    if selector.startswith("#"):
        try:
            n = int(selector[1:])
        except ValueError:
            raise CellSelectionError(
                f"cell selector {selector!r} is not of the form #N (N a number)"
            ) from None
        if not 0 <= n < len(cells):
            raise CellSelectionError(
                f"cell selector {selector} is out of range: the notebook has {len(cells)} code "
                f"cells (#0 to #{len(cells) - 1})"
            )
        index, cell = cells[n]
        return SelectedCell(index, n, cell, None)
    by_tag = [
        (k, i, c)
        for k, (i, c) in enumerate(cells)
        if selector in c.get("metadata", {}).get("tags", [])
    ]
    by_id = [(k, i, c) for k, (i, c) in enumerate(cells) if c.get("id") == selector]
    matches = by_tag + [m for m in by_id if m not in by_tag]
    if len(matches) == 1:
        k, i, c = matches[0]
        return SelectedCell(i, k, c, selector if by_tag else None)
    if not matches:
        tags = sorted({t for _, c in cells for t in c.get("metadata", {}).get("tags", [])})
        raise CellSelectionError(
            f"no code cell has the tag or id {selector!r}; tags in this notebook: "
            f"{', '.join(tags) or 'none'}; or select by position with #0 to #{len(cells) - 1}"
        )
    listed = ", ".join(f"#{k} {describe_cell(i, c)}" for k, i, c in matches)
    raise CellSelectionError(
        f"cell selector {selector!r} matches {len(matches)} cells: {listed}; select one by its "
        "position (#N) or give each a distinct tag"
    )


def parameters_cell(notebook: Any, before: int) -> Any | None:
    """The last code cell tagged ``parameters`` before position ``before`` (papermill's rule)."""
    found = None
    for index, cell in code_cells(notebook):
        if index < before and "parameters" in cell.get("metadata", {}).get("tags", []):
            found = cell
    return found
