"""Type IR -> a typed Python client package: a model of the package, rendered by ``client/*.j2``.

Every decision lives in ``build_client_model``; the templates print the model. ``render_client``
returns the package as a ``BuildContext`` (``generate`` writes it into a service directory's
``client/``, ``checkpoint2svc client`` on its own)::

    pyproject.toml         the distribution ``<module>-client`` (hatchling)
    README.md              how to install and call it
    <module>_client/
        __init__.py        the public API, re-exported
        models.py          Input, Output (dataclasses), records (TypedDicts), SIGNATURE (the IR)
        rest.py            RestClient, AsyncRestClient over _runtime/rest_client.py
        grpc.py            GrpcClient, AsyncGrpcClient over _runtime/grpc_client.py
        py.typed
        _runtime/          checkpoint2svc's client runtime, copied (``codegen.client_runtime``)
        _proto/            protoc's modules (the service's and the shared ones)

The package does not depend on checkpoint2svc: it needs httpx, orjson, grpcio, grpcio-status and
protobuf (and numpy or pandas when the signature has tensors, tables or series).

Python types follow the README's table: scalars as themselves, ``optional[T]`` as ``T | None``,
lists and dicts as ``list``/``dict``, tensors as ``numpy.typing.NDArray[numpy.<dtype>]`` (a
``numpy.ndarray``), tables as ``pandas.DataFrame``, series as ``pandas.Series``, ``json`` as
``Any``, and each record as a ``TypedDict`` (records are dicts on both sides of the wire, so
nothing is converted; a record used in several places is declared once). The package imports
numpy and pandas for type checkers only; the runtime imports them when it converts a value.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from packaging.version import Version

from checkpoint2svc.checkpoint.manifest import Manifest, Variable
from checkpoint2svc.codegen.build_context import BuildContext
from checkpoint2svc.codegen.client_runtime import RUNTIME_DEPENDENCIES, RUNTIME_DIR, runtime_files
from checkpoint2svc.codegen.proto import service_names, service_stubs
from checkpoint2svc.codegen.python_source import (
    INDENT,
    Call,
    comment,
    from_import,
    import_order,
    literal,
    noqa,
    tuple_of,
)
from checkpoint2svc.codegen.resources import template_environment
from checkpoint2svc.errors import ValueConversionError
from checkpoint2svc.version import __version__
from checkpoint2svc.wire.json_values import decode_json
from checkpoint2svc.wire.names import PROTO_DIR, ServiceNames
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

CLIENT_DIR = "client"
TEMPLATES = "client"
"""The templates' folder; each template is named after the file it renders (plus ``.j2``)."""
PACKAGE_FILES = ("__init__.py", "models.py", "rest.py", "grpc.py")
MAX_RECORD_NAME = 48
"""Records are named after where they are (``InputPointsItem``), cut to this length."""
ARRAYS = (Tensor, Table, Series)
"""The kinds whose Python values compare elementwise, and whose annotation hides the IR type."""


@dataclass(frozen=True)
class PyField:
    """A field of a dataclass or a TypedDict."""

    name: str
    key: str
    """The name as a Python string literal (dict keys, functional TypedDicts)."""
    annotation: str
    comment: tuple[str, ...]
    """Comment lines above the field: the IR type where the annotation does not show it all."""
    default: str
    """``" = None"`` for an optional input, else empty."""
    noqa: str
    """``"  # noqa: E501"`` where the line cannot be shortened, else empty."""


@dataclass(frozen=True)
class RecordModel:
    """A record of the signature, as a ``TypedDict``."""

    name: str
    fields: tuple[PyField, ...]
    functional: bool
    """``TypedDict("Name", {...})`` with quoted types: some key is no plain identifier."""


@dataclass(frozen=True)
class DataclassModel:
    name: str
    doc: str
    decorator: str
    fields: tuple[PyField, ...]


@dataclass(frozen=True)
class Param:
    """A parameter of ``execute``: ``name: annotation = None,`` and its entry ``key: name,``."""

    name: str
    key: str
    annotation: str
    default: str
    noqa: str
    entry_noqa: str


