"""Infer a variable's type IR from an annotation and from the value seen at pin time."""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from checkpoint2svc.wire.type_ir import (
    TABLE_DTYPES,
    TENSOR_DTYPES,
    Column,
    DictOf,
    Field,
    Json,
    ListOf,
    Optional,
    Record,
    Scalar,
    Series,
    Table,
    Tensor,
    TypeIR,
)

Warn = Callable[[str], None]
MAX_RECORD_FIELDS = 64


def _numpy() -> Any:
    return sys.modules.get("numpy")


def _pandas() -> Any:
    return sys.modules.get("pandas")


def is_identifier(key: object) -> bool:
    return isinstance(key, str) and key.isidentifier() and not key.startswith("_")


def tensor_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Free the leading (batch) dimension; the others stay as seen at pin time."""
    return (-1, *shape[1:]) if shape else ()


def _infer_tensor(value: Any, where: str, warn: Warn) -> TypeIR:
    dtype = str(value.dtype)
    if dtype not in TENSOR_DTYPES:
        warn(f"{where}: numpy dtype {dtype} has no tensor form; it is served as json")
        return Json()
    return Tensor(dtype, tensor_shape(tuple(value.shape)))


def _column_dtype(dtype: Any) -> str | None:
    pd = _pandas()
    text = str(dtype)
    if text in TABLE_DTYPES:
        return text
    if text in ("object", "str", "string") or (
        pd is not None and pd.api.types.is_string_dtype(dtype)
    ):
        return "string"
    if text.startswith("datetime64"):
        return "datetime64[ns]"
    lowered = text.lower()  # pandas nullable dtypes: Int64, Float64, boolean
    if lowered in TABLE_DTYPES:
        return lowered
    if lowered == "boolean":
        return "bool"
    return None


def _infer_table(value: Any, where: str, warn: Warn) -> TypeIR:
    columns = []
    for name, dtype in value.dtypes.items():
        column = _column_dtype(dtype)
        if not isinstance(name, str) or column is None:
            warn(f"{where}: column {name!r} of dtype {dtype} has no table form; served as json")
            return Json()
        columns.append(Column(name, column))
    return Table(tuple(columns))


def _series_dtype(values: Any) -> tuple[str | None, str]:
    """The table dtype of a Series' values (or of an index), or None and why it has none: an
    ``object`` dtype counts as ``string`` only when it holds nothing but strings (or gaps)."""
    column = _column_dtype(values.dtype)
    if column is None:
        return None, f"dtype {values.dtype} is not bool, an integer, a float, string or datetime64"
    if column == "string" and str(values.dtype) == "object":
        held = _pandas().api.types.infer_dtype(values, skipna=True)
        if held not in ("string", "empty"):
            return None, f"dtype object holds {held} values, not strings"
    return column, ""


def _infer_series(value: Any, where: str, warn: Warn) -> TypeIR:
    index = value.index
    if index.nlevels > 1:
        warn(f"{where}: the Series has a MultiIndex ({index.nlevels} levels), which has no "
             "series form; served as json")  # fmt: skip
        return Json()
    dtype, why = _series_dtype(value)
    if dtype is None:
        warn(f"{where}: the Series' values have no series form ({why}); served as json")
        return Json()
    index_dtype, why = _series_dtype(index)
    if index_dtype is None:
        warn(f"{where}: the Series' index has no series form ({why}); served as json")
        return Json()
    name = value.name
    if name is not None and not isinstance(name, str):
        warn(f"{where}: the Series' name {name!r} is not a string; it travels as {str(name)!r}")
        name = str(name)
    return Series(dtype, index_dtype, name)


def _unify(types: list[TypeIR]) -> TypeIR | None:
    """The one type all of ``types`` fit, or None when they disagree."""
    distinct = list(dict.fromkeys(types))
    if len(distinct) == 1:
        return distinct[0]
    if set(distinct) == {Scalar("int"), Scalar("float")}:
        return Scalar("float")
    unnamed = {replace(t, name=None) if isinstance(t, Series) else t for t in distinct}
    if len(unnamed) == 1:  # Series that differ only in their names
        return unnamed.pop()
    nullable = [t for t in distinct if isinstance(t, Optional)]
    plain = [t for t in distinct if not isinstance(t, Optional)]
    if nullable and len(plain) == 1 and all(t.inner == plain[0] for t in nullable):
        return Optional(plain[0])
    return None


def _infer_sequence(items: list[Any], where: str, warn: Warn) -> TypeIR:
    if not items:
        warn(f"{where}: the list was empty at pin time, so its item type is unknown (json)")
        return ListOf(Json())
    has_none = any(item is None for item in items)
    types = [
        infer_type(item, f"{where}[{i}]", warn) for i, item in enumerate(items) if item is not None
    ]
    item = _unify(types) if types else None
    if item is None:
        warn(f"{where}: list items have different types; items are served as json")
        return ListOf(Json())
    return ListOf(Optional(item) if has_none and not isinstance(item, Optional) else item)


def _infer_mapping(value: dict[Any, Any], where: str, warn: Warn) -> TypeIR:
    if not all(isinstance(k, str) for k in value):
        warn(f"{where}: dict keys are not all strings; served as json")
        return Json()
    if value and len(value) <= MAX_RECORD_FIELDS and all(is_identifier(k) for k in value):
        return Record(
            # str(k): a numpy.str_ key (from an array of names) is a plain field name
            tuple(Field(str(k), infer_type(v, f"{where}.{k}", warn)) for k, v in value.items())
        )
    if not value:
        warn(f"{where}: the dict was empty at pin time, so its value type is unknown (json)")
        return DictOf(Json())
    types = [infer_type(v, f"{where}[{k!r}]", warn) for k, v in value.items()]
    unified = _unify(types)
    if unified is None:
        warn(f"{where}: dict values have different types; served as json")
        return Json()
    return DictOf(unified)


def infer_type(value: Any, where: str, warn: Warn) -> TypeIR:
    """The most precise IR type for ``value``; ``warn`` hears about every fallback to json."""
    if value is None:
        warn(f"{where}: the value was None at pin time, so its type is unknown (json)")
        return Json()
    if isinstance(value, bool):
        return Scalar("bool")
    if isinstance(value, int):
        return Scalar("int")
    if isinstance(value, float):
        return Scalar("float")
    if isinstance(value, str):
        return Scalar("str")
    if isinstance(value, bytes | bytearray):
        return Scalar("bytes")
    np = _numpy()
    if np is not None:
        if isinstance(value, np.ndarray):
            return _infer_tensor(value, where, warn)
        if isinstance(value, np.bool_):
            return Scalar("bool")
        if isinstance(value, np.integer):
            return Scalar("int")
        if isinstance(value, np.floating):
            return Scalar("float")
        if isinstance(value, np.str_):
            return Scalar("str")
    pd = _pandas()
    if pd is not None and isinstance(value, pd.DataFrame):
        return _infer_table(value, where, warn)
    if pd is not None and isinstance(value, pd.Series):
        return _infer_series(value, where, warn)
    if isinstance(value, list | tuple):
        return _infer_sequence(list(value), where, warn)
    if isinstance(value, dict):
        return _infer_mapping(value, where, warn)
    warn(f"{where}: values of type {type(value).__qualname__} have no precise type; served as json")
    return Json()


_SCALAR_NAMES = {"bool": "bool", "int": "int", "float": "float", "str": "str", "bytes": "bytes"}


def _dotted(expr: ast.expr) -> str:
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        return f"{_dotted(expr.value)}.{expr.attr}"
    if isinstance(expr, ast.Constant) and expr.value is None:
        return "None"
    return ""


def type_from_annotation(annotation: ast.expr, value: Any, where: str, warn: Warn) -> TypeIR | None:
    """The IR type an annotation names, refined by the value; None when it names no IR type.

    Annotations are read, never evaluated: ``list[float]``, ``dict[str, int]``, ``Optional[T]``,
    ``T | None``, ``np.ndarray`` (dtype and shape from the value), ``pd.DataFrame``,
    ``pd.Series`` (dtypes and name from the value), ``Any``.
    """
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        try:
            annotation = ast.parse(annotation.value, mode="eval").body
        except SyntaxError:
            return None
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        sides = [annotation.left, annotation.right]
        others = [s for s in sides if _dotted(s) != "None"]
        if len(others) == 1:
            inner = type_from_annotation(others[0], value, where, warn)
            return Optional(inner) if inner is not None else None
        return None
    name = _dotted(annotation if not isinstance(annotation, ast.Subscript) else annotation.value)
    short = name.rsplit(".", 1)[-1]
    if not isinstance(annotation, ast.Subscript):
        if short in _SCALAR_NAMES:
            return Scalar(_SCALAR_NAMES[short])  # type: ignore[arg-type]
        if short in ("ndarray", "NDArray", "DataFrame", "Series"):
            return infer_type(value, where, warn) if value is not None else None
        if short == "Any":
            return Json()
        if short in ("list", "List", "dict", "Dict"):
            return infer_type(value, where, warn) if value is not None else None
        return None
    args = annotation.slice
    arg_list = list(args.elts) if isinstance(args, ast.Tuple) else [args]
    if short in ("list", "List", "Sequence", "tuple", "Tuple") and len(arg_list) >= 1:
        first = value[0] if isinstance(value, list | tuple) and value else None
        item = type_from_annotation(arg_list[0], first, f"{where}[0]", warn)
        return ListOf(item) if item is not None else None
    if short in ("dict", "Dict", "Mapping") and len(arg_list) == 2:
        if _dotted(arg_list[0]) != "str":
            return None
        sample = next(iter(value.values()), None) if isinstance(value, dict) else None
        item = type_from_annotation(arg_list[1], sample, f"{where}[*]", warn)
        return DictOf(item) if item is not None else None
    if short == "Optional" and len(arg_list) == 1:
        inner = type_from_annotation(arg_list[0], value, where, warn)
        return Optional(inner) if inner is not None else None
    if short in ("ndarray", "NDArray"):
        return infer_type(value, where, warn) if value is not None else None
    return None
