"""The fidelity harness's pure rules: result cells, exclusion, exact JSON equality, the corpus."""

from __future__ import annotations

import json
import math
from typing import Any

import nbformat
import pytest

from tests.fidelity import build_notebooks
from tests.fidelity.corpus import Outcome, Report, corpus_notebooks
from tests.fidelity.rules import (
    assigned_names,
    classify,
    first_difference,
    json_equal,
    reason_key,
    result_cells,
)


@pytest.mark.parametrize(
    ("source", "names"),
    [
        ("import numpy as np\nfrom pandas import DataFrame", ()),
        ("def f(x):\n    y = x + 1\n    return y\n\nclass A:\n    size = 3", ()),
        ("x = 1", ("x",)),
        ("_hidden = 1\n__ = 2", ()),
        ('df["ratio"] = df["a"] / df["b"]\nobj.attr = 3', ()),
        ("beta, *_ = lstsq(a, b)", ("beta",)),
        ("a = b = 2\nc, (d, e) = 1, (2, 3)", ("a", "b", "c", "d", "e")),
        ("x: int = 3\ny: float", ("x",)),
        ("total += 1", ("total",)),
        (
            "for i in range(3):\n    seen = i\nwith open(p) as fh:\n    text = fh.read()",
            ("seen", "text"),
        ),
        ("if (n := len(xs)) > 2:\n    big = True", ("n", "big")),
        ("squares = [k * k for k in range(4)]\nf = lambda v: (w := v)", ("squares", "f")),
        ("def make():\n    return 1\n\n\nvalue = make()", ("value",)),
        ("%matplotlib inline\nimport matplotlib.pyplot as plt\nfig = plt.figure()", ("fig",)),
        ("x = 1\nx = 2\ny = x", ("x", "y")),
    ],
)
def test_assigned_names(source: str, names: tuple[str, ...]) -> None:
    assert assigned_names(source) == names


def test_result_cells_count_code_cells_only() -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# title\nx = 1"),
        nbformat.v4.new_code_cell("import numpy as np"),
        nbformat.v4.new_code_cell("rng = np.random.default_rng(0)"),
        nbformat.v4.new_markdown_cell("text"),
        nbformat.v4.new_code_cell("def f():\n    return 2"),
        nbformat.v4.new_code_cell("this is not python ("),
        nbformat.v4.new_code_cell("answer = f()  # the result\nlabel = 'x'"),
    ]
    cells = result_cells(notebook)
    assert [(c.code_index, c.cell_index, c.names) for c in cells] == [
        (1, 2, ("rng",)),
        (4, 6, ("answer", "label")),
    ]
    assert cells[1].first_line == "answer = f()  # the result"


def test_nan_equals_nan_and_floats_are_bit_equal() -> None:
    nan = float("nan")
    assert json_equal([1.5, nan, {"a": nan}], [1.5, nan, {"a": nan}])
    assert json_equal(json.loads("[NaN]"), [math.nan])
    assert not json_equal(0.0, -0.0)
    assert not json_equal(0.1 + 0.2, 0.3)
    assert not json_equal(nan, None)
    assert json_equal(None, None)


def test_json_types_must_match() -> None:
    assert not json_equal(1, 1.0)
    assert not json_equal(True, 1)
    assert not json_equal("1", 1)
    assert not json_equal([1, 2], (1, 2))
    assert json_equal({"a": 1, "b": [1, "x"]}, {"b": [1, "x"], "a": 1})


def test_first_difference_names_the_place() -> None:
    expected = {"coef": [1.0, 2.0], "meta": {"n": 3}}
    assert first_difference(expected, {"coef": [1.0, 2.5], "meta": {"n": 3}}, "out") == (
        "out.coef[1]: expected 2.0, got 2.5"
    )
    assert "keys differ" in str(first_difference(expected, {"coef": [1.0, 2.0]}, "out"))
    assert "expected 2 items, got 1" in str(first_difference([1, 2], [1], "v"))
    long = first_difference("a" * 200, "b", "s")
    assert long is not None and len(long) < 120


def _wire(value: object, kind: str = "float") -> dict[str, Any]:
    return {"type": {"kind": kind}, "type_text": kind, "b64": value, "list": value}


def test_classify_measured_nondeterministic_and_excluded() -> None:
    fit = {"python_type": "statsmodels.Results", "error": "ValueConversionError: no JSON form"}
    same = {"r2": _wire(0.5), "res": fit}
    assert classify(same, same) == ("measured", "")
    status, why = classify(
        {"t": _wire(1.0), "n": _wire(3, "int")}, {"t": _wire(2.0), "n": _wire(3, "int")}
    )
    assert status == "nondeterministic" and why.startswith("t: expected 1.0")
    assert classify({"x": _wire(float("nan"))}, {"x": _wire(float("nan"))})[0] == "measured"
    assert classify({"x": _wire(1, "int")}, {"x": _wire(1.0)})[0] == "nondeterministic"
    status, why = classify({"res": fit}, {"res": fit})
    assert status == "no wire value" and "no JSON form" in why
    assert classify(same, None)[0] == "reference failed"


def test_reason_key_groups_the_same_failure() -> None:
    a = reason_key("pin", "error: variable 'rng' (numpy.random.Generator) at /tmp/x/y.ckpt line 12")
    b = reason_key("pin", "error: variable 'model' (numpy.random.Generator) at /tmp/z.ckpt line 3")
    assert a == b == "pin: error: variable '…' (numpy.random.Generator) at PATH line N"
    assert reason_key("run", "output rolls differs (rolls[0]: expected 5, got 7)") == (
        "run: an output differs from the plain run (a value differs)"
    )
    assert reason_key("serve", "output d differs (d: keys differ (missing ['a']))").endswith(
        "(its keys differ)"
    )


def test_report_ends_with_the_summary_line() -> None:
    outcomes = [
        Outcome("nb", 1, "x = 1", ["x"], "reproduced"),
        Outcome(
            "nb", 2, "y = f()", ["y"], "failed", "run", "output y differs (y: expected 1, got 2)"
        ),
        Outcome("nb", 3, "t = time.time()", ["t"], "nondeterministic", reason="t: ..."),
    ]
    report = Report(outcomes, seconds=12.0, reference_seconds=3.0, jobs=2)
    lines = report.table().splitlines()
    assert lines[-1] == "reproduced: 1 of 2 result cells (50.0%)"
    assert report.fraction == 0.5
    assert any("1 nondeterministic" in line for line in lines)
    assert any(line.strip().startswith("1  run: an output differs") for line in lines)
    assert report.to_json()["measured"] == 2
    assert Report([], 0, 0, 1).summary_line() == "reproduced: 0 of 0 result cells (0.0%)"


def test_the_committed_corpus_is_what_the_builder_writes() -> None:
    assert build_notebooks.stale_files() == [], "run: python -m tests.fidelity.build_notebooks"


def test_the_corpus_looks_like_real_notebooks() -> None:
    notebooks = corpus_notebooks()
    assert len(notebooks) >= 22
    total = 0
    for path in notebooks:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        assert path.stat().st_size < 32_000, path
        cells = notebook.cells
        assert all(not c.get("outputs") for c in cells if c.cell_type == "code"), path
        assert all("parameters" not in c.metadata.get("tags", []) for c in cells), path
        assert any(c.cell_type == "markdown" for c in cells), path
        found = result_cells(notebook)
        assert 3 <= len(found) <= 8, path
        total += len(found)
    assert total >= 3 * len(notebooks)