@dataclass(frozen=True)
class ExecuteModel:
    receiver: str
    """``self``, unless an input has that name."""
    params: tuple[Param, ...]


@dataclass(frozen=True)
class ClientClass:
    """One of the four client classes: REST or gRPC, blocking or asyncio."""

    name: str
    base: str
    asynchronous: bool
    summary: str
    usage: tuple[str, ...]
    """The lines of a short example, for the class's docstring."""


@dataclass(frozen=True)
class ClientPackage:
    distribution: str
    package: str
    version: str
    description: str
    dependencies: tuple[str, ...]
    generator: str
    """``checkpoint2svc <version>``."""
    name: str
    """The service's (checkpoint's) name."""
    origin: str
    """Where the cell comes from, safe inside a docstring: ``cell 3 of classifier.ipynb``."""
    module: str
    service: str
    full_service: str
    records: tuple[RecordModel, ...]
    input: DataclassModel
    output: DataclassModel
    signature: tuple[str, ...]
    """The lines of ``SIGNATURE = Signature(...)``: the IR of the inputs and outputs."""
    execute: ExecuteModel
    rest_clients: tuple[ClientClass, ...]
    grpc_clients: tuple[ClientClass, ...]
    example_call: tuple[str, ...]
    """The lines of a call on the pinned example inputs (``...`` where one is too long)."""
    signature_lines: tuple[str, ...]
    """The inputs and outputs as ``name: IR type`` lines, for the README."""
    models_typing: tuple[str, ...]
    """The ``from typing import ...`` of ``models.py`` (maybe none)."""
    models_type_checking: tuple[str, ...]
    """Imports of ``models.py`` for annotations only (numpy, pandas): ``if TYPE_CHECKING:``."""
    call_typing: tuple[str, ...]
    """The ``from typing import ...`` of ``rest.py`` and ``grpc.py`` (maybe none)."""
    call_type_checking: tuple[str, ...]
    """Imports of ``rest.py`` and ``grpc.py`` for annotations only."""
    models_import: tuple[str, ...]
    """How ``rest.py`` and ``grpc.py`` import from ``models.py``."""
    init_models_import: tuple[str, ...]
    """How ``__init__.py`` imports from ``models.py``."""
    exports: tuple[str, ...]
    """``__all__`` of the package."""


def _ir(type_: TypeIR) -> Call:
    """The expression that builds ``type_`` from ``checkpoint2svc.wire.type_ir`` (``ir``)."""
    if isinstance(type_, Scalar):
        return Call("ir.Scalar(", (literal(type_.kind),))
    if isinstance(type_, Optional):
        return Call("ir.Optional(", (_ir(type_.inner),))
    if isinstance(type_, ListOf):
        return Call("ir.ListOf(", (_ir(type_.item),))
    if isinstance(type_, DictOf):
        return Call("ir.DictOf(", (_ir(type_.value),))
    if isinstance(type_, Record):
        fields = (Call("ir.Field(", (literal(f.name), _ir(f.type))) for f in type_.fields)
        return Call("ir.Record(", (tuple_of(fields),))
    if isinstance(type_, Tensor):
        return Call("ir.Tensor(", (literal(type_.dtype), tuple_of(str(d) for d in type_.shape)))
    if isinstance(type_, Table):
        columns = (Call("ir.Column(", (literal(c.name), literal(c.dtype))) for c in type_.columns)
        return Call("ir.Table(", (tuple_of(columns),))
    if isinstance(type_, Series):
        named = () if type_.name is None else (literal(type_.name),)
        return Call("ir.Series(", (literal(type_.dtype), literal(type_.index), *named))
    return Call("ir.Json(", ())


# ----------------------------------------------------------------------- Python types


def _camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[^0-9A-Za-z]+", name) if p)


def _plain_key(key: str) -> bool:
    """A key that can be a field of a class-syntax TypedDict (no keyword, no name mangling)."""
    return key.isidentifier() and not keyword.iskeyword(key) and not key.startswith("__")


