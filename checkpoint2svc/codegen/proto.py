"""Type IR -> the checkpoint's .proto: a typed model of the file, rendered by ``service.proto.j2``.

Every mapping decision lives in ``build_proto_model``; the template only prints the model. The
shapes are the README's type table, and ``checkpoint2svc.wire.proto_values`` fills and reads
exactly these shapes:

- scalars: bool, int64, double, string, bytes; ``optional[scalar]`` is a proto3 ``optional``;
- a record is a nested message, declared inside the message that uses it;
- ``list[T]`` is ``repeated T``; ``dict[str, T]`` is ``map<string, T>``;
- a list, dict or optional where proto has no direct form (an item of a list, a value of a map,
  an optional list or dict) becomes a wrapper message with one field, ``values`` or ``value``;
  other optional non-scalars rely on the message field's presence;
- tensor, table, series and json are ``checkpoint2svc.v1.Tensor``, ``checkpoint2svc.v1.Table``,
  ``checkpoint2svc.v1.Series`` and ``google.protobuf.Value``, referred to by fully qualified names
  (leading dot), so that a package named like one of theirs cannot capture them.

Field names come from ``proto_field_names`` (proto and Python keywords, message attributes and
JSON-name clashes are renamed deterministically); each field keeps its IR name as ``key``.
The output is deterministic: the same manifest renders to the same bytes.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import assert_never

from checkpoint2svc.checkpoint.manifest import Manifest, Variable
from checkpoint2svc.codegen.build_context import BuildContext
from checkpoint2svc.codegen.resources import protos_dir, template_environment
from checkpoint2svc.errors import Checkpoint2SvcError
from checkpoint2svc.wire.names import (
    RESERVED_NAMES,
    ServiceNames,
    module_name,
    proto_field_names,
    proto_package,
    service_name,
)
from checkpoint2svc.wire.proto_values import (
    signature_record,
)
from checkpoint2svc.wire.type_ir import (
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

TEMPLATE = "service.proto.j2"
SERVICE_PROTO = "service.proto"
"""The file name the template is named after (and the generated modules: ``service_pb2``...)."""
VALUES_PROTO = "checkpoint2svc_protos/v1/values.proto"
NODE_SERVICE_PROTO = "yandex/cloud/datasphere/v1/node_service.proto"
SHARED_PROTOS = (VALUES_PROTO, NODE_SERVICE_PROTO)
"""The hand-written protos under ``protos/``, as protoc sees them (import paths)."""
STRUCT_PROTO = "google/protobuf/struct.proto"

TENSOR_TYPE = ".checkpoint2svc.v1.Tensor"
TABLE_TYPE = ".checkpoint2svc.v1.Table"
SERIES_TYPE = ".checkpoint2svc.v1.Series"
VALUE_TYPE = ".google.protobuf.Value"
SCALAR_TYPES = {
    "bool": "bool",
    "int": "int64",
    "float": "double",
    "str": "string",
    "bytes": "bytes",
}


class ProtoCompileError(Checkpoint2SvcError):
    """protoc rejected a .proto file; the message carries protoc's own diagnostics."""


@dataclass(frozen=True)
class ProtoField:
    name: str
    """The proto field name."""
    key: str
    """The IR's name for it: the variable name or the record key (``name`` unless renamed)."""
    label: str
    """``""``, ``"optional"`` or ``"repeated"``."""
    type: str
    """A scalar type, a message name, or ``map<string, T>``."""
    number: int
    comment: str

    @property
    def renamed(self) -> bool:
        return self.name != self.key


@dataclass(frozen=True)
class ProtoMessage:
    name: str
    comment: str
    fields: tuple[ProtoField, ...]
    messages: tuple[ProtoMessage, ...] = ()
    """Messages declared inside this one (records and wrappers its fields use)."""


@dataclass(frozen=True)
class ProtoRpc:
    name: str
    request: str
    response: str


@dataclass(frozen=True)
class ProtoService:
    name: str
    comment: str
    rpcs: tuple[ProtoRpc, ...]


@dataclass(frozen=True)
class ProtoFile:
    header: tuple[str, ...]
    """Comment lines at the top of the file."""
    package: str
    imports: tuple[str, ...]
    messages: tuple[ProtoMessage, ...]
    service: ProtoService


def service_names(manifest: Manifest) -> ServiceNames:
    """How ``manifest``'s service is named in generated code: module, proto package, service."""
    return ServiceNames.of(manifest.name)


