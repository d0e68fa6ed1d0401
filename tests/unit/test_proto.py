"""Type IR -> .proto -> protoc -> generated messages, and Python values through them and back."""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pytest
from google.protobuf import struct_pb2

from checkpoint2svc.checkpoint.manifest import Manifest, TargetCell, Variable
from checkpoint2svc.codegen.proto import (
    ProtoCompileError,
    build_proto_model,
    compile_protos,
    compile_shared_protos,
    render_proto,
)
from checkpoint2svc.codegen.resources import protos_dir, templates_dir
from checkpoint2svc.errors import ValueConversionError
from checkpoint2svc.wire.json_values import decode_json
from checkpoint2svc.wire.names import json_name, proto_field_names, proto_package, service_name
from checkpoint2svc.wire.proto_struct import data_to_struct, struct_to_data
from checkpoint2svc.wire.proto_values import (
    RecordCodec,
    decode_message,
    encode_message,
    import_generated,
    signature_record,
)
from checkpoint2svc.wire.type_ir import (
    Column,
    DictOf,
    Field,
    Json,
    ListOf,
    Optional,
    Record,
    Scalar,
    Table,
    Tensor,
    TypeIR,
)

POINT = Record((Field("x", Scalar("float")), Field("label", Optional(Scalar("str")))))
FRAME_TYPE = Table(
    (
        Column("n", "int64"),
        Column("celsius", "float64"),
        Column("city", "string"),
        Column("ok", "bool"),
        Column("small", "uint8"),
        Column("tiny", "int8"),
        Column("ratio", "float32"),
        Column("when", "datetime64[ns]"),
        Column("a column name with spaces", "uint64"),
    )
)
FRAME = pd.DataFrame(
    {
        "n": [1, -2, 3],
        "celsius": [3.5, np.nan, -1.0],
        "city": ["Oslo", None, "Lima"],
        "ok": [True, False, True],
        "small": np.array([0, 255, 7], dtype=np.uint8),
        "tiny": np.array([-128, 127, 0], dtype=np.int8),
        "ratio": np.array([0.5, 1.25, -2.0], dtype=np.float32),
        "when": pd.to_datetime(
            ["2024-01-02T03:04:05.123456789", None, "1969-12-31T23:59:59.000000001"]
        ).astype("datetime64[ns]"),
        "a column name with spaces": np.array([0, 2**64 - 1, 1], dtype=np.uint64),
    }
)
KEYWORDS = Record(
    (
        Field("message", Scalar("int")),
        Field("string", Scalar("str")),
        Field("DESCRIPTOR", Scalar("bool")),
        Field("class", Scalar("float")),
        Field("a_b", Scalar("int")),
        Field("aB", Scalar("int")),
        Field("café", Scalar("str")),
        Field("message_", Scalar("int")),
    )
)
NESTED = Record(
    (
        Field("origin", POINT),
        Field("path", ListOf(POINT)),
        Field("meta", DictOf(Json())),
        Field("parent", Optional(POINT)),
        Field("tags", Optional(ListOf(Scalar("str")))),
        Field("inner", Record((Field("deeper", Record((Field("n", Scalar("int")),))),))),
    )
)
PY_FLOAT32 = np.float32(2.5)
TRANSPOSED = np.arange(6, dtype=np.float64).reshape(2, 3).T