def _contains(type_: TypeIR, kinds: tuple[type, ...]) -> bool:
    if isinstance(type_, kinds):
        return True
    if isinstance(type_, Optional):
        return _contains(type_.inner, kinds)
    if isinstance(type_, ListOf):
        return _contains(type_.item, kinds)
    if isinstance(type_, DictOf):
        return _contains(type_.value, kinds)
    if isinstance(type_, Record):
        return any(_contains(f.type, kinds) for f in type_.fields)
    return False


class _Types:
    """Python annotations for IR types; declares a TypedDict per distinct record."""

    def __init__(self) -> None:
        self.records: list[RecordModel] = []
        self._names: dict[Record, str] = {}
        self._used = {"Input", "Output", "SIGNATURE"}

    def annotation(self, type_: TypeIR, hint: str) -> str:
        if isinstance(type_, Scalar):
            return type_.kind
        if isinstance(type_, Optional):
            inner = type_.inner
            while isinstance(inner, Optional):
                inner = inner.inner
            return f"{self.annotation(inner, hint)} | None"
        if isinstance(type_, ListOf):
            return f"list[{self.annotation(type_.item, f'{hint}Item')}]"
        if isinstance(type_, DictOf):
            return f"dict[str, {self.annotation(type_.value, f'{hint}Value')}]"
        if isinstance(type_, Record):
            return self._record(type_, hint)
        if isinstance(type_, Tensor):
            scalar = "bool_" if type_.dtype == "bool" else type_.dtype
            return f"NDArray[numpy.{scalar}]"
        if isinstance(type_, Table):
            return "pandas.DataFrame"
        if isinstance(type_, Series):
            return "pandas.Series"
        return "Any"

    def _record(self, record: Record, hint: str) -> str:
        if record in self._names:
            return self._names[record]
        hint = hint[:MAX_RECORD_NAME]
        name, n = hint, 1
        while name in self._used:
            n += 1
            name = f"{hint}{n}"
        self._used.add(name)
        self._names[record] = name
        functional = not all(_plain_key(f.name) for f in record.fields)
        indent = INDENT * 2 if functional else INDENT
        fields = tuple(
            _py_field(
                f.name, self.annotation(f.type, f"{name}{_camel(f.name)}"), f.type, indent,
                quoted=functional,
            )
            for f in record.fields
        )  # fmt: skip
        self.records.append(RecordModel(name, fields, functional))
        return name


def _py_field(
    name: str, annotation: str, type_: TypeIR, indent: str, quoted: bool = False, default: str = ""
) -> PyField:
    """A field at ``indent``; ``quoted``: as an entry ``"key": "type",`` of a functional
    TypedDict."""
    key = literal(name)
    line = f'{indent}{key}: "{annotation}",' if quoted else f"{indent}{name}: {annotation}{default}"
    lines = comment(type_.render(), indent) if _contains(type_, ARRAYS) else ()
    return PyField(name, key, annotation, lines, default, noqa(line))


# ---------------------------------------------------------------------------- the model


def _example(data: Any, type_: TypeIR) -> str | None:
    """A Python literal of the example value ``data`` (JSON), if it has a short, plain one."""
    if isinstance(type_, Optional):
        return "None" if data is None else _example(data, type_.inner)
    if (isinstance(type_, Scalar) and type_.kind != "bytes") or isinstance(type_, Json):
        try:
            value = decode_json(data, type_)
        except ValueConversionError:  # an example that does not decode is left out
            return None
        return literal(value) if isinstance(value, str) else repr(value)
    if isinstance(type_, ListOf) and isinstance(data, list):
        items = [_example(item, type_.item) for item in data]
        return None if None in items else f"[{', '.join(i for i in items if i is not None)}]"
    return None


