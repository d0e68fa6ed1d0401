"""How generated code names things, where a service and its clients must agree.

``ServiceNames`` (``ServiceNames.of(name)``: the proto file's stem, the proto package and the
typed service of a service's name) is what a generated service directory records
(``context.json``); the field names of the generated messages come from ``proto_field_names``,
which the proto generator and the value conversions (``proto_values``) both call.
"""

from __future__ import annotations

import itertools
import keyword
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

PROTO_DIR = "_proto"
"""The folder of a client package that holds protoc's modules (an import root of its own)."""

# Words of the proto language, and attributes of Python message classes that a field would hide.
PROTO_KEYWORDS = frozenset((
    "syntax", "edition", "import", "weak", "public", "export", "local", "package", "option",
    "message", "enum", "service", "rpc", "returns", "stream", "extend", "extensions", "reserved",
    "to", "max", "oneof", "map", "repeated", "optional", "required", "group", "double", "float",
    "int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32", "fixed64", "sfixed32",
    "sfixed64", "bool", "string", "bytes", "true", "false", "inf", "nan",
))  # fmt: skip
MESSAGE_ATTRIBUTES = frozenset((
    "DESCRIPTOR", "ByteSize", "Clear", "ClearExtension", "ClearField", "CopyFrom",
    "DiscardUnknownFields", "Extensions", "FindInitializationErrors", "FromString",
    "HasExtension", "HasField", "IsInitialized", "ListFields", "MergeFrom", "MergeFromString",
    "ParseFromString", "RegisterExtension", "SerializePartialToString", "SerializeToString",
    "SetInParent", "UnknownFields", "WhichOneof",
))  # fmt: skip
RESERVED_NAMES = PROTO_KEYWORDS | MESSAGE_ATTRIBUTES | frozenset(keyword.kwlist)


@dataclass(frozen=True)
class ServiceNames:
    """How the generated code is named; written to ``context.json`` for the runtime."""

    name: str
    module: str
    """Stem of the proto file and of its ``_pb2`` modules, e.g. ``predict``."""
    package: str
    """The proto package, e.g. ``checkpoint2svc.generated.predict``."""
    service: str
    """The typed gRPC service, e.g. ``PredictService``."""

    @classmethod
    def of(cls, name: str) -> ServiceNames:
        """The names of the service called ``name`` (a manifest's name, e.g. ``predict``)."""
        return cls(name, module_name(name), proto_package(name), service_name(name))

    @property
    def full_service(self) -> str:
        return f"{self.package}.{self.service}"


def component_prefix(service_name: str) -> str:
    """CamelCase of the service name ("image-classifier" -> "ImageClassifier") for schema names."""
    parts = re.split(r"[^0-9A-Za-z]+", service_name)
    return "".join(p[:1].upper() + p[1:] for p in parts) or "Service"


def proto_package(service_name: str) -> str:
    """``checkpoint2svc.generated.<name>``, the name made a proto identifier (``-`` -> ``_``)."""
    leaf = re.sub(r"[^A-Za-z0-9_]", "_", service_name)
    if not leaf or not leaf[0].isalpha():
        leaf = f"svc_{leaf}"
    return f"checkpoint2svc.generated.{leaf}"


def service_name(name: str) -> str:
    """``<CamelName>Service``, e.g. ``ImageClassifierService`` for ``image-classifier``."""
    camel = component_prefix(name)
    if not camel[0].isalpha():
        camel = f"Svc{camel}"
    return f"{camel}Service"


def module_name(service_name: str) -> str:
    """The proto file's stem and its modules' prefix: a Python identifier."""
    module = re.sub(r"[^a-z0-9_]", "_", service_name.lower())
    return module if module[:1].isalpha() else f"svc_{module}"


def json_name(name: str) -> str:
    """protoc's default JSON name of a field: underscores dropped, the next letter upper-cased."""
    out: list[str] = []
    upper = False
    for char in name:
        if char == "_":
            upper = True
        else:
            out.append(char.upper() if upper else char)
            upper = False
    return "".join(out)


def _is_plain(name: str) -> bool:
    return name.isascii() and name.isidentifier() and name not in RESERVED_NAMES


def proto_field_names(keys: Sequence[str]) -> tuple[str, ...]:
    """The proto field name of each key of a record (or variable), in order.

    A key keeps its name when it is an ASCII identifier that is neither a proto keyword, a
    Python keyword nor a message attribute, and its JSON name (which protoc requires to be unique
    within a message) is not already taken by an earlier key. Any other key becomes the first
    free name of ``base``, ``base_``, ``base_2``, ``base_3``, ... where ``base`` is the key with
    characters outside ``[A-Za-z0-9_]`` replaced by ``_`` (and a leading ``_`` before a digit).
    The generator (``checkpoint2svc.codegen.proto``) and the conversions here both call this, so
    the generated messages and the runtime agree on every name.
    """
    names: dict[int, str] = {}
    taken: set[str] = set()

    def free(name: str) -> bool:
        return _is_plain(name) and name not in taken and json_name(name) not in taken_json

    taken_json: set[str] = set()
    for i, key in enumerate(keys):
        if free(key):
            names[i] = key
            taken.add(key)
            taken_json.add(json_name(key))
    for i, key in enumerate(keys):
        if i in names:
            continue
        base = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in key)
        if not base or base[0].isdigit():
            base = f"_{base}"
        name = next(c for c in _candidates(base) if free(c))
        names[i] = name
        taken.add(name)
        taken_json.add(json_name(name))
    return tuple(names[i] for i in range(len(keys)))


def _candidates(base: str) -> Iterator[str]:
    yield base
    yield f"{base}_"
    yield from (f"{base}_{n}" for n in itertools.count(2))
