"""Tables and series in protobuf: ``checkpoint2svc.v1.Table`` and ``checkpoint2svc.v1.Series``,
whose data are ``checkpoint2svc.v1.Column`` messages.

A column carries its values in one member of its ``values`` oneof, chosen by its dtype:
``strings`` (missing values listed in ``null_rows``), ``datetimes`` (nanoseconds since the epoch,
UTC), ``bools``, ``int64s``, ``uint64s`` or ``doubles``. A table is its columns and ``num_rows``;
a series is an index column, a values column and maybe a name. ``proto_values`` calls these for
the tables and series of a message.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from .errors import ValueConversionError
from .json_values import naive_utc
from .type_ir import Series, Table

_COLUMN_MEMBERS = {"b": "bools", "i": "int64s", "u": "uint64s", "f": "doubles"}
"""Which member of ``Column.values`` carries a column of each numpy dtype kind."""


# ---------------------------------------------------------------------------- Python -> proto


def fill_table(message: Any, type_: Table, value: Any, field: str) -> None:
    """Fill a ``Table`` message from a ``pandas.DataFrame`` with ``type_``'s columns."""
    pd = sys.modules.get("pandas")
    if pd is None or not isinstance(value, pd.DataFrame):
        raise ValueConversionError(field, f"expected a DataFrame, got {type(value).__name__}")
    message.num_rows = len(value)
    for column in type_.columns:
        path = f"{field}.{column.name}"
        if column.name not in value.columns:
            raise ValueConversionError(path, "column missing from the DataFrame")
        series = value[column.name]
        if not isinstance(series, pd.Series):
            raise ValueConversionError(path, "the DataFrame has more than one column of this name")
        entry = message.columns.add()
        entry.name = column.name
        entry.dtype = column.dtype
        _fill_column(entry, series, column.dtype, path)


def fill_series(message: Any, type_: Series, value: Any, field: str) -> None:
    """Fill a ``Series`` message from a ``pandas.Series`` (its index a column too)."""
    pd = sys.modules.get("pandas")
    if pd is None or not isinstance(value, pd.Series):
        raise ValueConversionError(field, f"expected a pandas Series, got {type(value).__name__}")
    if value.index.nlevels > 1:
        raise ValueConversionError(f"{field}.index", "a MultiIndex has no series form")
    message.index.dtype = type_.index
    _fill_column(message.index, pd.Series(value.index), type_.index, f"{field}.index")
    message.values.dtype = type_.dtype
    _fill_column(message.values, value, type_.dtype, f"{field}.values")
    if value.name is not None:
        message.name = str(value.name)


def _fill_column(entry: Any, series: Any, dtype: str, field: str) -> None:
    """Fill a ``Column`` with ``series`` as ``dtype``, in the member that dtype takes."""
    import numpy as np
    import pandas as pd

    if dtype == "string":
        values = series.tolist()
        strings = []
        for row, item in enumerate(values):
            if item is None or item is pd.NA or (isinstance(item, float) and math.isnan(item)):
                entry.null_rows.append(row)
                strings.append("")
            elif isinstance(item, str):
                strings.append(item)
            else:
                raise ValueConversionError(
                    f"{field}[{row}]", f"expected a string, got {type(item).__name__}"
                )
        entry.strings.SetInParent()
        entry.strings.values.extend(strings)
        return
    try:
        if dtype.startswith("datetime64"):
            naive = naive_utc(series).astype(dtype)  # a zoned column: in UTC
            nanoseconds = naive.to_numpy(dtype=dtype).view(np.int64)
            entry.datetimes.SetInParent()
            entry.datetimes.values.extend(nanoseconds.tolist())
            return
        target = np.dtype(dtype)
        if target.kind != "f" and series.isna().any():
            raise ValueError("a missing value in a column that cannot hold one")
        array = series.to_numpy()
        typed = array.astype(target, casting="unsafe" if array.dtype == object else "same_kind")
    except (TypeError, ValueError) as exc:
        raise ValueConversionError(
            field, f"cannot hold {dtype} values (the column is {series.dtype}: {exc})"
        ) from exc
    member = getattr(entry, _COLUMN_MEMBERS[target.kind])
    member.SetInParent()
    member.values.extend(typed.tolist())


