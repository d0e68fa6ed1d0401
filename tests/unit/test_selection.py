"""The rules that choose a service's inputs and outputs, and check its examples' size."""

import pytest

from checkpoint2svc.errors import SignatureError
from checkpoint2svc.signature.selection import (
    OutputCandidate,
    OutputChoice,
    example_size_warning,
    is_simple_value,
    select_inputs,
    select_outputs,
    served_outputs,
)

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


@pytest.mark.parametrize("value", [3, 2.5, True, "text", [1, 2, 3], ("a", "b"), [0] * 64])
def test_simple_values_are_scalars_and_short_lists_of_scalars(value: object) -> None:
    assert is_simple_value(value)


@pytest.mark.parametrize("value", [None, {"a": 1}, [[1]], [0] * 65, object(), b"bytes"])
def test_other_values_are_not_simple(value: object) -> None:
    assert not is_simple_value(value)


def test_outputs_with_a_wire_type_are_served_in_order() -> None:
    choice = served_outputs([OutputCandidate("b"), OutputCandidate("a")], explicit=False)
    assert choice == OutputChoice(("b", "a"))


def test_outputs_without_a_wire_type_are_left_out_with_a_warning() -> None:
    candidates = [OutputCandidate("r2"), OutputCandidate("results", "statsmodels.Results")]
    choice = served_outputs(candidates, explicit=False)
    assert choice.names == ("r2",)
    assert choice.warning == (
        "outputs left out, they have no wire type: results (statsmodels.Results); the service "
        "serves r2 (choose with --outputs)"
    )


def test_an_explicit_output_without_a_wire_type_is_refused() -> None:
    candidates = [OutputCandidate("r2"), OutputCandidate("results", "statsmodels.Results")]
    with pytest.raises(SignatureError, match=r"--outputs names results \(statsmodels.Results\)"):
        served_outputs(candidates, explicit=True)


def test_no_output_with_a_wire_type_is_refused() -> None:
    with pytest.raises(SignatureError, match=r"none of the target cell's outputs.*model \(Lock\)"):
        served_outputs([OutputCandidate("model", "Lock")], explicit=False)


def test_an_example_that_fits_the_limit_says_nothing() -> None:
    assert example_size_warning("input", {"x": [1, 2, 3]}, limit=100, strict=True) is None


def test_an_example_over_the_limit_is_a_warning_or_under_strict_an_error() -> None:
    examples = {"x": "a" * (3 << 20)}
    warning = example_size_warning("output", examples, limit=2 << 20, strict=False)
    assert warning is not None
    assert warning.startswith("the example output is 3.0 MiB as JSON, over the 2 MiB message")
    with pytest.raises(SignatureError, match=r"over the 2 MiB .* \(--strict\)$"):
        example_size_warning("output", examples, limit=2 << 20, strict=True)


def test_the_size_counts_the_example_as_sent() -> None:
    examples = {"x": 1}
    size = len('{"input":{"x":1}}')
    assert example_size_warning("input", examples, limit=size, strict=True) is None
    assert example_size_warning("input", examples, limit=size - 1, strict=False) is not None
