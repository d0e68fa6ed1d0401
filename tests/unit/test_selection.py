"""The rules that choose a service's inputs and outputs."""

import pytest

from checkpoint2svc.errors import SignatureError
from checkpoint2svc.signature.selection import select_inputs, select_outputs

READS = ["threshold", "model", "rows"]


def test_explicit_inputs_win() -> None:
    choice = select_inputs(["rows"], ["threshold"], READS, {"rows", "threshold"})
    assert choice.names == ("rows",) and not choice.note


def test_empty_explicit_inputs_mean_none() -> None:
    assert select_inputs([], ["threshold"], READS, {"threshold"}).names == ()


def test_parameters_cell_variables_the_cell_reads() -> None:
    choice = select_inputs(None, ["threshold", "unused"], READS, {"threshold", "unused"})
    assert choice.names == ("threshold",)


def test_no_parameters_cell_means_no_inputs_with_a_note_naming_candidates() -> None:
    choice = select_inputs(None, None, READS, set(READS), candidates=["threshold"])
    assert choice.names == ()
    assert "no cell is tagged `parameters`, so the service takes no inputs" in choice.note
    assert "--inputs threshold" in choice.note


def test_no_candidates_note_still_says_how_to_add_inputs() -> None:
    note = select_inputs(None, None, READS, set(READS)).note
    assert "tag a cell `parameters` or pass --inputs a,b" in note


def test_an_explicit_input_the_cell_never_reads_is_refused() -> None:
    with pytest.raises(SignatureError, match=r"never reads.*--inputs ''"):
        select_inputs(["other"], None, READS, set(READS))


def test_a_parameters_cell_the_cell_never_reads_points_to_empty_inputs() -> None:
    with pytest.raises(SignatureError, match=r"reads none of the variables.*--inputs ''"):
        select_inputs(None, ["alpha"], READS, {"alpha"})


def test_an_input_with_no_value_before_the_cell_is_refused() -> None:
    with pytest.raises(SignatureError, match="'rows' has no value before the target cell"):
        select_inputs(["rows"], None, READS, set())


def test_outputs_default_to_assignments_without_underscores() -> None:
    assert select_outputs(None, ["y", "_tmp", "z"], ["y", "_tmp", "z", "f"]) == ("y", "z")


def test_explicit_outputs_must_be_bound_by_the_cell() -> None:
    assert select_outputs(["f"], ["y"], ["y", "f"]) == ("f",)
    with pytest.raises(SignatureError, match="never assigns"):
        select_outputs(["q"], ["y"], ["y"])


def test_a_cell_that_assigns_nothing_has_no_outputs() -> None:
    with pytest.raises(SignatureError, match="assigns no variable"):
        select_outputs(None, ["_x"], ["_x"])