# (variable, type, value, the value expected back when it differs from the value sent)
CASES: list[tuple[str, TypeIR, Any, Any]] = [
    ("flag", Scalar("bool"), True, True),
    ("count", Scalar("int"), -3, -3),
    ("count_big", Scalar("int"), 2**63 - 1, 2**63 - 1),
    ("count_numpy", Scalar("int"), np.int64(7), 7),
    ("ratio", Scalar("float"), 3.5, 3.5),
    ("ratio_from_int", Scalar("float"), 2, 2.0),
    ("ratio_numpy", Scalar("float"), PY_FLOAT32, 2.5),
    ("text", Scalar("str"), "héllo", "héllo"),
    ("blob", Scalar("bytes"), b"\x00\xff", b"\x00\xff"),
    ("maybe_zero", Optional(Scalar("int")), 0, 0),
    ("maybe_none", Optional(Scalar("int")), None, None),
    ("maybe_empty_text", Optional(Scalar("str")), "", ""),
    ("floats", ListOf(Scalar("float")), [1.0, 2.5], [1.0, 2.5]),
    ("no_strings", ListOf(Scalar("str")), [], []),
    ("tuple_list", ListOf(Scalar("int")), (1, 2), [1, 2]),
    ("matrix", ListOf(ListOf(Scalar("float"))), [[1.0], [], [2.0, 3.0]], None),
    ("cube", ListOf(ListOf(ListOf(Scalar("int")))), [[[1], []], [], [[2, 3]]], None),
    ("counts", DictOf(Scalar("int")), {"b": 1, "not an identifier": 2}, None),
    ("point", POINT, {"x": 1.5, "label": None}, None),
    ("points", ListOf(POINT), [{"x": 1.0, "label": "a"}, {"x": 0.0, "label": None}], None),
    (
        "lookup",
        DictOf(POINT),
        {"home": {"x": 1.0, "label": "h"}, "": {"x": 2.0, "label": None}},
        None,
    ),
    (
        "nested",
        NESTED,
        {
            "origin": {"x": 0.0, "label": None},
            "path": [{"x": 1.0, "label": "p"}],
            "meta": {"k": [1, "two", None, {"deep": True}], "pi": 3.25},
            "parent": None,
            "tags": [],
            "inner": {"deeper": {"n": 0}},
        },
        None,
    ),
    (
        "nested_set",
        NESTED,
        {
            "origin": {"x": 0.5, "label": ""},
            "path": [],
            "meta": {},
            "parent": {"x": 9.0, "label": "up"},
            "tags": None,
            "inner": {"deeper": {"n": -1}},
        },
        None,
    ),
    (
        "keywords",
        KEYWORDS,
        {
            "message": 1,
            "string": "s",
            "DESCRIPTOR": True,
            "class": 1.5,
            "a_b": 2,
            "aB": 3,
            "café": "c",
            "message_": 4,
        },
        None,
    ),
    ("maybe_list_none", Optional(ListOf(Scalar("int"))), None, None),
    ("maybe_list_empty", Optional(ListOf(Scalar("int"))), [], []),
    ("maybe_dict", Optional(DictOf(Scalar("float"))), {"a": 1.0}, None),
    ("maybe_point", Optional(POINT), {"x": 2.0, "label": "m"}, None),
    ("maybe_point_none", Optional(POINT), None, None),
    ("maybe_maybe", Optional(Optional(Scalar("str"))), "x", "x"),
    ("optional_items", ListOf(Optional(Scalar("int"))), [1, None, 0], None),
    ("optional_lists", ListOf(Optional(ListOf(Scalar("int")))), [[1], None, []], None),
    ("dict_of_lists", DictOf(ListOf(Scalar("str"))), {"a": ["x"], "b": []}, None),
    ("list_of_dicts", ListOf(DictOf(Scalar("int"))), [{"a": 1}, {}], None),
    ("dict_of_optionals", DictOf(Optional(Scalar("float"))), {"a": None, "b": 0.0}, None),
    ("tensor_2d", Tensor("float32", (-1, 3)), np.arange(6, dtype=np.float32).reshape(2, 3), None),
    ("tensor_0d", Tensor("int64", ()), np.array(7, dtype=np.int64), None),
    ("tensor_empty", Tensor("float64", (-1, 3)), np.zeros((0, 3)), None),
    ("tensor_bool", Tensor("bool", (-1,)), np.array([True, False]), None),
    ("tensor_uint8", Tensor("uint8", (-1, 2, 2)), np.full((1, 2, 2), 255, dtype=np.uint8), None),
    ("tensor_f16", Tensor("float16", (2,)), np.array([0.5, -1.0], dtype=np.float16), None),
    ("tensor_uint64", Tensor("uint64", (1,)), np.array([2**64 - 1], dtype=np.uint64), None),
    ("tensor_transposed", Tensor("float64", (3, 2)), TRANSPOSED, np.ascontiguousarray(TRANSPOSED)),
    (
        "tensor_big_endian",
        Tensor("int32", (2,)),
        np.array([1, -2], dtype=">i4"),
        np.array([1, -2], dtype=np.int32),
    ),
    (
        "tensor_cast",
        Tensor("float32", (-1,)),
        np.array([1, 2]),
        np.array([1.0, 2.0], dtype=np.float32),
    ),
    ("tensors", ListOf(Tensor("float64", (-1,))), [np.array([1.0]), np.array([2.0, 3.0])], None),
    ("maybe_tensor", Optional(Tensor("float64", (-1,))), None, None),
    ("frame", FRAME_TYPE, FRAME, None),
    ("frame_empty", FRAME_TYPE, FRAME.iloc[:0], None),
    ("frames", DictOf(Table((Column("a", "int64"),))), {"t": pd.DataFrame({"a": [1, 2]})}, None),
    ("json_object", Json(), {"any": [1, "x", None, {"nested": True}], "pi": 3.25}, None),
    ("json_scalar", Json(), "just a string", None),
    ("json_null", Json(), None, None),
    ("json_numpy", Json(), np.array([1, 2]), [1, 2]),
    ("maybe_json", Optional(Json()), None, None),
    ("maybe_json_set", Optional(Json()), [1.5, False], None),
    ("optional_json_items", ListOf(Optional(Json())), [None, {"a": 1}], None),
    ("dict_of_dicts", DictOf(DictOf(Scalar("int"))), {"a": {"b": 1}, "c": {}}, None),
    ("maybe_dict_none", Optional(DictOf(Scalar("int"))), None, None),
    ("maybe_frame", Optional(Table((Column("a", "bool"),))), pd.DataFrame({"a": [True]}), None),
    ("string", Scalar("str"), "a proto keyword as a variable name", None),
    ("input", POINT, {"x": -1.0, "label": "named like its message"}, None),
]