def _comment(text: str) -> str:
    """One line of comment text (column names of a table may hold anything)."""
    return " ".join(text.split())


def _camel(name: str) -> str:
    camel = "".join(part[:1].upper() + part[1:] for part in name.split("_"))
    return camel if camel[:1].isalpha() else f"Field{camel}"


class _Scope:
    """The names inside one message: its fields, and the messages declared in it."""

    def __init__(self, field_names: tuple[str, ...]) -> None:
        self.used = set(field_names)
        self.messages: list[ProtoMessage | None] = []

    def declare(self, hint: str, make: Callable[[str], ProtoMessage]) -> str:
        """Declare a message named ``hint`` (or ``hint2``, ... if taken); returns its name."""
        name, n = hint, 1
        while name in self.used or name in RESERVED_NAMES:
            n += 1
            name = f"{hint}{n}"
        self.used.add(name)
        slot = len(self.messages)
        self.messages.append(None)  # keeps outer messages before the ones they use
        self.messages[slot] = make(name)
        return name

    def declared(self) -> tuple[ProtoMessage, ...]:
        return tuple(m for m in self.messages if m is not None)


class _ModelBuilder:
    def __init__(self) -> None:
        self.imports: set[str] = set()

    def record(self, name: str, record: Record, comment: str) -> ProtoMessage:
        names = proto_field_names([f.name for f in record.fields])
        scope = _Scope(names)
        fields = []
        for number, (f, field_name) in enumerate(zip(record.fields, names, strict=True), 1):
            label, type_ = self.field(scope, f.type, _camel(field_name))
            note = f.type.render()
            if field_name != f.name:
                note = f"{note}; named `{f.name}` in Python"
            fields.append(ProtoField(field_name, f.name, label, type_, number, _comment(note)))
        return ProtoMessage(name, _comment(comment), tuple(fields), scope.declared())

    def field(self, scope: _Scope, type_: TypeIR, hint: str) -> tuple[str, str]:
        """The label and type of a message field holding a ``type_``."""
        if isinstance(type_, Optional):
            inner = type_.inner
            while isinstance(inner, Optional):
                inner = inner.inner
            if isinstance(inner, Scalar):
                return "optional", SCALAR_TYPES[inner.kind]
            if isinstance(inner, ListOf | DictOf):
                return "", self.wrapper(scope, inner, hint)
            return "", self.element(scope, inner, hint)
        if isinstance(type_, ListOf):
            return "repeated", self.element(scope, type_.item, f"{hint}Item")
        if isinstance(type_, DictOf):
            return "", f"map<string, {self.element(scope, type_.value, f'{hint}Value')}>"
        return "", self.element(scope, type_, hint)

    def element(self, scope: _Scope, type_: TypeIR, hint: str) -> str:
        """The type of a ``type_`` where a single type is needed: a list item, a map value."""
        if isinstance(type_, Scalar):
            return SCALAR_TYPES[type_.kind]
        if isinstance(type_, Record):
            return scope.declare(
                hint, lambda name: self.record(name, type_, f"A record: {type_.render()}")
            )
        if isinstance(type_, Tensor):
            self.imports.add(VALUES_PROTO)
            return TENSOR_TYPE
        if isinstance(type_, Table):
            self.imports.add(VALUES_PROTO)
            return TABLE_TYPE
        if isinstance(type_, Series):
            self.imports.add(VALUES_PROTO)
            return SERIES_TYPE
        if isinstance(type_, Json):
            self.imports.add(STRUCT_PROTO)
            return VALUE_TYPE
        if isinstance(type_, ListOf | DictOf | Optional):
            return self.wrapper(scope, type_, hint)
        assert_never(type_)

    def wrapper(self, scope: _Scope, type_: ListOf | DictOf | Optional, hint: str) -> str:
        """A message whose one field holds ``type_``; its own helpers go in the same scope."""
        field_name = "value" if isinstance(type_, Optional) else "values"

        def make(name: str) -> ProtoMessage:
            label, inner = self.field(
                scope, type_, f"{name}Value" if field_name == "value" else name
            )
            return ProtoMessage(
                name,
                _comment(f"Wraps {type_.render()}."),
                (ProtoField(field_name, field_name, label, inner, 1, ""),),
            )

        return scope.declare(hint, make)


