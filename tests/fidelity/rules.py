"""The harness's pure rules: which cells are result cells, when a cell is measured, and when two
JSON values are equal. No kernels, no processes: unit-tested in tests/unit/test_fidelity_rules.py.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from typing import Any, Literal

from checkpoint2svc.errors import SignatureError
from checkpoint2svc.signature.cell_analysis import analyze_cell, to_python

Status = Literal["measured", "nondeterministic", "no wire value", "reference failed"]


@dataclass(frozen=True)
class ResultCell:
    """A code cell that assigns at least one public name."""

    code_index: int
    """Position among the notebook's code cells: what ``--cell '#N'`` selects."""
    cell_index: int
    """Position among all the notebook's cells."""
    names: tuple[str, ...]
    """The public names it assigns, in order of first assignment."""
    first_line: str


def assigned_names(source: str) -> tuple[str, ...]:
    """The names a cell assigns (``=``, ``+=``, ``x: T = ...``, ``:=``) at its top level, minus
    those starting with ``_``; imports, ``def``, ``class`` and loop variables do not count.
    (The product's cell analysis, which pin's default outputs use too.)"""
    assigns = analyze_cell(to_python(source), "the cell").assigns
    return tuple(name for name in assigns if not name.startswith("_"))


def first_line(source: str) -> str:
    return next((line.strip() for line in source.splitlines() if line.strip()), "(empty)")


def result_cells(notebook: Any) -> list[ResultCell]:
    """The result cells of an nbformat notebook, in order (a cell that does not parse is none)."""
    cells: list[ResultCell] = []
    code = [(i, cell) for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    for code_index, (cell_index, cell) in enumerate(code):
        try:
            names = assigned_names(cell.source)
        except SignatureError:  # not valid Python
            continue
        if names:
            cells.append(ResultCell(code_index, cell_index, names, first_line(cell.source)))
    return cells


# ---------------------------------------------------------------------------- JSON equality


def _same_float(a: float, b: float) -> bool:
    if math.isnan(a) and math.isnan(b):
        return True
    return struct.pack("<d", a) == struct.pack("<d", b)  # bit-equal: 0.0 is not -0.0


def excerpt(value: Any, limit: int = 48) -> str:
    text = json.dumps(value, allow_nan=True, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def first_difference(expected: Any, actual: Any, path: str = "") -> str | None:
    """Where ``actual`` first differs from ``expected`` (JSON data), or None when they are equal.

    Exact: types must match (1 is not 1.0, True is not 1), floats bit-equal, but NaN equals NaN.
    """
    if isinstance(expected, float) and isinstance(actual, float):
        if _same_float(expected, actual):
            return None
        return f"{path}: expected {expected!r}, got {actual!r}"
    if type(expected) is not type(actual):
        return f"{path}: expected {excerpt(expected)}, got {excerpt(actual)}"
    if isinstance(expected, dict):
        if set(expected) != set(actual):
            missing = [k for k in expected if k not in actual]
            extra = [k for k in actual if k not in expected]
            return f"{path}: keys differ (missing {missing[:3]}, unexpected {extra[:3]})"
        for key in expected:
            found = first_difference(expected[key], actual[key], f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(expected, list):
        if len(expected) != len(actual):
            return f"{path}: expected {len(expected)} items, got {len(actual)}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            found = first_difference(e, a, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    if expected == actual:
        return None
    return f"{path}: expected {excerpt(expected)}, got {excerpt(actual)}"


def json_equal(expected: Any, actual: Any) -> bool:
    return first_difference(expected, actual) is None


# ---------------------------------------------------------------------------- classification

Captured = dict[str, dict[str, Any]]
"""One reference run's capture of one cell: name -> {"type", "b64", "list", "python_type"} when
the value has a wire form, else {"error", "python_type"}."""


def has_wire_value(entry: dict[str, Any]) -> bool:
    return "type" in entry and "error" not in entry


def classify(first: Captured | None, second: Captured | None) -> tuple[Status, str]:
    """Whether a result cell is measured, from its captures in two plain runs; and why not.

    Measured: at least one name has a wire value, and every wire value (and its type) is the same
    in both runs."""
    if first is None or second is None:
        return "reference failed", "the plain run stopped before this cell"
    wired = [name for name, entry in first.items() if has_wire_value(entry)]
    if not wired:
        reasons = "; ".join(
            f"{name}: {entry.get('error', 'no wire value')}" for name, entry in first.items()
        )
        return "no wire value", reasons
    changed = []
    for name in first:
        a, b = first[name], second.get(name, {})
        if has_wire_value(a) != has_wire_value(b):
            changed.append(f"{name} has a wire value in one plain run only")
        elif has_wire_value(a):
            if a["type"] != b["type"]:
                changed.append(f"{name}: its type differs between plain runs")
            else:
                found = first_difference(a["b64"], b["b64"], name)
                if found is not None:
                    changed.append(found)
    if changed:
        return "nondeterministic", "; ".join(changed)
    return "measured", ""


# ---------------------------------------------------------------------------- failure reasons

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(\.\d+)?(e-?\d+)?")
_PATH = re.compile(r"(/[\w.+-]+)+")
_DIFFERS = re.compile(r"output \S+ differs \((.*)\)$")


def _difference_kind(detail: str) -> str:
    if "keys differ" in detail:
        return "its keys differ"
    if "items, got" in detail:
        return "its length differs"
    return "a value differs"


def reason_key(stage: str, reason: str) -> str:
    """A failure reason with names, numbers and paths blanked, to count distinct reasons."""
    differs = _DIFFERS.match(reason)
    if differs:
        return f"{stage}: an output differs from the plain run ({_difference_kind(differs[1])})"
    text = _PATH.sub("PATH", reason)
    text = _QUOTED.sub("'…'", text)
    text = _NUMBER.sub("N", text)
    return f"{stage}: {text}"[:200]