# ---------------------------------------------------------------------------- proto -> Python


def read_table(message: Any, type_: Table, field: str) -> Any:
    """The ``pandas.DataFrame`` in a ``Table`` message: ``type_``'s columns, each required once."""
    import pandas as pd

    names = [c.name for c in type_.columns]
    entries: dict[str, Any] = {}
    for entry in message.columns:
        if entry.name not in names:
            raise ValueConversionError(f"{field}.{entry.name}", "unknown column")
        if entry.name in entries:
            raise ValueConversionError(f"{field}.{entry.name}", "column given twice")
        entries[entry.name] = entry
    out: dict[str, Any] = {}
    for column in type_.columns:
        path = f"{field}.{column.name}"
        entry = entries.get(column.name)
        if entry is None:
            raise ValueConversionError(path, "column required")
        if entry.dtype and entry.dtype != column.dtype:
            raise ValueConversionError(
                f"{path}.dtype", f"expected {column.dtype}, got {entry.dtype}"
            )
        out[column.name] = _read_column(entry, column.dtype, message.num_rows, path)
    return pd.DataFrame(out, columns=names)


def read_series(message: Any, type_: Series, field: str) -> Any:
    """The ``pandas.Series`` in a ``Series`` message: as many values as index labels."""
    import pandas as pd

    for key, dtype in (("index", type_.index), ("values", type_.dtype)):
        entry = getattr(message, key)
        if entry.dtype and entry.dtype != dtype:
            raise ValueConversionError(
                f"{field}.{key}.dtype", f"expected {dtype}, got {entry.dtype}"
            )
    member = message.index.WhichOneof("values")
    labels = len(getattr(message.index, member).values) if member is not None else 0
    index = _read_column(message.index, type_.index, labels, f"{field}.index")
    values = _read_column(
        message.values, type_.dtype, labels, f"{field}.values", ("index", "labels")
    )
    series = values.set_axis(pd.Index(index))
    series.name = message.name if message.HasField("name") else None
    return series


def _read_column(
    entry: Any, dtype: str, rows: int, field: str, of: tuple[str, str] = ("table", "rows")
) -> Any:
    """The values of a column: ``rows`` of them (``of``: whose count that is, for errors)."""
    import numpy as np
    import pandas as pd

    if dtype == "string":
        member = "strings"
    elif dtype.startswith("datetime64"):
        member = "datetimes"
    else:
        target = np.dtype(dtype)
        member = _COLUMN_MEMBERS[target.kind]
    present = entry.WhichOneof("values")
    if present is not None and present != member:
        raise ValueConversionError(field, f"a {dtype} column carries `{member}`, not `{present}`")
    values = list(getattr(entry, member).values)
    if len(values) != rows:
        raise ValueConversionError(
            field, f"{len(values)} values, but the {of[0]} has {rows} {of[1]}"
        )
    if entry.null_rows and member != "strings":
        raise ValueConversionError(f"{field}.null_rows", f"a {dtype} column has no null rows")
    if member == "strings":
        for row in entry.null_rows:
            if not 0 <= row < rows:
                raise ValueConversionError(f"{field}.null_rows", f"row {row} is out of range")
            values[row] = None
        # The dtype pandas gives strings (``str`` in pandas 3, ``object`` before), empty or not.
        return pd.Series(values, dtype=pd.Series(["x"]).dtype)
    if member == "datetimes":
        return pd.Series(np.array(values, dtype=np.int64).view("datetime64[ns]"))
    array = np.array(
        values, dtype={"b": bool, "i": np.int64, "u": np.uint64, "f": float}[target.kind]
    )
    if target.kind in "iu" and array.size:
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise ValueConversionError(field, f"a value does not fit in {dtype}")
    return pd.Series(array.astype(target))