def _example_call(variables: list[Variable]) -> tuple[str, ...]:
    """``execute(...)`` on the pinned example inputs; long or unprintable ones become ``...``.

    The lines fit in a class's docstring (after ``output = await client.`` or indented).
    """
    args = []
    for v in variables:
        literal = _example(v.example, v.type)
        usable = (
            literal is not None
            and len(literal) <= 60
            and len(v.name) + len(literal) <= 80
            and _docstring_text(literal) == literal
        )
        args.append(f"{v.name}={literal if usable else '...'}")
    one_line = f"execute({', '.join(args)})"
    if len(one_line) <= 60 or not args:
        return (one_line,)
    return ("execute(", *(f"{INDENT}{a}," for a in args), ")")


def _docstring_text(text: str) -> str:
    """``text`` safe inside a docstring: printable, no backslash, no quotes that would end it."""
    safe = "".join(c if c.isprintable() else " " for c in text).replace("\\", "/")
    return safe.replace('"' * 3, "'" * 3)


def _usage(
    client_class: str, arguments: str, example: tuple[str, ...], asynchronous: bool = False
) -> tuple[str, ...]:
    """``with Client(arguments) as client:`` and the example call inside it."""
    return (
        f"{'async ' * asynchronous}with {client_class}({arguments}) as client:",
        f"{INDENT}output = {'await ' * asynchronous}client.{example[0]}",
        *(f"{INDENT}{line}" for line in example[1:]),
    )


def _clients(
    protocol: str, runtime: str, address: str, example: tuple[str, ...]
) -> tuple[ClientClass, ...]:
    transport = "REST" if protocol == "Rest" else "gRPC"
    classes = []
    for asynchronous in (False, True):
        prefix = "Async" if asynchronous else ""
        usage = _usage(f"{prefix}{protocol}Client", address, example, asynchronous)
        how = "with asyncio" if asynchronous else "blocking"
        classes.append(
            ClientClass(
                name=f"{prefix}{protocol}Client",
                base=f"{runtime}.{prefix}{protocol}Client",
                asynchronous=asynchronous,
                summary=f"Calls the service over {transport}, {how}",
                usage=usage,
            )
        )
    return tuple(classes)


@dataclass(frozen=True)
class _Needs:
    """What some annotations refer to, beyond builtins."""

    typing: tuple[str, ...]
    """``Any``, if used."""
    type_checking: tuple[str, ...]
    """Import lines of numpy and pandas, for type checkers only."""
    records: tuple[str, ...]

    @classmethod
    def of(cls, annotations: Iterable[str], records: Iterable[str]) -> _Needs:
        names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", " ".join(annotations)))
        imports = [
            *(["import numpy"] if "numpy" in names else []),
            *(["import pandas"] if "pandas" in names else []),
            *(["from numpy.typing import NDArray"] if "NDArray" in names else []),
        ]
        return cls(
            typing=("Any",) if "Any" in names else (),
            type_checking=tuple(imports),
            records=tuple(r for r in records if r in names),
        )

    def typing_import(self, *more: str) -> tuple[str, ...]:
        """The ``from typing import ...`` line(s): these names, ``more``, and TYPE_CHECKING
        when numpy or pandas are imported for annotations."""
        names = [*self.typing, *more, *(["TYPE_CHECKING"] if self.type_checking else [])]
        return from_import("typing", names) if names else ()


def _dependencies(needs: _Needs) -> tuple[str, ...]:
    # The protoc modules in _proto/ refuse a grpcio or protobuf older than the tools that wrote
    # them: client_model raises these bounds to those versions once it has compiled them.
    dependencies = list(RUNTIME_DEPENDENCIES)
    if "import numpy" in needs.type_checking:
        dependencies.append("numpy>=1.26")
    if "import pandas" in needs.type_checking:
        dependencies.append("pandas>=2.1")
    return tuple(dependencies)


def _dataclass(
    name: str, doc: str, variables: list[Variable], types: _Types, output: bool
) -> DataclassModel:
    fields = []
    for v in variables:
        optional = isinstance(v.type, Optional) and not output
        annotation = types.annotation(v.type, f"{name}{_camel(v.name)}")
        fields.append(_py_field(v.name, annotation, v.type, INDENT, default=" = None" * optional))
    arrays = any(_contains(v.type, ARRAYS) for v in variables)
    options = ["frozen=True"] if output else []
    options.append("kw_only=True")
    if arrays:  # == on arrays, frames and series is elementwise: compare them yourself
        options.append("eq=False")
    return DataclassModel(name, doc, f"dataclass({', '.join(options)})", tuple(fields))


