"""The type IR: the one vocabulary that every generator (proto, JSON Schema, Python) maps from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .errors import MalformedTypeError

ScalarKind = Literal["bool", "int", "float", "str", "bytes"]
SCALAR_KINDS: tuple[ScalarKind, ...] = ("bool", "int", "float", "str", "bytes")

# numpy dtypes a Tensor may carry, and the pandas column dtypes a Table (or a Series: its values
# and its index) may carry.
TENSOR_DTYPES = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
)  # fmt: skip
TABLE_DTYPES = (*TENSOR_DTYPES, "string", "datetime64[ns]")


@dataclass(frozen=True)
class Scalar:
    kind: ScalarKind

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def render(self) -> str:
        return self.kind


@dataclass(frozen=True)
class Optional:
    inner: TypeIR

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "optional", "inner": self.inner.to_dict()}

    def render(self) -> str:
        return f"optional[{self.inner.render()}]"


@dataclass(frozen=True)
class ListOf:
    item: TypeIR

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "list", "item": self.item.to_dict()}

    def render(self) -> str:
        return f"list[{self.item.render()}]"


@dataclass(frozen=True)
class DictOf:
    """A dict with arbitrary string keys and values of one type."""

    value: TypeIR

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "dict", "value": self.value.to_dict()}

    def render(self) -> str:
        return f"dict[str, {self.value.render()}]"


@dataclass(frozen=True)
class Field:
    name: str
    type: TypeIR


@dataclass(frozen=True)
class Record:
    """A dict with a fixed set of identifier keys, each with its own type."""

    fields: tuple[Field, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "record",
            "fields": [{"name": f.name, "type": f.type.to_dict()} for f in self.fields],
        }

    def render(self) -> str:
        return "{" + ", ".join(f"{f.name}: {f.type.render()}" for f in self.fields) + "}"


@dataclass(frozen=True)
class Tensor:
    """A numpy ndarray; ``-1`` in ``shape`` marks a dimension of any size."""

    dtype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "tensor", "dtype": self.dtype, "shape": list(self.shape)}

    def render(self) -> str:
        return f"tensor[{self.dtype}, ({', '.join(str(d) for d in self.shape)})]"


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str


@dataclass(frozen=True)
class Table:
    """A pandas DataFrame with named, typed columns."""

    columns: tuple[Column, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "table",
            "columns": [{"name": c.name, "dtype": c.dtype} for c in self.columns],
        }

    def render(self) -> str:
        return "table{" + ", ".join(f"{c.name}: {c.dtype}" for c in self.columns) + "}"


@dataclass(frozen=True)
class Series:
    """A pandas Series: values of one dtype, labelled by an index of one dtype (both dtypes of
    ``TABLE_DTYPES``). ``name`` is the Series' name at pin time: a value carries its own name,
    and one sent without a name gets this one."""

    dtype: str
    index: str
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        named = {} if self.name is None else {"name": self.name}
        return {"kind": "series", "dtype": self.dtype, "index": self.index, **named}

    def render(self) -> str:
        named = "" if self.name is None else f", name={self.name}"
        return f"series[{self.dtype}, index={self.index}{named}]"


@dataclass(frozen=True)
class Json:
    """Any JSON value: the fallback when nothing more precise is known."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "json"}

    def render(self) -> str:
        return "json"


TypeIR = Scalar | Optional | ListOf | DictOf | Record | Tensor | Table | Series | Json


def type_from_dict(data: dict[str, Any]) -> TypeIR:
    """Rebuild a type from its manifest form (the inverse of ``to_dict``)."""
    try:
        kind = data["kind"]
        if kind in SCALAR_KINDS:
            return Scalar(kind)
        if kind == "optional":
            return Optional(type_from_dict(data["inner"]))
        if kind == "list":
            return ListOf(type_from_dict(data["item"]))
        if kind == "dict":
            return DictOf(type_from_dict(data["value"]))
        if kind == "record":
            return Record(
                tuple(Field(f["name"], type_from_dict(f["type"])) for f in data["fields"])
            )
        if kind == "tensor":
            return Tensor(str(data["dtype"]), tuple(int(d) for d in data["shape"]))
        if kind == "table":
            return Table(tuple(Column(c["name"], c["dtype"]) for c in data["columns"]))
        if kind == "series":
            name = data.get("name")
            return Series(
                str(data["dtype"]), str(data["index"]), None if name is None else str(name)
            )
        if kind == "json":
            return Json()
    except (KeyError, TypeError) as exc:
        raise MalformedTypeError(f"malformed type in manifest: {data!r} ({exc})") from exc
    raise MalformedTypeError(f"unknown type kind {kind!r} in manifest; is the checkpoint newer?")
