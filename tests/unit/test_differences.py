"""Readable differences between served outputs and the pinned examples."""

import numpy as np

from checkpoint2svc.execution.differences import output_differences
from checkpoint2svc.wire.json_values import encode_json
from checkpoint2svc.wire.type_ir import ListOf, Scalar, Tensor

FLOATS = Tensor("float64", (-1,))


def tensor(values: list[float]) -> object:
    return encode_json(np.array(values), FLOATS, "t", tensors="b64")


def test_equal_outputs_have_no_difference() -> None:
    assert (
        output_differences({"t": tensor([1.0, 2.0])}, {"t": tensor([1.0, 2.0])}, {"t": FLOATS})
        == []
    )


def test_tensor_differences_are_numbers_not_base64() -> None:
    [line] = output_differences(
        {"t": tensor([1.0, 2.0, 3.0])}, {"t": tensor([1.0, 2.5, 3.0])}, {"t": FLOATS}
    )
    assert line == (
        "t: 1 of 3 values differ (largest absolute difference 0.5); [1]: expected 2, got 2.5"
    )


def test_shapes_and_lengths_are_named() -> None:
    [shape] = output_differences({"t": tensor([1.0])}, {"t": tensor([1.0, 2.0])}, {"t": FLOATS})
    assert shape == "t: shape (1,) expected, got (2,)"
    [length] = output_differences({"l": [1, 2]}, {"l": [1]}, {"l": ListOf(Scalar("int"))})
    assert length == "l: 2 items expected, got 1"


def test_form_only_ignores_values_but_not_types_or_shapes() -> None:
    types = {"x": Scalar("float"), "t": FLOATS}
    same_form = {"x": 0.5, "t": tensor([9.0, 9.0])}
    pinned = {"x": 0.1, "t": tensor([1.0, 2.0])}
    assert output_differences(pinned, same_form, types, form_only=True) == []
    other = {"x": "text", "t": tensor([1.0])}
    assert len(output_differences(pinned, other, types, form_only=True)) == 2


def test_integers_past_64_bits_compare_without_crashing() -> None:
    big = 2**70
    types = {"n": Scalar("int")}
    assert output_differences({"n": big}, {"n": big}, types) == []
    assert output_differences({"n": big}, {"n": big + 1}, types) == [
        f"n: expected {big}, got {big + 1} (difference 1)"
    ]