def build_client_model(manifest: Manifest, names: ServiceNames) -> ClientPackage:
    """The model of the client package of ``manifest``'s service."""
    types = _Types()
    input_model = _dataclass(
        "Input", "The cell's inputs: the arguments of ``execute``.", manifest.inputs, types, False
    )
    output_model = _dataclass(
        "Output", "The cell's outputs: what ``execute`` returns.", manifest.outputs, types, True
    )
    input_names = {v.name for v in manifest.inputs}
    receiver = "self"
    while receiver in input_names:
        receiver += "_"
    params = tuple(
        Param(
            f.name, f.key, f.annotation, f.default,
            noqa=noqa(f"{INDENT * 2}{f.name}: {f.annotation}{f.default},"),
            entry_noqa=noqa(f"{INDENT * 4}{f.key}: {f.name},"),
        )
        for f in input_model.fields
    )  # fmt: skip

    def record(prefix: str, variables: list[Variable]) -> Call:
        fields = (Call("ir.Field(", (literal(v.name), _ir(v.type))) for v in variables)
        return Call(f"{prefix}=ir.Record(", (tuple_of(fields),))

    signature = Call(
        "SIGNATURE = Signature(",
        (record("inputs", manifest.inputs), record("outputs", manifest.outputs)),
    )
    records = [r.name for r in types.records]
    fields = [f for r in types.records for f in r.fields]
    models_needs = _Needs.of(
        (f.annotation for f in (*fields, *input_model.fields, *output_model.fields)), records
    )
    call_needs = _Needs.of((p.annotation for p in params), records)
    example = _example_call(manifest.inputs)
    exports = [
        "AsyncGrpcClient", "AsyncRestClient", "ClientError", "ExecutionError", "GrpcClient",
        "Input", "Output", "RestClient", "ServiceError", "ValidationError", *records,
    ]  # fmt: skip
    return ClientPackage(
        distribution=f"{names.module.replace('_', '-')}-client",
        package=f"{names.module}_client",
        version=__version__,
        description=(
            f"Typed client (REST and gRPC, sync and async) of the {manifest.name} service, "
            "generated by checkpoint2svc."
        ),
        dependencies=_dependencies(models_needs),
        generator=f"checkpoint2svc {__version__}",
        name=manifest.name,
        origin=_docstring_text(f"cell {manifest.cell.index} of {manifest.notebook}"),
        module=names.module,
        service=names.service,
        full_service=names.full_service,
        records=tuple(types.records),
        input=input_model,
        output=output_model,
        signature=tuple(signature.lines()),
        execute=ExecuteModel(receiver, params),
        rest_clients=_clients("Rest", "rest_client", '"http://127.0.0.1:8080"', example),
        grpc_clients=_clients("Grpc", "grpc_client", '"127.0.0.1:9090"', example),
        example_call=example,
        signature_lines=(
            "inputs:",
            *(f"{INDENT}{v.name}: {' '.join(v.type.render().split())}" for v in manifest.inputs),
            "outputs:",
            *(f"{INDENT}{v.name}: {' '.join(v.type.render().split())}" for v in manifest.outputs),
        ),
        models_typing=models_needs.typing_import(*(["TypedDict"] if records else [])),
        models_type_checking=models_needs.type_checking,
        call_typing=call_needs.typing_import(),
        call_type_checking=call_needs.type_checking,
        models_import=from_import(".models", ["SIGNATURE", "Output", *call_needs.records]),
        init_models_import=from_import(".models", ["Input", "Output", *records]),
        exports=tuple(sorted(exports, key=import_order)),
    )


# -------------------------------------------------------------------------- rendering