OUTPUTS = [
    Variable("scores", Tensor("float32", (-1,)), None),
    Variable("table", Table((Column("label", "string"), Column("p", "float64"))), None),
    Variable("by_name", DictOf(POINT), None),
]


def manifest(name: str, inputs: list[Variable], outputs: list[Variable]) -> Manifest:
    return Manifest(
        name=name,
        notebook="demo.ipynb",
        notebook_sha256="0" * 64,
        cell=TargetCell("cell-1", 1, "y = f(x)", "y = f(x)"),
        inputs=inputs,
        outputs=outputs,
        mode="isolated",
        python_version="3.11",
        requirements=[],
        state=[],
        excluded=[],
        files={},
        created="2024-01-01T00:00:00Z",
        checkpoint2svc_version="0",
    )


EVERY_KIND = manifest("every-kind", [Variable(n, t, None) for n, t, _, _ in CASES], OUTPUTS)


@contextmanager
def generated(folder: Path) -> Iterator[Callable[[str], ModuleType]]:
    """Import generated modules from ``folder``; afterwards forget them and the import paths."""
    saved_path = list(sys.path)
    before = set(sys.modules)
    try:
        yield lambda module: import_generated(module, folder)
    finally:
        sys.path[:] = saved_path
        stale = [
            name
            for name in sorted(set(sys.modules) - before)
            if any(str(place).startswith(str(folder)) for place in _places(sys.modules[name]))
        ]
        for name in stale:
            del sys.modules[name]


def _places(module: ModuleType) -> list[str]:
    """Where a module was loaded from: its file, or a (namespace) package's folders."""
    return [getattr(module, "__file__", None) or "", *getattr(module, "__path__", [])]