def build_proto_model(manifest: Manifest) -> ProtoFile:
    """The model of the checkpoint's .proto: messages ``Input`` and ``Output`` and the service."""
    builder = _ModelBuilder()

    def signature(name: str, variables: list[Variable], what: str) -> ProtoMessage:
        return builder.record(
            name, signature_record(variables), f"The cell's {what}, one field per variable."
        )

    messages = (
        signature("Input", manifest.inputs, "inputs"),
        signature("Output", manifest.outputs, "outputs"),
    )
    service = ProtoService(
        service_name(manifest.name),
        _comment(f"The cell of {manifest.notebook}, as a service: Execute runs it once."),
        (ProtoRpc("Execute", "Input", "Output"),),
    )
    return ProtoFile(
        header=(
            _comment(
                f"Generated by checkpoint2svc from checkpoint {manifest.name!r}; do not edit."
            ),
            "Field comments give each field's type in the type IR (see the README's type table),",
            "and its name in Python where the proto name differs.",
        ),
        package=proto_package(manifest.name),
        imports=tuple(sorted(builder.imports)),
        messages=messages,
        service=service,
    )


def render_proto(manifest: Manifest) -> str:
    """The text of the checkpoint's ``service.proto``."""
    template = template_environment().get_template(TEMPLATE)
    return template.render(file=build_proto_model(manifest))


def _well_known_dir() -> Path:
    import grpc_tools

    return Path(grpc_tools.__file__).resolve().parent / "_proto"


def _protoc(proto_files: list[Path], includes: list[Path], out_dir: Path, what: str) -> None:
    """One protoc (grpcio-tools) run over ``proto_files``: ``_pb2.py``, ``_pb2.pyi`` and
    ``_pb2_grpc.py`` of each, in ``out_dir`` under the file's import path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "grpc_tools.protoc",
        *(f"--proto_path={path}" for path in includes),
        f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}",
        *(str(path) for path in proto_files),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip() or f"exit status {result.returncode}"
        raise ProtoCompileError(f"protoc could not compile {what}:\n{message}")


def compile_protos(proto_file: Path, out_dir: Path) -> None:
    """Run protoc (grpcio-tools) on ``proto_file``: ``_pb2.py``, ``_pb2.pyi``, ``_pb2_grpc.py``.

    The include path is the hand-written ``protos/`` folder, grpc_tools' well-known types, and
    the file's own folder. Modules land in ``out_dir`` under the file's import path.
    """
    proto_file = proto_file.resolve()
    root = protos_dir().resolve()
    includes = [root, _well_known_dir()]
    if not proto_file.is_relative_to(root):
        includes.append(proto_file.parent)
    _protoc([proto_file], includes, out_dir, str(proto_file))


def compile_shared_protos(out_dir: Path) -> None:
    """Compile the hand-written protos (``values_pb2``, ``node_service_pb2(_grpc)``) into
    ``out_dir``; make them importable with ``proto_values.add_generated_path(out_dir)``."""
    root = protos_dir().resolve()
    files = [root / path for path in SHARED_PROTOS]
    _protoc(files, [root, _well_known_dir()], out_dir, " and ".join(SHARED_PROTOS))


def compile_stubs(protos: Mapping[str, bytes]) -> BuildContext:
    """protoc's modules of ``protos`` (file name -> text of a ``.proto`` that may import the
    shared protos) and of the shared protos, from one protoc run (each run starts a Python:
    one instead of three is most of a service's generation time); nothing is left on disk.

    The modules' paths are relative to an import root: ``greet_pb2.py``,
    ``checkpoint2svc_protos/v1/values_pb2.py``... (a service's ``gen/``, a client's ``_proto/``).
    """
    root = protos_dir().resolve()
    with tempfile.TemporaryDirectory(prefix="checkpoint2svc-protoc.") as tmp:
        sources, out = Path(tmp) / "protos", Path(tmp) / "out"
        BuildContext(protos).write_into(sources)
        files = [root / path for path in SHARED_PROTOS] + [sources / name for name in protos]
        _protoc(files, [root, _well_known_dir(), sources], out, " and ".join(protos))
        return BuildContext(
            {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        )


def service_stubs(manifest: Manifest) -> BuildContext:
    """protoc's modules of ``manifest``'s service and of the shared protos (``compile_stubs``):
    a service's ``gen/``, a client's ``_proto/``."""
    proto = f"{module_name(manifest.name)}.proto"
    return compile_stubs({proto: render_proto(manifest).encode()})
