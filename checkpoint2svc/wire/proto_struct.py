"""JSON data in protobuf: ``google.protobuf.Value`` (a ``json`` value of a typed message) and
``google.protobuf.Struct`` (the inputs and outputs of the generic ``NodeService``).

JSON numbers in a ``Value`` or ``Struct`` are doubles: whole numbers within ±2**53 come back as
``int``, and an integer beyond that range is refused rather than silently rounded. Protobuf has no
order for a ``Struct``'s keys: dicts come back with sorted keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import struct_pb2

from .errors import ValueConversionError
from .json_values import plain_json

EXACT_DOUBLE = 2**53
"""The largest integer magnitude a double holds exactly (and every smaller one)."""


def fill_value(message: struct_pb2.Value, data: Any, field: str) -> None:
    """Fill a ``google.protobuf.Value`` from plain JSON data."""
    if data is None:
        message.null_value = struct_pb2.NULL_VALUE
    elif isinstance(data, bool):
        message.bool_value = data
    elif isinstance(data, int):
        if abs(data) > EXACT_DOUBLE:
            raise ValueConversionError(
                field,
                f"the integer {data} is beyond ±2**53, which a JSON number in protobuf (a double) "
                "cannot hold exactly; send it as a string",
            )
        message.number_value = float(data)
    elif isinstance(data, float):
        message.number_value = data
    elif isinstance(data, str):
        message.string_value = data
    elif isinstance(data, dict):
        struct = message.struct_value
        struct.SetInParent()
        for key, item in data.items():
            fill_value(struct.fields[key], item, f"{field}.{key}")
    elif isinstance(data, list):
        items = message.list_value
        items.SetInParent()
        for i, item in enumerate(data):
            fill_value(items.values.add(), item, f"{field}[{i}]")
    else:
        raise ValueConversionError(field, f"a {type(data).__name__} has no JSON form")


def value_data(message: struct_pb2.Value) -> Any:
    """Plain JSON data for a ``google.protobuf.Value`` (unset means null)."""
    kind = message.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "number_value":
        number = message.number_value
        if number.is_integer() and abs(number) <= EXACT_DOUBLE:
            return int(number)
        return number
    if kind == "struct_value":
        fields = message.struct_value.fields
        return {key: value_data(fields[key]) for key in sorted(fields)}
    if kind == "list_value":
        return [value_data(item) for item in message.list_value.values]
    return getattr(message, kind)


def data_to_struct(data: Mapping[str, Any], field: str = "") -> struct_pb2.Struct:
    """A ``google.protobuf.Struct`` of JSON data (e.g. ``encode_json``'s outputs, by name)."""
    struct = struct_pb2.Struct()
    for key, item in plain_json(dict(data), field).items():
        fill_value(struct.fields[key], item, f"{field}.{key}" if field else key)
    return struct


def struct_to_data(struct: struct_pb2.Struct) -> dict[str, Any]:
    """The JSON data in a ``Struct``, ready for ``json_values.decode_json``."""
    return {key: value_data(struct.fields[key]) for key in sorted(struct.fields)}
