"""Type IR -> a typed Python client package: a model of the package, rendered by ``client/*.j2``.

Every decision lives in ``build_client_model``; the templates print the model. ``render_client``
returns the package as a ``BuildContext`` (``generate`` writes it into a service directory's
``client/``, ``checkpoint2svc client`` on its own)::

    pyproject.toml         the distribution ``<module>-client`` (hatchling)
    README.md              how to install and call it
    <module>_client/
        __init__.py        the public API, re-exported
        models.py          Input, Output (dataclasses), records (TypedDicts), SIGNATURE (the IR)
        rest.py            RestClient, AsyncRestClient over _wire/rest_client.py
        grpc.py            GrpcClient, AsyncGrpcClient over _wire/grpc_client.py
        py.typed
        _wire/             checkpoint2svc's ``wire`` package, copied (``codegen.client_wire``)
        _proto/            protoc's modules (the service's and the shared ones)

The package does not depend on checkpoint2svc: it needs httpx, orjson, grpcio, grpcio-status and
protobuf (and numpy or pandas when the signature has tensors, tables or series).

Python types follow the README's table: scalars as themselves, ``optional[T]`` as ``T | None``,
lists and dicts as ``list``/``dict``, tensors as ``numpy.typing.NDArray[numpy.<dtype>]`` (a
``numpy.ndarray``), tables as ``pandas.DataFrame``, series as ``pandas.Series``, ``json`` as
``Any``, and each record as a ``TypedDict`` (records are dicts on both sides of the wire, so
nothing is converted; a record used in several places is declared once): ``codegen.client_types``
maps the types. The package imports numpy and pandas for type checkers only; its copy of the
wire imports them when it converts a value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from packaging.version import Version

from checkpoint2svc.checkpoint.manifest import Manifest, Variable
from checkpoint2svc.codegen.build_context import BuildContext
from checkpoint2svc.codegen.client_types import (
    ARRAYS,
    AnnotationNeeds,
    PyField,
    PythonTypes,
    RecordModel,
    camel,
    contains,
    ir_expression,
    py_field,
)
from checkpoint2svc.codegen.client_wire import WIRE_DEPENDENCIES, WIRE_DIR, wire_files
from checkpoint2svc.codegen.proto import service_names, service_stubs
from checkpoint2svc.codegen.python_source import (
    INDENT,
    Call,
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
from checkpoint2svc.wire.type_ir import Json, ListOf, Optional, Scalar, TypeIR

CLIENT_DIR = "client"
TEMPLATES = "client"
"""The templates' folder; each template is named after the file it renders (plus ``.j2``)."""
PACKAGE_FILES = ("__init__.py", "models.py", "rest.py", "grpc.py")


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
    protocol: str, module: str, address: str, example: tuple[str, ...]
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
                base=f"{module}.{prefix}{protocol}Client",
                asynchronous=asynchronous,
                summary=f"Calls the service over {transport}, {how}",
                usage=usage,
            )
        )
    return tuple(classes)


def _dependencies(needs: AnnotationNeeds) -> tuple[str, ...]:
    # The protoc modules in _proto/ refuse a grpcio or protobuf older than the tools that wrote
    # them: client_model raises these bounds to those versions once it has compiled them.
    dependencies = list(WIRE_DEPENDENCIES)
    if "import numpy" in needs.type_checking:
        dependencies.append("numpy>=1.26")
    if "import pandas" in needs.type_checking:
        dependencies.append("pandas>=2.1")
    return tuple(dependencies)


def _dataclass(
    name: str, doc: str, variables: list[Variable], types: PythonTypes, output: bool
) -> DataclassModel:
    fields = []
    for v in variables:
        optional = isinstance(v.type, Optional) and not output
        annotation = types.annotation(v.type, f"{name}{camel(v.name)}")
        fields.append(py_field(v.name, annotation, v.type, INDENT, default=" = None" * optional))
    arrays = any(contains(v.type, ARRAYS) for v in variables)
    options = ["frozen=True"] if output else []
    options.append("kw_only=True")
    if arrays:  # == on arrays, frames and series is elementwise: compare them yourself
        options.append("eq=False")
    return DataclassModel(name, doc, f"dataclass({', '.join(options)})", tuple(fields))


def build_client_model(manifest: Manifest, names: ServiceNames) -> ClientPackage:
    """The model of the client package of ``manifest``'s service."""
    types = PythonTypes()
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
        fields = (Call("ir.Field(", (literal(v.name), ir_expression(v.type))) for v in variables)
        return Call(f"{prefix}=ir.Record(", (tuple_of(fields),))

    signature = Call(
        "SIGNATURE = Signature(",
        (record("inputs", manifest.inputs), record("outputs", manifest.outputs)),
    )
    records = [r.name for r in types.records]
    fields = [f for r in types.records for f in r.fields]
    models_needs = AnnotationNeeds.of(
        (f.annotation for f in (*fields, *input_model.fields, *output_model.fields)), records
    )
    call_needs = AnnotationNeeds.of((p.annotation for p in params), records)
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
    it, and the copy of the wire package; protoc's modules are not among them (``render_client``
    adds those)."""
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
    for name, text in wire_files().items():
        rendered[f"{model.package}/{WIRE_DIR}/{name}"] = text
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
