import nbformat
import pytest

from checkpoint2svc.checkpoint.notebook import parameters_cell, select_cell
from checkpoint2svc.errors import CellSelectionError


def make_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# title"),
        nbformat.v4.new_code_cell("import math", id="setup"),
        nbformat.v4.new_code_cell("x = 1", id="params", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("y = x + 1", id="target", metadata={"tags": ["predict"]}),
        nbformat.v4.new_code_cell("z = 3", id="twin1", metadata={"tags": ["dup"]}),
        nbformat.v4.new_code_cell("z = 4", id="twin2", metadata={"tags": ["dup"]}),
    ]
    return nb


def test_selectors() -> None:
    nb = make_notebook()
    assert select_cell(nb, "predict").index == 3
    assert select_cell(nb, "predict").by_tag == "predict"
    assert select_cell(nb, "#2").index == 3  # the third code cell
    assert select_cell(nb, "setup").index == 1
    assert parameters_cell(nb, 3).source == "x = 1"
    assert parameters_cell(nb, 2) is None


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("nope", "no code cell has the tag or id 'nope'; tags in this notebook: dup, parameters"),
        ("dup", "matches 2 cells: #3 cell 4 (`z = 3`), #4 cell 5 (`z = 4`)"),
        ("#9", "out of range: the notebook has 5 code cells (#0 to #4)"),
        ("#x", "not of the form #N"),
    ],
)
def test_bad_selectors_explain_themselves(selector: str, message: str) -> None:
    with pytest.raises(CellSelectionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        select_cell(make_notebook(), selector)
