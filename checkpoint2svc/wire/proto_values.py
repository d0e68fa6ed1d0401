"""Convert Python values to and from protobuf messages, as their IR type says.

The shapes follow the README's type table and ``checkpoint2svc.codegen.proto``, which generates
the messages these functions fill and read:

- a scalar is a scalar field; ``optional`` of a scalar is a proto3 ``optional`` field;
- a record is a nested message whose fields are named by ``proto_field_names``;
- ``list[T]`` is ``repeated T``, ``dict[str, T]`` is ``map<string, T>``;
- a list, dict or optional that proto cannot express directly (an item of a list, a value of a
  map, an optional list or dict) is a wrapper message whose one field is ``values`` (list, dict)
  or ``value`` (optional); other optional non-scalars use the message field's presence;
- a tensor is ``checkpoint2svc.v1.Tensor``, a table ``checkpoint2svc.v1.Table``, a series
  ``checkpoint2svc.v1.Series`` (its index and values are columns, as in a table), and ``json``
  ``google.protobuf.Value``.

Tables and series are filled and read by ``proto_columns``, ``json`` values (and the ``Struct``
of the generic ``NodeService``) by ``proto_struct``.

Protobuf has no order for map entries: dicts decoded from a map or a ``Struct`` have sorted keys.
JSON numbers in a ``Value`` or ``Struct`` are doubles: whole numbers within ±2**53 come back as
``int``, and an integer beyond that range is refused rather than silently rounded.
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple, Protocol, TypeVar, assert_never

from google.protobuf import struct_pb2
from google.protobuf.message import Message

from .errors import ValueConversionError
from .json_values import encode_json, plain_json
from .names import proto_field_names
from .proto_columns import fill_series, fill_table, read_series, read_table
from .proto_struct import fill_value, value_data
from .type_ir import (
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

M = TypeVar("M", bound=Message)

MessageType = Record | Tensor | Table | Series | Json
"""The kinds whose value is a message of its own (``_fill``, ``_read``); the others are fields
of their message: a scalar, a repeated or map field, an optional one."""
ElementType = ListOf | DictOf | Optional | MessageType
"""The kinds of an item of a list or a value of a map that is a message (maybe a wrapper)."""
NotOptional = Scalar | ListOf | DictOf | MessageType

_INT64 = (-(2**63), 2**63 - 1)


class NamedType(Protocol):
    """A variable of the signature (``Variable``) or a field of a record (``Field``)."""

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> TypeIR: ...


@lru_cache(maxsize=1024)
def _record_names(record: Record) -> tuple[str, ...]:
    return proto_field_names([f.name for f in record.fields])


def signature_record(variables: Iterable[NamedType]) -> Record:
    """The inputs (or outputs) of a signature as one record: the generated ``Input``/``Output``."""
    return Record(tuple(Field(v.name, v.type) for v in variables))


def _join(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key


def _optional_inner(type_: Optional) -> NotOptional:
    inner = type_.inner
    while isinstance(inner, Optional):
        inner = inner.inner
    return inner


# ---------------------------------------------------------------------------- Python -> proto


def encode_message(
    values: Mapping[str, Any], record: Record, message_class: type[M], field: str = ""
) -> M:
    """A new ``message_class`` holding ``values`` (e.g. the cell's outputs) shaped by ``record``."""
    message: M = message_class()
    _fill(message, record, values, field)
    return message


_EXACT_SCALARS: dict[str, type] = {"bool": bool, "int": int, "float": float, "str": str}


def _scalar(value: Any, type_: Scalar, field: str) -> Any:
    exact = _EXACT_SCALARS.get(type_.kind)
    if exact is not None and type(value) is exact:  # the common case, on every call's path
        number: Any = value
        if exact is not int or _INT64[0] <= number <= _INT64[1]:
            return number
    if type_.kind == "bytes":
        if not isinstance(value, bytes | bytearray):
            raise ValueConversionError(field, f"expected bytes, got {type(value).__name__}")
        return bytes(value)
    python = encode_json(value, type_, field)
    if type_.kind == "int" and not _INT64[0] <= python <= _INT64[1]:
        raise ValueConversionError(field, f"{python} does not fit in a 64-bit integer (int64)")
    return python


def _set_field(message: Message, name: str, type_: TypeIR, value: Any, field: str) -> None:
    """Set field ``name`` of ``message`` (a field of the field-level shape of ``type_``)."""
    if isinstance(type_, Optional):
        inner = _optional_inner(type_)
        if value is None:
            message.ClearField(name)
        elif isinstance(inner, Scalar):
            setattr(message, name, _scalar(value, inner, field))
        elif isinstance(inner, ListOf | DictOf):
            wrapper = getattr(message, name)
            wrapper.SetInParent()
            _set_field(wrapper, "values", inner, value, field)
        else:
            _fill(getattr(message, name), inner, value, field)
    elif isinstance(type_, Scalar):
        setattr(message, name, _scalar(value, type_, field))
    elif isinstance(type_, ListOf):
        if not isinstance(value, list | tuple):
            raise ValueConversionError(field, f"expected a list, got {type(value).__name__}")
        items = getattr(message, name)
        for i, item in enumerate(value):
            path = f"{field}[{i}]"
            if isinstance(type_.item, Scalar):
                items.append(_scalar(item, type_.item, path))
            else:
                _fill_element(items.add(), type_.item, item, path)
    elif isinstance(type_, DictOf):
        if not isinstance(value, dict):
            raise ValueConversionError(field, f"expected a dict, got {type(value).__name__}")
        entries = getattr(message, name)
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueConversionError(field, f"dict keys must be strings, got {key!r}")
            path = f"{field}.{key}"
            if isinstance(type_.value, Scalar):
                entries[key] = _scalar(item, type_.value, path)
            else:
                _fill_element(entries[key], type_.value, item, path)
    else:
        _fill(getattr(message, name), type_, value, field)


def _fill_element(message: Message, type_: ElementType, value: Any, field: str) -> None:
    """Fill an item of a repeated field or a value of a map (a message: maybe a wrapper)."""
    if isinstance(type_, ListOf | DictOf):
        _set_field(message, "values", type_, value, field)
    elif isinstance(type_, Optional):
        _set_field(message, "value", type_, value, field)
    else:
        _fill(message, type_, value, field)


def _fill(message: Message, type_: MessageType, value: Any, field: str) -> None:
    """Fill the message of a record, tensor, table or JSON value, marking it present."""
    message.SetInParent()
    if isinstance(type_, Record):
        if not isinstance(value, Mapping):
            raise ValueConversionError(field, f"expected a dict, got {type(value).__name__}")
        missing = [f.name for f in type_.fields if f.name not in value]
        if missing:
            raise ValueConversionError(field, f"missing key(s) {', '.join(missing)}")
        for f, name in zip(type_.fields, _record_names(type_), strict=True):
            _set_field(message, name, f.type, value[f.name], _join(field, f.name))
    elif isinstance(type_, Tensor):
        _fill_tensor(message, type_, value, field)
    elif isinstance(type_, Table):
        fill_table(message, type_, value, field)
    elif isinstance(type_, Series):
        fill_series(message, type_, value, field)
    elif isinstance(type_, Json):
        assert isinstance(message, struct_pb2.Value)
        fill_value(message, plain_json(value, field), field)
    else:
        assert_never(type_)


def _fill_tensor(message: Any, type_: Tensor, value: Any, field: str) -> None:
    np = sys.modules.get("numpy")
    if np is None or not isinstance(value, np.ndarray):
        raise ValueConversionError(field, f"expected a numpy array, got {type(value).__name__}")
    try:
        array = value.astype(type_.dtype, copy=False)
    except (TypeError, ValueError) as exc:
        raise ValueConversionError(field, f"cannot be cast to {type_.dtype} ({exc})") from exc
    message.dtype = type_.dtype
    message.shape.extend(array.shape)
    little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    message.data = little.tobytes()


# ---------------------------------------------------------------------------- proto -> Python


def decode_message(message: Message, record: Record, field: str = "") -> dict[str, Any]:
    """The Python values in ``message`` (e.g. a request's inputs), keyed by ``record``'s names."""
    values: dict[str, Any] = _read(message, record, field)
    return values


def _get_field(message: Any, name: str, type_: TypeIR, field: str) -> Any:
    """The value of field ``name`` of ``message`` (of the field-level shape of ``type_``)."""
    if isinstance(type_, Optional):
        inner = _optional_inner(type_)
        if not message.HasField(name):
            return None
        if isinstance(inner, Scalar):
            return getattr(message, name)
        if isinstance(inner, ListOf | DictOf):
            return _get_field(getattr(message, name), "values", inner, field)
        return _read(getattr(message, name), inner, field)
    if isinstance(type_, Scalar):
        return getattr(message, name)
    if isinstance(type_, ListOf):
        items = getattr(message, name)
        if isinstance(type_.item, Scalar):
            return list(items)
        return [_read_element(item, type_.item, f"{field}[{i}]") for i, item in enumerate(items)]
    if isinstance(type_, DictOf):
        entries = getattr(message, name)
        if isinstance(type_.value, Scalar):
            return {key: entries[key] for key in sorted(entries)}
        return {
            key: _read_element(entries[key], type_.value, f"{field}.{key}")
            for key in sorted(entries)
        }
    if not message.HasField(name):
        if isinstance(type_, Json):
            return None
        raise ValueConversionError(field, "field required")
    return _read(getattr(message, name), type_, field)


def _read_element(message: Any, type_: ElementType, field: str) -> Any:
    if isinstance(type_, ListOf | DictOf):
        return _get_field(message, "values", type_, field)
    if isinstance(type_, Optional):
        return _get_field(message, "value", type_, field)
    return _read(message, type_, field)


def _read(message: Any, type_: MessageType, field: str) -> Any:
    if isinstance(type_, Record):
        return {
            f.name: _get_field(message, name, f.type, _join(field, f.name))
            for f, name in zip(type_.fields, _record_names(type_), strict=True)
        }
    if isinstance(type_, Tensor):
        return _read_tensor(message, type_, field)
    if isinstance(type_, Table):
        return read_table(message, type_, field)
    if isinstance(type_, Series):
        return read_series(message, type_, field)
    if isinstance(type_, Json):
        return value_data(message)
    assert_never(type_)


def _check_shape(shape: tuple[int, ...], type_: Tensor, field: str) -> None:
    if len(shape) != len(type_.shape) or any(
        want not in (-1, got) for want, got in zip(type_.shape, shape, strict=True)
    ):
        want = ", ".join("*" if d == -1 else str(d) for d in type_.shape)
        raise ValueConversionError(field, f"expected shape ({want}), got {shape}")


def _read_tensor(message: Any, type_: Tensor, field: str) -> Any:
    import numpy as np

    dtype = message.dtype or type_.dtype
    if dtype != type_.dtype:
        raise ValueConversionError(f"{field}.dtype", f"expected {type_.dtype}, got {dtype}")
    shape = tuple(message.shape)
    if any(d < 0 for d in shape):
        raise ValueConversionError(f"{field}.shape", f"dimensions must be >= 0, got {shape}")
    _check_shape(shape, type_, field)
    item = np.dtype(type_.dtype).newbyteorder("<")
    data = message.data
    if len(data) != item.itemsize * math.prod(shape):
        raise ValueConversionError(
            f"{field}.data", f"{len(data)} bytes do not fill shape {list(shape)} of {type_.dtype}"
        )
    return np.frombuffer(data, dtype=item).reshape(shape).astype(type_.dtype)


# ------------------------------------------------------------------ one record, planned once


class _PlannedField(NamedTuple):
    key: str
    name: str  # in the message
    ir: TypeIR
    path: str  # for errors, e.g. ``input.x``
    is_scalar: bool  # read as is
    exact: type | None  # a scalar value of exactly this type is set as is, others converted


class RecordCodec:
    """``decode_message`` and ``encode_message`` for one record, planned once.

    The functions above walk the type IR on every call: they look up the proto names (hashing
    the record), build each field's path and dispatch on its type. A server converts the same
    ``Input`` and ``Output`` on every request, so here that work is done in the constructor and
    a call only reads or sets the fields: a scalar directly, anything else through the same code
    as the functions (same values, same errors). The typed gRPC ``Execute`` keeps one per direction.
    """

    def __init__(self, record: Record, field: str = "") -> None:
        self._field = field
        self._keys = tuple(f.name for f in record.fields)
        self._plan = tuple(
            _PlannedField(f.name, name, f.type, _join(field, f.name), isinstance(f.type, Scalar),
                          _EXACT_SCALARS.get(f.type.kind) if isinstance(f.type, Scalar) else None)
            for f, name in zip(record.fields, _record_names(record), strict=True)
        )  # fmt: skip

    def decode(self, message: Message) -> dict[str, Any]:
        """Like ``decode_message(message, record, field)``."""
        return {
            key: getattr(message, name) if is_scalar else _get_field(message, name, type_, path)
            for key, name, type_, path, is_scalar, _ in self._plan
        }

    def encode(self, values: Mapping[str, Any], message_class: type[M]) -> M:
        """Like ``encode_message(values, record, message_class, field)``."""
        if type(values) is not dict and not isinstance(values, Mapping):
            raise ValueConversionError(self._field, f"expected a dict, got {type(values).__name__}")
        missing = [key for key in self._keys if key not in values]
        if missing:
            raise ValueConversionError(self._field, f"missing key(s) {', '.join(missing)}")
        message: M = message_class()
        for key, name, type_, path, _, exact in self._plan:
            value = values[key]
            if type(value) is exact:  # what _scalar returns as is, set without the calls
                number: Any = value
                if exact is not int or _INT64[0] <= number <= _INT64[1]:
                    setattr(message, name, number)
                    continue
            _set_field(message, name, type_, value, path)
        return message


# ------------------------------------------------------------------ generated modules


def add_generated_path(folder: Path) -> None:
    """Make the ``_pb2`` modules that ``compile_protos`` wrote into ``folder`` importable.

    The shared protos live under ``checkpoint2svc_protos/`` (proto package ``checkpoint2svc.v1``)
    so that their modules form a namespace package of their own, outside this package.
    """
    root = str(folder)
    if root not in sys.path:
        sys.path.insert(0, root)


def import_generated(module: str, folder: Path) -> ModuleType:
    """Import a generated module (e.g. ``service_pb2``) from ``folder``."""
    add_generated_path(folder)
    importlib.invalidate_caches()
    return importlib.import_module(module)
