import ast

import numpy as np
import pandas as pd

from checkpoint2svc.signature.infer import infer_type, type_from_annotation
from checkpoint2svc.wire.type_ir import Json, type_from_dict


def render(value: object) -> tuple[str, list[str]]:
    warnings: list[str] = []
    return infer_type(value, "x", warnings.append).render(), warnings


def test_scalars_and_containers() -> None:
    assert render(True) == ("bool", [])
    assert render(3) == ("int", [])
    assert render(np.float32(1.5)) == ("float", [])
    assert render(b"\x00") == ("bytes", [])
    assert render([1, 2.5]) == ("list[float]", [])
    assert render([1, None]) == ("list[optional[int]]", [])
    assert render({"left": 1, "right": "a"}) == ("{left: int, right: str}", [])
    assert render({"not an id": 1, "b c": 2}) == ("dict[str, int]", [])
    assert render([{"a": 1}, {"a": 2}]) == ("list[{a: int}]", [])


def test_tensor_and_table() -> None:
    assert render(np.zeros((4, 28, 28), np.uint8))[0] == "tensor[uint8, (-1, 28, 28)]"
    assert render(np.arange(3.0))[0] == "tensor[float64, (-1)]"
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [0.5, 1.0], "d": [True, False]})
    assert render(frame)[0] == "table{a: int64, b: string, c: float64, d: bool}"


def test_unknown_types_fall_back_to_json_with_a_warning_naming_the_variable() -> None:
    for value in (None, [1, "a"], [], object()):
        rendered, warnings = render(value)
        assert "json" in rendered
        assert warnings and warnings[0].startswith("x")


def test_annotations_win_over_values() -> None:
    def typed(annotation: str, value: object) -> str:
        expr = ast.parse(annotation, mode="eval").body
        result = type_from_annotation(expr, value, "x", lambda _: None)
        return result.render() if result else "none"

    assert typed("list[float]", [1, 2]) == "list[float]"
    assert typed("float", 1) == "float"
    assert typed("int | None", 1) == "optional[int]"
    assert typed("Optional[str]", None) == "optional[str]"
    assert typed("dict[str, int]", {"a": 1}) == "dict[str, int]"
    assert typed("np.ndarray", np.zeros((2, 3), np.float32)) == "tensor[float32, (-1, 3)]"
    assert typed("Any", 5) == "json"
    assert typed("MyAlias", 5) == "none"


def test_type_dict_round_trip() -> None:
    frame = pd.DataFrame({"a": [1]})
    for value in ([{"a": [1.0]}], {"k v": [None, 1]}, np.zeros((2, 2)), frame, "s"):
        type_ = infer_type(value, "x", lambda _: None)
        assert type_from_dict(type_.to_dict()) == type_
    assert type_from_dict({"kind": "json"}) == Json()