def client_files(model: ClientPackage) -> dict[str, str]:
    """The package's files (relative path -> text), each rendered by the template named after
    it, and the runtime's copies; protoc's modules are not among them (``render_client`` adds
    those)."""
    environment = template_environment()
    files = {
        "pyproject.toml": "pyproject.toml",
        "README.md": "README.md",
        **{f"{model.package}/{name}": name for name in PACKAGE_FILES},
    }
    rendered = {
        path: environment.get_template(f"{TEMPLATES}/{template}.j2").render(client=model)
        for path, template in files.items()
    }
    rendered[f"{model.package}/py.typed"] = ""
    for name, text in runtime_files().items():
        rendered[f"{model.package}/{RUNTIME_DIR}/{name}"] = text
    return rendered


def example_program(
    model: ClientPackage, rest_url: str, grpc_target: str, **options: str
) -> tuple[str, ...]:
    """The lines of a short program that calls the service on the pinned example inputs with the
    blocking clients and prints the outputs; ``options`` are more arguments of both clients'
    constructors, e.g. ``node_id="greeter"`` for a gateway."""
    more = "".join(f", {key}={literal(value)}" for key, value in options.items())
    lines = [f"from {model.package} import GrpcClient, RestClient", ""]
    for name, address in (("RestClient", rest_url), ("GrpcClient", grpc_target)):
        lines += _usage(name, f"{literal(address)}{more}", model.example_call)
        lines.append(f"{INDENT}print(output)")
    return tuple(lines)


def client_model(manifest: Manifest, stubs: BuildContext) -> ClientPackage:
    """The model of the client package of ``manifest``'s service, whose ``_proto/`` holds
    ``stubs`` (``service_stubs``): it requires at least the grpcio and protobuf they check for."""
    names = service_names(manifest)
    model = build_client_model(manifest, names)
    bounds = stub_requirements(stubs, names.module)
    return replace(model, dependencies=raised_bounds(model.dependencies, bounds))


def client_context(model: ClientPackage, stubs: BuildContext) -> BuildContext:
    """The files of the package ``model`` (``pip install`` the folder they are written to), with
    ``stubs`` in its ``_proto/``."""
    files = BuildContext.of_text(client_files(model))
    return files.merged(stubs.under(f"{model.package}/{PROTO_DIR}"))


def render_client(manifest: Manifest, stubs: BuildContext | None = None) -> BuildContext:
    """The client package of ``manifest``'s service, with protoc's modules ``stubs`` (compiled
    here when not given: pass a service's own to run protoc once for both)."""
    stubs = stubs if stubs is not None else service_stubs(manifest)
    return client_context(client_model(manifest, stubs), stubs)


_PROTOBUF_GENCODE = re.compile(
    r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),"
)
_GRPC_GENERATED = re.compile(r"^GRPC_GENERATED_VERSION = '([\d.]+)'", re.MULTILINE)


def stub_requirements(stubs: BuildContext, module: str) -> dict[str, str]:
    """The protobuf and grpcio versions that protoc's modules of ``module`` in ``stubs`` check
    for at import (older ones make them raise), e.g. ``{"protobuf": "7.35.1", "grpcio":
    "1.85.1"}``; a module that checks nothing adds nothing."""
    found = {}
    messages = stubs.text(f"{module}_pb2.py")
    if match := _PROTOBUF_GENCODE.search(messages):
        found["protobuf"] = ".".join(match.groups())
    services = stubs.text(f"{module}_pb2_grpc.py")
    if match := _GRPC_GENERATED.search(services):
        found["grpcio"] = match.group(1)
    return found


def raised_bounds(requirements: tuple[str, ...], minimum: dict[str, str]) -> tuple[str, ...]:
    """``requirements`` (``name>=version``) with each lower bound raised to ``minimum[name]``
    where that is newer."""
    raised = []
    for requirement in requirements:
        name, _, bound = requirement.partition(">=")
        if name in minimum and Version(minimum[name]) > Version(bound):
            requirement = f"{name}>={minimum[name]}"
        raised.append(requirement)
    return tuple(raised)
