import numpy as np
import pandas as pd
import pytest

from checkpoint2svc.errors import ValueConversionError
from checkpoint2svc.signature.infer import infer_type
from checkpoint2svc.wire.json_values import decode_json, encode_json
from checkpoint2svc.wire.type_ir import Field, ListOf, Record, Scalar, Tensor


def round_trip(value: object, tensors: str = "list") -> object:
    type_ = infer_type(value, "x", lambda _: None)
    return decode_json(encode_json(value, type_, "x", tensors=tensors), type_, "x")  # type: ignore[arg-type]


def test_round_trips() -> None:
    assert round_trip({"a": [1, 2], "b": b"\x00\xff"}) == {"a": [1, 2], "b": b"\x00\xff"}
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    for form in ("list", "b64"):
        back = round_trip(array, form)
        assert isinstance(back, np.ndarray) and back.dtype == np.float32
        np.testing.assert_array_equal(back, array)
    frame = pd.DataFrame({"city": ["Oslo", "Lima"], "celsius": [3.5, 19.0], "n": [1, 2]})
    pd.testing.assert_frame_equal(round_trip(frame), frame, check_dtype=False)


def test_tables_accept_columns_or_rows() -> None:
    type_ = infer_type(pd.DataFrame({"a": [1], "b": ["x"]}), "t", lambda _: None)
    by_rows = decode_json([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}], type_, "t")
    by_columns = decode_json({"a": [1, 2], "b": ["x", "y"]}, type_, "t")
    pd.testing.assert_frame_equal(by_rows, by_columns)
    assert list(by_rows["a"]) == [1, 2]


@pytest.mark.parametrize(
    ("data", "type_", "field", "reason"),
    [
        (["1"], ListOf(Scalar("float")), "x[0]", "expected a number, got a string"),
        (1.5, Scalar("int"), "x", "expected an integer"),
        (True, Scalar("int"), "x", "expected an integer, got a boolean"),
        ({"a": 1, "zz": 2}, Record((Field("a", Scalar("int")),)), "x.zz", "unknown field"),
        ([[1, 2], [3]], Tensor("float32", (-1, 2)), "x", "rectangular"),
        ([[1, 2, 3]], Tensor("float32", (-1, 2)), "x", "expected shape (*, 2), got (1, 3)"),
        ({"dtype": "float32", "shape": [2], "b64": "AAAA"}, Tensor("float32", (-1,)), "x.b64",
         "do not fill shape"),
        ("%%%", Scalar("bytes"), "x", "base64"),
    ],
)  # fmt: skip
def test_bad_values_name_the_field(data: object, type_: object, field: str, reason: str) -> None:
    with pytest.raises(ValueConversionError) as info:
        decode_json(data, type_, "x")  # type: ignore[arg-type]
    assert info.value.field == field
    assert reason in info.value.reason


def test_an_empty_batch_of_nested_lists_takes_its_shape_from_the_type() -> None:
    empty = decode_json([], Tensor("float32", (-1, 3)), "x")
    assert empty.shape == (0, 3) and empty.dtype == np.float32


def test_numpy_string_keys_become_plain_field_names() -> None:
    import numpy as np
    import orjson

    from checkpoint2svc.signature.infer import infer_type

    value = {np.str_("setosa"): 0.9, np.str_("virginica"): 0.8}
    type_ = infer_type(value, "recall", lambda message: None)
    assert type_.render() == "{setosa: float, virginica: float}"
    assert orjson.loads(orjson.dumps(encode_json(value, type_, "recall"))) == {
        "setosa": 0.9, "virginica": 0.8,
    }  # fmt: skip
    many = {np.str_(f"w-{i}"): i for i in range(3)}  # not identifiers: dict[str, int]
    encoded = encode_json(many, infer_type(many, "m", lambda message: None), "m")
    assert [type(k) for k in encoded] == [str, str, str]