def build(tmp: Path, manifest_: Manifest, file_name: str) -> Path:
    """Render and compile the manifest's proto (plus the shared protos) into ``tmp/out``."""
    tmp.mkdir(parents=True, exist_ok=True)
    proto = tmp / file_name
    proto.write_text(render_proto(manifest_), encoding="utf-8")
    out = tmp / "out"
    compile_shared_protos(out)
    compile_protos(proto, out)
    return out


@pytest.fixture(scope="module")
def service_pb2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    out = build(tmp_path_factory.mktemp("every_kind"), EVERY_KIND, "every_kind.proto")
    with generated(out) as load:
        yield load("every_kind_pb2")


def wire(module: ModuleType, message_name: str, message: Any) -> Any:
    """Through bytes and back, as gRPC carries it."""
    return getattr(module, message_name).FromString(message.SerializeToString())


def assert_same(got: Any, expected: Any, where: str = "value") -> None:
    if isinstance(expected, np.ndarray):
        assert isinstance(got, np.ndarray), where
        assert got.dtype == expected.dtype, where
        np.testing.assert_array_equal(got, expected, err_msg=where)
        assert got.flags.writeable, where
    elif isinstance(expected, pd.DataFrame):
        assert isinstance(got, pd.DataFrame), where
        pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))
    elif isinstance(expected, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(expected), where
        for key in expected:
            assert_same(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_same(g, e, f"{where}[{i}]")
    elif isinstance(expected, float) and math.isnan(expected):
        assert isinstance(got, float) and math.isnan(got), where
    else:
        assert type(got) is type(expected) and got == expected, f"{where}: {got!r} != {expected!r}"


class Conversions(NamedTuple):
    """A way to convert one record: ``decode(message, record, field)`` and
    ``encode(values, record, message_class, field)``."""

    decode: Callable[[Any, Record, str], dict[str, Any]]
    encode: Callable[[Mapping[str, Any], Record, Any, str], Any]


# The functions, and the servers' planned RecordCodec: the same values and errors for every kind.
CONVERSIONS = {
    "functions": Conversions(decode_message, encode_message),
    "RecordCodec": Conversions(
        lambda message, record, field: RecordCodec(record, field).decode(message),
        lambda values, record, cls, field: RecordCodec(record, field).encode(values, cls),
    ),
}


@pytest.fixture(scope="module", params=sorted(CONVERSIONS))
def conversions(request: pytest.FixtureRequest) -> Conversions:
    return CONVERSIONS[request.param]


@pytest.fixture(scope="module")
def round_tripped(service_pb2: ModuleType, conversions: Conversions) -> dict[str, Any]:
    values = {name: value for name, _, value, _ in CASES}
    record = signature_record(EVERY_KIND.inputs)
    message = conversions.encode(values, record, service_pb2.Input, "input")
    return conversions.decode(wire(service_pb2, "Input", message), record, "input")


@pytest.mark.parametrize(
    ("name", "expected"),
    [(name, value if back is None else back) for name, _, value, back in CASES],
    ids=[c[0] for c in CASES],
)
def test_every_kind_round_trips(round_tripped: dict[str, Any], name: str, expected: Any) -> None:
    assert_same(round_tripped[name], expected, name)


def test_a_zoned_date_time_column_travels_in_utc(
    service_pb2: ModuleType, conversions: Conversions
) -> None:
    values = {name: value for name, _, value, _ in CASES}
    zoned = FRAME["when"].dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo")
    values["frame"] = FRAME.assign(when=zoned)
    record = signature_record(EVERY_KIND.inputs)
    message = conversions.encode(values, record, service_pb2.Input, "input")
    back = conversions.decode(wire(service_pb2, "Input", message), record, "input")
    assert_same(back["frame"], FRAME)  # the same instants, naive in UTC as the type says


def test_outputs_round_trip(service_pb2: ModuleType, conversions: Conversions) -> None:
    values = {
        "scores": np.array([0.25, 0.75], dtype=np.float32),
        "table": pd.DataFrame({"label": ["cat", "dog"], "p": [0.25, 0.75]}),
        "by_name": {"b": {"x": 1.0, "label": None}, "a": {"x": 2.0, "label": "two"}},
    }
    record = signature_record(EVERY_KIND.outputs)
    message = conversions.encode(values, record, service_pb2.Output, "output")
    back = conversions.decode(wire(service_pb2, "Output", message), record, "output")
    assert_same(back, values)


def test_outputs_that_are_not_a_whole_record_are_refused(service_pb2: ModuleType) -> None:
    record = signature_record(EVERY_KIND.outputs)
    for values, reason in (([], "expected a dict, got list"), ({}, "missing key(s) scores")):
        for conversions in CONVERSIONS.values():
            with pytest.raises(ValueConversionError) as info:
                conversions.encode(values, record, service_pb2.Output, "output")
            assert info.value.field == "output"
            assert reason in info.value.reason


def test_messages_follow_the_readme_table(service_pb2: ModuleType) -> None:
    text = render_proto(EVERY_KIND)
    number = {name: i for i, (name, _, _, _) in enumerate(CASES, 1)}
    for line in [
        "package checkpoint2svc.generated.every_kind;",
        'import "checkpoint2svc_protos/v1/values.proto";',
        'import "google/protobuf/struct.proto";',
        "service EveryKindService {",
        "  rpc Execute(Input) returns (Output);",
        f"  bool flag = {number['flag']};",
        f"  int64 count = {number['count']};",
        f"  double ratio = {number['ratio']};",
        f"  string text = {number['text']};",
        f"  bytes blob = {number['blob']};",
        f"  optional int64 maybe_zero = {number['maybe_zero']};",
        f"  repeated double floats = {number['floats']};",
        f"  repeated MatrixItem matrix = {number['matrix']};",
        f"  map<string, int64> counts = {number['counts']};",
        f"  Point point = {number['point']};",
        f"  map<string, LookupValue> lookup = {number['lookup']};",
        f"  MaybeListNone maybe_list_none = {number['maybe_list_none']};",
        f"  repeated OptionalItemsItem optional_items = {number['optional_items']};",
        f"  .checkpoint2svc.v1.Tensor tensor_2d = {number['tensor_2d']};",
        f"  .checkpoint2svc.v1.Table frame = {number['frame']};",
        f"  .google.protobuf.Value json_object = {number['json_object']};",
        "    repeated double values = 1;",
        "    optional int64 value = 1;",
    ]:
        assert f"\n{line}\n" in text, line
    fields = service_pb2.Input.DESCRIPTOR.fields
    assert [f.number for f in fields] == list(range(1, len(CASES) + 1))
    assert [f.name for f in fields] == list(proto_field_names([c[0] for c in CASES]))
    matrix_item = service_pb2.Input.DESCRIPTOR.fields_by_name["matrix"].message_type
    assert [f.name for f in matrix_item.fields] == ["values"]
    maybe_list = service_pb2.Input.DESCRIPTOR.fields_by_name["maybe_list_none"]
    assert maybe_list.message_type.fields[0].name == "values"  # a wrapper keeps [] apart from None


def test_the_service_is_generated(service_pb2: ModuleType) -> None:
    service = service_pb2.DESCRIPTOR.services_by_name["EveryKindService"]
    assert service.full_name == "checkpoint2svc.generated.every_kind.EveryKindService"
    execute = service.methods_by_name["Execute"]
    assert execute.input_type.name == "Input" and execute.output_type.name == "Output"
    grpc_module = importlib.import_module("every_kind_pb2_grpc")
    assert hasattr(grpc_module, "EveryKindServiceStub")
    assert hasattr(grpc_module, "add_EveryKindServiceServicer_to_server")


def test_rendering_is_deterministic() -> None:
    first = render_proto(EVERY_KIND)
    again = render_proto(Manifest.from_dict(EVERY_KIND.to_dict()))
    assert first == again
    assert build_proto_model(EVERY_KIND) == build_proto_model(EVERY_KIND)
    assert not any(line != line.rstrip() for line in first.splitlines())
    assert first.endswith("}\n") and "\n\n\n" not in first


def test_renamed_fields_keep_their_python_names() -> None:
    keys = ["message", "string", "DESCRIPTOR", "class", "a_b", "aB", "café", "message_", "x"]
    names = proto_field_names(keys)
    assert names == (
        "message_2", "string_", "DESCRIPTOR_", "class_", "a_b", "aB_2", "caf_", "message_", "x"
    )  # fmt: skip
    assert len({json_name(n) for n in names}) == len(names)
    assert proto_field_names(keys) == names
    model = build_proto_model(manifest("renames", [Variable("x", KEYWORDS, None)], []))
    (record,) = model.messages[0].messages
    assert [(f.key, f.name) for f in record.fields if f.renamed] == [
        ("message", "message_2"), ("string", "string_"), ("DESCRIPTOR", "DESCRIPTOR_"),
        ("class", "class_"), ("aB", "aB_2"), ("café", "caf_"),
    ]  # fmt: skip
    assert "named `DESCRIPTOR` in Python" in render_proto(
        manifest("renames", [Variable("x", KEYWORDS, None)], [])
    )


def test_names_of_the_package_and_service() -> None:
    assert proto_package("image-classifier") == "checkpoint2svc.generated.image_classifier"
    assert proto_package("9lives") == "checkpoint2svc.generated.svc_9lives"
    assert service_name("image-classifier") == "ImageClassifierService"


def test_package_names_cannot_capture_shared_types(tmp_path: Path) -> None:
    """A service named like a package it imports from still finds Tensor and Value."""
    variables = [Variable("t", Tensor("int8", (-1,)), None), Variable("j", Json(), None)]
    for name in ("checkpoint2svc", "google"):
        out = build(tmp_path / name, manifest(name, variables, []), f"captured_{name}.proto")
        assert (out / f"captured_{name}_pb2.py").is_file()


def test_a_service_without_inputs_compiles(tmp_path: Path) -> None:
    out = build(tmp_path, manifest("no-inputs", [], []), "no_inputs.proto")
    with generated(out) as load:
        module = load("no_inputs_pb2")
        assert decode_message(module.Input(), signature_record([])) == {}


def test_compile_errors_carry_protocs_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.proto"
    bad.write_text('syntax = "proto3";\nmessage M { int64 x = 1; int64 x = 2; }\n')
    with pytest.raises(ProtoCompileError, match=r"bad\.proto.*\"x\" is already defined"):
        compile_protos(bad, tmp_path / "out")


def test_shared_protos(tmp_path: Path) -> None:
    out = tmp_path / "out"
    compile_shared_protos(out)
    assert not list(protos_dir().rglob("*_pb2*.py")), "generated modules belong outside protos/"
    assert (templates_dir() / "service.proto.j2").is_file()
    with generated(out) as load:
        node = load("yandex.cloud.datasphere.v1.node_service_pb2")
        node_grpc = load("yandex.cloud.datasphere.v1.node_service_pb2_grpc")
        values = load("checkpoint2svc_protos.v1.values_pb2")
        service = node.DESCRIPTOR.services_by_name["NodeService"]
        assert service.full_name == "yandex.cloud.datasphere.v1.NodeService"
        assert [m.name for m in service.methods] == ["Execute", "ExecuteAlias"]
        execute, alias = service.methods
        assert (execute.input_type.name, execute.output_type.name) == (
            "NodeExecutionRequest", "NodeExecutionResponse"
        )  # fmt: skip
        assert (alias.input_type.name, alias.output_type.name) == (
            "AliasExecutionRequest", "AliasExecutionResponse"
        )  # fmt: skip
        fields = {
            name: [(f.name, f.number) for f in node.DESCRIPTOR.message_types_by_name[name].fields]
            for name in ("NodeExecutionRequest", "AliasExecutionRequest", "NodeExecutionResponse")
        }
        assert fields == {
            "NodeExecutionRequest": [("folder_id", 1), ("node_id", 2), ("input", 3)],
            "AliasExecutionRequest": [("folder_id", 1), ("alias_name", 2), ("input", 3)],
            "NodeExecutionResponse": [("output", 1)],
        }
        details = node.NodeExecutionErrorDetails(error_name="ValueError", traceback=["a", "b"])
        assert list(details.traceback) == ["a", "b"]
        assert hasattr(node_grpc, "NodeServiceStub")
        assert hasattr(node_grpc, "add_NodeServiceServicer_to_server")
        tensor = values.Tensor.DESCRIPTOR
        assert [f.name for f in tensor.fields] == ["dtype", "shape", "data"]
        members = values.Column.DESCRIPTOR.oneofs_by_name["values"].fields
        assert [f.name for f in members] == [
            "bools", "int64s", "uint64s", "doubles", "strings", "datetimes"
        ]  # fmt: skip


def test_struct_carries_the_generic_node_api() -> None:
    data = {"x": 3, "ratio": 2.0, "name": "n", "items": [1, 2.5, None, True], "point": {"x": 1}}
    struct = data_to_struct(data)
    back = struct_to_data(struct_pb2.Struct.FromString(struct.SerializeToString()))
    assert back == data
    assert type(back["x"]) is int and type(back["ratio"]) is int and type(back["items"][1]) is float
    # The caller decodes the struct's data as the REST server decodes JSON.
    assert decode_json(back["x"], Scalar("int"), "input.x") == 3
    assert decode_json(back["ratio"], Scalar("float"), "input.ratio") == 2.0
    assert data_to_struct({"t": np.arange(3)}).fields["t"].list_value.values[2].number_value == 2


INT_TABLE = Table((Column("a", "int64"),))
# (variable, type, a value that does not fit, where the error points (after input.v), reason)
ENCODE_ERRORS: list[tuple[str, TypeIR, Any, str, str]] = [
    ("int_str", Scalar("int"), "3", "", "expected int, got str"),
    ("int_huge", Scalar("int"), 2**63, "", "does not fit in a 64-bit integer"),
    ("float_bool", Scalar("float"), True, "", "expected float, got bool"),
    ("bytes_str", Scalar("bytes"), "text", "", "expected bytes, got str"),
    ("record_missing", POINT, {"label": None}, "", "missing key(s) x"),
    ("record_deep", ListOf(POINT), [{"x": 1.0, "label": 3}], "[0].label", "expected str"),
    ("list_str", ListOf(Scalar("str")), "abc", "", "expected a list"),
    ("dict_list", DictOf(Scalar("float")), [], "", "expected a dict"),
    ("dict_int_key", DictOf(Scalar("float")), {1: 1.0}, "", "dict keys must be strings"),
    ("optional_list", Optional(ListOf(Scalar("int"))), [1, "2"], "[1]", "expected int"),
    ("tensor_list", Tensor("float32", (-1,)), [1.0], "", "expected a numpy array"),
    ("tensor_cast", Tensor("int8", (-1,)), np.array(["x"]), "", "cannot be cast to int8"),
    ("table_dict", INT_TABLE, {"a": [1]}, "", "expected a DataFrame"),
    ("table_missing", INT_TABLE, pd.DataFrame({"b": [1]}), ".a", "column missing"),
    ("table_float", INT_TABLE, pd.DataFrame({"a": [1.5]}), ".a", "cannot hold int64 values"),
    ("table_none", INT_TABLE, pd.DataFrame({"a": [1, None]}, dtype=object), ".a", "missing"),
    ("table_str", Table((Column("a", "string"),)), pd.DataFrame({"a": ["x", 1]}), ".a[1]",
     "expected a string, got int"),
    ("json_huge", Json(), {"id": 2**60}, ".id", "beyond ±2**53"),
    ("json_object", Json(), {"o": object()}, ".o", "has no JSON form"),
]  # fmt: skip
ERRORS = manifest("errors", [Variable(n, t, None) for n, t, _, _, _ in ENCODE_ERRORS], [])


@pytest.fixture(scope="module")
def errors_pb2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    out = build(tmp_path_factory.mktemp("errors"), ERRORS, "errors.proto")
    with generated(out) as load:
        yield load("errors_pb2")


@pytest.mark.parametrize(
    ("name", "type_", "value", "where", "reason"), ENCODE_ERRORS, ids=[c[0] for c in ENCODE_ERRORS]
)
def test_encoding_errors_name_the_field(
    errors_pb2: ModuleType,
    conversions: Conversions,
    name: str,
    type_: TypeIR,
    value: Any,
    where: str,
    reason: str,
) -> None:
    record = Record((Field(name, type_),))
    with pytest.raises(ValueConversionError) as info:
        conversions.encode({name: value}, record, errors_pb2.Input, "input")
    assert info.value.field == f"input.{name}{where}"
    assert reason in info.value.reason


def tensor_input(module: ModuleType, dtype: str, shape: list[int], size: int) -> Any:
    message = module.Input()
    message.tensor_2d.dtype = dtype
    message.tensor_2d.shape.extend(shape)
    message.tensor_2d.data = bytes(size)
    return message


def table_input(module: ModuleType, **columns: tuple[str, str, list[Any]]) -> Any:
    """An Input whose ``frames`` table "t" has the given (dtype, member, values) columns."""
    message = module.Input()
    table = message.frames["t"]
    table.num_rows = 2
    for name, (dtype, member, values) in columns.items():
        column = table.columns.add(name=name, dtype=dtype)
        getattr(column, member).SetInParent()
        getattr(column, member).values.extend(values)
    return message


def test_decoding_errors_name_the_field(service_pb2: ModuleType, conversions: Conversions) -> None:
    tensor = Record((Field("tensor_2d", Tensor("float32", (-1, 3))),))
    frames = Record((Field("frames", DictOf(Table((Column("a", "int8"),)))),))
    point = Record((Field("point", POINT),))
    cases: list[tuple[Any, Record, str, str]] = [
        (tensor_input(service_pb2, "float64", [1, 3], 24), tensor, ".dtype", "expected float32"),
        (tensor_input(service_pb2, "float32", [1, 3], 11), tensor, ".data", "11 bytes"),
        (tensor_input(service_pb2, "float32", [1, 4], 16), tensor, "", "expected shape (*, 3)"),
        (tensor_input(service_pb2, "float32", [-1, 3], 0), tensor, ".shape", ">= 0"),
        (service_pb2.Input(), point, "", "field required"),
        (table_input(service_pb2), frames, ".t.a", "column required"),
        (table_input(service_pb2, a=("int8", "int64s", [1, 2]), b=("int8", "int64s", [1, 2])),
         frames, ".t.b", "unknown column"),
        (table_input(service_pb2, a=("int64", "int64s", [1, 2])), frames, ".t.a.dtype",
         "expected int8, got int64"),
        (table_input(service_pb2, a=("int8", "doubles", [1.0, 2.0])), frames, ".t.a",
         "carries `int64s`, not `doubles`"),
        (table_input(service_pb2, a=("int8", "int64s", [1])), frames, ".t.a", "table has 2 rows"),
        (table_input(service_pb2, a=("int8", "int64s", [1, 300])), frames, ".t.a",
         "does not fit in int8"),
    ]  # fmt: skip
    for message, record, where, reason in cases:
        field = next(iter(record.fields)).name
        with pytest.raises(ValueConversionError) as info:
            conversions.decode(wire(service_pb2, "Input", message), record, "input")
        assert info.value.field == f"input.{field}{where}", reason
        assert reason in info.value.reason
