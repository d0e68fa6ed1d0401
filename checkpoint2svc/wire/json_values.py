"""Convert Python values to and from their JSON form, as their IR type says.

Tensors travel as nested lists or as ``{"dtype", "shape", "b64"}``; tables as a list of row
objects (a dict of column lists is accepted too); series as ``{"index", "values", "name"}`` (a
``{label: value}`` object is accepted too when the labels are strings); bytes as base64 strings;
table and series date-times as RFC 3339 strings in UTC (``2024-01-01T10:00:00Z``; a naive pandas
time is taken as UTC).
"""

from __future__ import annotations

import base64
import binascii
import math
import sys
from collections.abc import Mapping
from typing import Any, Literal, assert_never

from .errors import ValueConversionError
from .type_ir import (
    DictOf,
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

TensorFormat = Literal["list", "b64"]


def _describe(data: Any) -> str:
    if data is None:
        return "null"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "an array", dict: "an object"}  # fmt: skip
    return names.get(type(data), type(data).__name__)


def plain_json(value: Any, field: str = "") -> Any:
    """Any value made of dicts, lists, scalars and numpy/pandas values, as plain JSON data."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, dict):
        return {str(k): plain_json(v, f"{field}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [plain_json(v, f"{field}[{i}]") for i, v in enumerate(items)]
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, pd.DataFrame):
        return plain_json(value.to_dict(orient="records"), field)
    if pd is not None and isinstance(value, pd.Series):
        return plain_json(value.tolist(), field)
    raise ValueConversionError(
        field,
        f"a {type(value).__qualname__} has no JSON form; convert it in the cell (e.g. to a "
        "list, dict or str)",
    )


def encode_json(value: Any, type_: TypeIR, field: str = "", tensors: TensorFormat = "list") -> Any:
    """``value`` as JSON data shaped by ``type_``."""
    if isinstance(type_, Optional):
        return None if value is None else encode_json(value, type_.inner, field, tensors)
    if isinstance(type_, Scalar):
        if type_.kind == "bytes":
            if not isinstance(value, bytes | bytearray):
                raise ValueConversionError(field, f"expected bytes, got {type(value).__name__}")
            return base64.b64encode(value).decode("ascii")
        python: Any = plain_json(value, field)
        expected: dict[str, type | tuple[type, ...]] = {
            "bool": bool, "int": int, "float": (int, float), "str": str
        }  # fmt: skip
        if not isinstance(python, expected[type_.kind]) or (
            type_.kind != "bool" and isinstance(python, bool)
        ):
            raise ValueConversionError(field, f"expected {type_.kind}, got {type(value).__name__}")
        return float(value) if type_.kind == "float" else python
    if isinstance(type_, ListOf):
        if not isinstance(value, list | tuple):
            raise ValueConversionError(field, f"expected a list, got {type(value).__name__}")
        return [encode_json(v, type_.item, f"{field}[{i}]", tensors) for i, v in enumerate(value)]
    if isinstance(type_, DictOf):
        if not isinstance(value, dict):
            raise ValueConversionError(field, f"expected a dict, got {type(value).__name__}")
        return {  # str(k): numpy.str_ keys are not JSON object keys to orjson
            str(k): encode_json(v, type_.value, f"{field}.{k}", tensors) for k, v in value.items()
        }
    if isinstance(type_, Record):
        if not isinstance(value, dict):
            raise ValueConversionError(field, f"expected a dict, got {type(value).__name__}")
        missing = [f.name for f in type_.fields if f.name not in value]
        if missing:
            raise ValueConversionError(field, f"missing key(s) {', '.join(missing)}")
        return {
            f.name: encode_json(value[f.name], f.type, f"{field}.{f.name}", tensors)
            for f in type_.fields
        }
    if isinstance(type_, Tensor):
        return _encode_tensor(value, type_, field, tensors)
    if isinstance(type_, Table):
        pd = sys.modules.get("pandas")
        if pd is None or not isinstance(value, pd.DataFrame):
            raise ValueConversionError(field, f"expected a DataFrame, got {type(value).__name__}")
        frame = value[[c.name for c in type_.columns]]
        for column in type_.columns:
            if column.dtype.startswith("datetime64"):
                times = _rfc3339(frame[column.name], f"{field}.{column.name}")
                # object: pandas 3 would store the strings as `str`, a None among them as NaN
                times_column = pd.Series(times, index=frame.index, dtype=object)
                frame = frame.assign(**{column.name: times_column})
        return plain_json(frame.to_dict(orient="records"), field)
    if isinstance(type_, Series):
        return _encode_series(value, type_, field)
    if isinstance(type_, Json):
        return plain_json(value, field)
    assert_never(type_)


def _encode_series(value: Any, type_: Series, field: str) -> dict[str, Any]:
    pd = sys.modules.get("pandas")
    if pd is None or not isinstance(value, pd.Series):
        raise ValueConversionError(field, f"expected a pandas Series, got {type(value).__name__}")
    if value.index.nlevels > 1:
        raise ValueConversionError(f"{field}.index", "a MultiIndex has no series form")
    return {
        "index": _column_json(pd.Series(value.index), type_.index, f"{field}.index"),
        "values": _column_json(value, type_.dtype, f"{field}.values"),
        "name": None if value.name is None else str(value.name),
    }


def _column_json(column: Any, dtype: str, field: str) -> list[Any]:
    """A column (a Series' values or its index) as an array of ``dtype`` elements: date-times
    as RFC 3339, a missing value (NaN, None, NaT) as null; numbers cast to ``dtype`` as the
    proto form does, so both carry the same values."""
    import numpy as np

    if dtype.startswith("datetime64"):
        return _rfc3339(column, field)
    missing = column.isna().to_numpy(dtype=bool)
    if dtype == "string":
        items: list[Any] = column.tolist()
        for row, item in enumerate(items):
            if missing[row]:
                items[row] = None
            elif not isinstance(item, str):
                raise ValueConversionError(
                    f"{field}[{row}]", f"expected a string, got {type(item).__name__}"
                )
        return items
    target = np.dtype(dtype)
    if target.kind != "f" and missing.any():
        raise ValueConversionError(
            f"{field}[{int(missing.argmax())}]", f"a missing value, which {dtype} cannot hold"
        )
    try:
        array = column.to_numpy()
        typed = array.astype(target, casting="unsafe" if array.dtype == object else "same_kind")
    except (TypeError, ValueError) as exc:
        raise ValueConversionError(
            field, f"cannot hold {dtype} values (it is {column.dtype}: {exc})"
        ) from exc
    numbers: list[Any] = typed.tolist()
    if missing.any():
        return [None if gone else item for item, gone in zip(numbers, missing, strict=True)]
    return numbers


def _rfc3339(column: Any, field: str) -> list[str | None]:
    """RFC 3339 date-times in UTC, as precise as the column needs (at least seconds); NaT is
    None. Naive times are taken as UTC, aware ones converted. The column's own unit is kept
    (pandas 3 holds 9999-12-31 in microseconds; nanoseconds would wrap it around)."""
    import numpy as np

    try:
        values = naive_utc(column).to_numpy()
    except (ValueError, TypeError) as exc:
        raise ValueConversionError(field, f"expected date-times ({exc})") from exc
    missing = np.isnat(values)
    ticks = values.view("int64")[~missing]
    per_second = _TICKS_PER_SECOND[np.datetime_data(values.dtype)[0]]
    unit: Literal["s", "ms", "us", "ns"] = next(
        (
            u
            for u, per in _FRACTIONS
            if per >= per_second or not (ticks % (per_second // per)).any()
        ),
        "ns",
    )
    text = np.datetime_as_string(values, unit=unit, timezone="UTC")
    return [None if gone else str(t) for t, gone in zip(text, missing, strict=True)]


_TICKS_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
_FRACTIONS: tuple[tuple[Literal["s", "ms", "us"], int], ...] = (
    ("s", 1), ("ms", 10**3), ("us", 10**6)
)  # fmt: skip


def naive_utc(column: Any) -> Any:
    """A series of date-times (or RFC 3339 / ISO 8601 strings) as naive UTC, the table type's
    form: naive times are taken as UTC, zoned ones converted, offsets in strings honoured."""
    import pandas as pd

    return pd.to_datetime(column, utc=True, format="ISO8601").dt.tz_convert(None)


def reencode(data: Any, type_: TypeIR, field: str = "") -> Any:
    """JSON ``data`` read and written again, in the form ``encode_json`` writes (tensors b64)."""
    return encode_json(decode_json(data, type_, field), type_, field, tensors="b64")


def wire_equal(
    expected: Mapping[str, Any], served: Mapping[str, Any], types: Mapping[str, TypeIR]
) -> bool:
    """Whether ``served`` outputs equal a pinned ``expected`` example as sent on the wire (NaN is
    null there). An example written by an older version in another form (a date-time before
    RFC 3339) is read back and written again before it is judged different."""
    import orjson

    def wire(data: Any) -> bytes:
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)

    if wire(served) == wire(expected):
        return True
    try:
        rewritten = {name: reencode(value, types[name], name) for name, value in expected.items()}
    except (ValueConversionError, KeyError):
        return False
    return wire(served) == wire(rewritten)


def _decode_datetimes(values: list[Any], dtype: str) -> Any:
    """RFC 3339 (or ISO 8601) strings or nulls as a naive ``dtype`` series in UTC, as
    ``_rfc3339`` sends them; offsets are honoured."""
    import pandas as pd

    bad = next((v for v in values if v is not None and not isinstance(v, str)), None)
    if bad is not None:
        raise ValueError(f"expected RFC 3339 date-time strings, got {_describe(bad)}")
    return naive_utc(pd.Series(values, dtype=object)).astype(dtype)


def _encode_tensor(value: Any, type_: Tensor, field: str, tensors: TensorFormat) -> Any:
    np = sys.modules.get("numpy")
    if np is None or not isinstance(value, np.ndarray):
        raise ValueConversionError(field, f"expected a numpy array, got {type(value).__name__}")
    array = value.astype(type_.dtype, copy=False)
    if tensors == "b64":
        contiguous = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False)
        return {
            "dtype": type_.dtype,
            "shape": list(array.shape),
            "b64": base64.b64encode(contiguous.tobytes()).decode("ascii"),
        }
    return array.tolist()


def decode_json(data: Any, type_: TypeIR, field: str = "") -> Any:
    """The Python value for JSON ``data`` of type ``type_``; errors name the offending field."""
    if isinstance(type_, Optional):
        return None if data is None else decode_json(data, type_.inner, field)
    if isinstance(type_, Scalar):
        return _decode_scalar(data, type_, field)
    if isinstance(type_, ListOf):
        if not isinstance(data, list):
            raise ValueConversionError(field, f"expected an array, got {_describe(data)}")
        return [decode_json(v, type_.item, f"{field}[{i}]") for i, v in enumerate(data)]
    if isinstance(type_, DictOf):
        if not isinstance(data, dict):
            raise ValueConversionError(field, f"expected an object, got {_describe(data)}")
        return {k: decode_json(v, type_.value, f"{field}.{k}") for k, v in data.items()}
    if isinstance(type_, Record):
        if not isinstance(data, dict):
            raise ValueConversionError(field, f"expected an object, got {_describe(data)}")
        known = {f.name for f in type_.fields}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueConversionError(
                f"{field}.{unknown[0]}", f"unknown field; expected only {', '.join(sorted(known))}"
            )
        out = {}
        for f in type_.fields:
            if f.name not in data and not isinstance(f.type, Optional):
                raise ValueConversionError(f"{field}.{f.name}", "field required")
            out[f.name] = decode_json(data.get(f.name), f.type, f"{field}.{f.name}")
        return out
    if isinstance(type_, Tensor):
        return _decode_tensor(data, type_, field)
    if isinstance(type_, Table):
        return _decode_table(data, type_, field)
    if isinstance(type_, Series):
        return _decode_series(data, type_, field)
    if isinstance(type_, Json):
        return data
    assert_never(type_)


def _decode_scalar(data: Any, type_: Scalar, field: str) -> Any:
    kind = type_.kind
    if kind == "bool" and isinstance(data, bool):
        return data
    if kind == "int" and isinstance(data, int) and not isinstance(data, bool):
        return data
    if kind == "float" and isinstance(data, int | float) and not isinstance(data, bool):
        return float(data)
    if kind == "str" and isinstance(data, str):
        return data
    if kind == "bytes" and isinstance(data, str):
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueConversionError(field, f"expected base64-encoded bytes ({exc})") from exc
    wanted = {"bool": "a boolean", "int": "an integer", "float": "a number", "str": "a string",
              "bytes": "a base64 string"}[kind]  # fmt: skip
    if kind == "int" and isinstance(data, float) and math.isfinite(data):
        raise ValueConversionError(field, f"expected an integer, got the number {data!r}")
    raise ValueConversionError(field, f"expected {wanted}, got {_describe(data)}")


def _check_shape(shape: tuple[int, ...], type_: Tensor, field: str) -> None:
    if len(shape) != len(type_.shape) or any(
        want not in (-1, got) for want, got in zip(type_.shape, shape, strict=True)
    ):
        want = ", ".join("*" if d == -1 else str(d) for d in type_.shape)
        raise ValueConversionError(field, f"expected shape ({want}), got {tuple(shape)}")


def _decode_tensor(data: Any, type_: Tensor, field: str) -> Any:
    import numpy as np

    if isinstance(data, dict) and "b64" in data:
        extra = set(data) - {"dtype", "shape", "b64"}
        if extra:
            raise ValueConversionError(f"{field}.{sorted(extra)[0]}", "unknown tensor key")
        dtype = data.get("dtype", type_.dtype)
        if dtype != type_.dtype:
            raise ValueConversionError(f"{field}.dtype", f"expected {type_.dtype}, got {dtype}")
        shape = data.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
            raise ValueConversionError(f"{field}.shape", "expected an array of integers")
        try:
            raw = base64.b64decode(data["b64"], validate=True)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise ValueConversionError(f"{field}.b64", f"expected base64 data ({exc})") from exc
        item = np.dtype(type_.dtype).newbyteorder("<")
        if len(raw) != item.itemsize * math.prod(shape):
            raise ValueConversionError(
                f"{field}.b64", f"{len(raw)} bytes do not fill shape {shape} of {type_.dtype}"
            )
        array = np.frombuffer(raw, dtype=item).reshape(shape).astype(type_.dtype)
    else:
        try:
            array = np.asarray(data, dtype=type_.dtype)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueConversionError(
                field, f"expected a rectangular (nested) array of {type_.dtype} ({exc})"
            ) from exc
        if array.dtype == object:
            raise ValueConversionError(field, "expected a rectangular nested array")
        rest = type_.shape[1:]
        if array.size == 0 and type_.shape and -1 not in rest:
            array = array.reshape((0, *rest))  # `[]` carries no inner shape; the type does
    _check_shape(tuple(array.shape), type_, field)
    return array


def _decode_table(data: Any, type_: Table, field: str) -> Any:
    import pandas as pd

    names = [c.name for c in type_.columns]
    if isinstance(data, dict):
        columns = data
        unknown = sorted(set(columns) - set(names))
        if unknown:
            raise ValueConversionError(f"{field}.{unknown[0]}", "unknown column")
        lengths = {len(v) for v in columns.values() if isinstance(v, list)}
        if len(lengths) > 1:
            raise ValueConversionError(field, "columns have different lengths")
    elif isinstance(data, list):
        for i, row in enumerate(data):
            if not isinstance(row, dict):
                raise ValueConversionError(
                    f"{field}[{i}]", f"expected an object, got {_describe(row)}"
                )
            unknown = sorted(set(row) - set(names))
            if unknown:
                raise ValueConversionError(f"{field}[{i}].{unknown[0]}", "unknown column")
        columns = {n: [row.get(n) for row in data] for n in names}
    else:
        raise ValueConversionError(
            field,
            f"expected an array of row objects or an object of columns, got {_describe(data)}",
        )
    out: dict[str, Any] = {}
    for column in type_.columns:
        if column.name not in columns:
            raise ValueConversionError(f"{field}.{column.name}", "column required")
        values = columns[column.name]
        try:
            if column.dtype == "string":
                if not all(v is None or isinstance(v, str) for v in values):
                    raise ValueError("expected strings")
                out[column.name] = pd.Series(values)
            elif column.dtype.startswith("datetime64"):
                out[column.name] = _decode_datetimes(values, column.dtype)
            else:
                out[column.name] = pd.Series(values).astype(column.dtype)
        except (ValueError, TypeError) as exc:
            raise ValueConversionError(
                f"{field}.{column.name}", f"cannot hold {column.dtype} values ({exc})"
            ) from exc
    return pd.DataFrame(out, columns=names)


_SERIES_KEYS = ("index", "values", "name")


def _decode_series(data: Any, type_: Series, field: str) -> Any:
    """``{"index": [...], "values": [...], "name": ...}``, or ``{label: value, ...}`` for string
    labels (an object that holds no array under ``index`` or ``values``). Without a name the
    Series gets the one it had at pin time."""
    import pandas as pd

    labelled = type_.index == "string"
    if not isinstance(data, dict):
        also = " or an object of values by label" if labelled else ""
        raise ValueConversionError(
            field,
            f'expected an object {{"index": [...], "values": [...]}}{also}, got {_describe(data)}',
        )
    name = type_.name
    if labelled and not any(isinstance(data.get(key), list) for key in ("index", "values")):
        labels = list(data)
        values = _decode_column(list(data.values()), type_.dtype, field, labels)
        index = pd.Series(labels, dtype=_string_dtype())
    else:
        if not labelled and not {"index", "values"} & set(data):
            raise ValueConversionError(
                field,
                'expected {"index": [...], "values": [...]}; an object of values by label is '
                f"accepted only for string labels, and this index is {type_.index}",
            )
        unknown = sorted(set(data) - set(_SERIES_KEYS))
        if unknown:
            raise ValueConversionError(
                f"{field}.{unknown[0]}", "unknown key; expected only index, values and name"
            )
        for key in ("index", "values"):
            if key not in data:
                raise ValueConversionError(f"{field}.{key}", "field required")
            if not isinstance(data[key], list):
                raise ValueConversionError(
                    f"{field}.{key}", f"expected an array, got {_describe(data[key])}"
                )
        values_count, labels_count = len(data["values"]), len(data["index"])
        if values_count != labels_count:
            raise ValueConversionError(
                f"{field}.values",
                f"{values_count} value{'s' * (values_count != 1)}, but the index has "
                f"{labels_count} label{'s' * (labels_count != 1)}",
            )
        if "name" in data:
            name = data["name"]
            if name is not None and not isinstance(name, str):
                raise ValueConversionError(
                    f"{field}.name", f"expected a string or null, got {_describe(name)}"
                )
        index = _decode_column(data["index"], type_.index, f"{field}.index")
        values = _decode_column(data["values"], type_.dtype, f"{field}.values")
    series = values.set_axis(pd.Index(index))
    series.name = name
    return series


def _string_dtype() -> Any:
    """The dtype pandas gives strings: ``str`` in pandas 3, ``object`` before."""
    import pandas as pd

    return pd.Series(["x"]).dtype


_WANTED = {"b": "a boolean", "i": "an integer", "u": "an integer", "f": "a number or null"}


def _decode_column(data: list[Any], dtype: str, field: str, labels: list[str] | None = None) -> Any:
    """A pandas Series of ``dtype`` from a JSON array (RangeIndex); an element that does not
    fit is named ``field[i]``, or ``field.label`` when ``labels`` name the elements."""
    import numpy as np
    import pandas as pd

    def where(row: int) -> str:
        return f"{field}.{labels[row]}" if labels is not None else f"{field}[{row}]"

    if dtype.startswith("datetime64"):
        try:
            return _decode_datetimes(data, dtype)
        except (ValueError, TypeError) as exc:
            raise ValueConversionError(field, f"cannot hold {dtype} values ({exc})") from exc
    if dtype == "string":
        for row, item in enumerate(data):
            if item is not None and not isinstance(item, str):
                raise ValueConversionError(where(row), f"expected a string, got {_describe(item)}")
        return pd.Series(data, dtype=_string_dtype())
    target = np.dtype(dtype)
    for row, item in enumerate(data):
        if target.kind == "b":
            fits = isinstance(item, bool)
        elif target.kind in "iu":
            fits = isinstance(item, int) and not isinstance(item, bool)
        else:
            fits = item is None or (isinstance(item, int | float) and not isinstance(item, bool))
        if not fits:
            raise ValueConversionError(
                where(row), f"expected {_WANTED[target.kind]}, got {_describe(item)}"
            )
    try:
        array = np.array([math.nan if v is None else v for v in data], dtype=target)
    except OverflowError as exc:
        raise ValueConversionError(field, f"a value does not fit in {dtype} ({exc})") from exc
    return pd.Series(array)
