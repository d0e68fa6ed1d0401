"""pandas Series as a value type: inferred, sent as JSON and protobuf with its index and name,
described by JSON Schema, typed in the generated client."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from checkpoint2svc.checkpoint.manifest import Variable
from checkpoint2svc.codegen.client_package import build_client_model, client_files
from checkpoint2svc.codegen.json_schema import json_schema, openapi_document
from checkpoint2svc.codegen.proto import render_proto
from checkpoint2svc.errors import ValueConversionError
from checkpoint2svc.signature.infer import infer_type, type_from_annotation
from checkpoint2svc.wire.json_values import decode_json, encode_json, reencode, wire_equal
from checkpoint2svc.wire.proto_values import (
    RecordCodec,
    decode_message,
    encode_message,
    signature_record,
)
from checkpoint2svc.wire.type_ir import (
    DictOf,
    Field,
    Json,
    ListOf,
    Optional,
    Record,
    Series,
    TypeIR,
    type_from_dict,
)
from tests.generated_client import imported_package, names_of, write_package
from tests.unit.test_proto import build, generated, manifest, wire

PARAMS = pd.Series([1.5, -0.25], index=["Intercept", "x"])  # like a statsmodels res.params
PARAMS_TYPE = Series("float64", "string")
GAPS = pd.Series([1.0, np.nan, 3.0], index=["a", "b", "c"], name="y")
BY_NUMBER = pd.Series([10, 20, 30], index=pd.Index([3, 1, 2]), name="n")
WHEN = pd.to_datetime(["2024-01-01 10:00", "2024-06-30 23:30:00.5", None], format="ISO8601").astype(
    "datetime64[ns]"
)
BY_TIME = pd.Series([0.5, 1.5, 2.5], index=WHEN)
WORDS = pd.Series(["a", None, "c"], index=pd.Index([True, False, True]), name="w")
TIMES = pd.Series(WHEN, index=["start", "end", "unknown"])
SMALL = pd.Series(np.array([0, 255], dtype=np.uint8), index=[0.5, 1.5])
EMPTY = pd.Series([], index=pd.Index([], dtype=str), dtype="float64", name="")


def infer(value: object) -> tuple[TypeIR, list[str]]:
    warnings: list[str] = []
    return infer_type(value, "x", warnings.append), warnings


def same_series(got: Any, expected: pd.Series) -> None:
    """Equal values, dtype, index (labels and dtype) and name."""
    assert isinstance(got, pd.Series)
    assert got.name == expected.name
    pd.testing.assert_series_equal(got, expected, check_index_type=True)


# ---------------------------------------------------------------------------------- infer


def test_a_series_keeps_its_value_and_index_dtypes_and_its_name() -> None:
    assert infer(PARAMS) == (PARAMS_TYPE, [])
    assert infer(PARAMS)[0].render() == "series[float64, index=string]"
    assert infer(BY_NUMBER) == (Series("int64", "int64", "n"), [])
    assert infer(BY_NUMBER)[0].render() == "series[int64, index=int64, name=n]"
    assert infer(BY_TIME) == (Series("float64", "datetime64[ns]"), [])
    zoned = BY_TIME.set_axis(BY_TIME.index.tz_localize("Europe/Berlin"))
    assert infer(zoned) == (Series("float64", "datetime64[ns]"), [])  # served in UTC
    assert infer(pd.Series([1, 2]))[0] == Series("int64", "int64")  # a RangeIndex
    assert infer(WORDS)[0] == Series("string", "bool", "w")
    assert infer(pd.Series(["a"], index=pd.Index(["k"], dtype=object), dtype=object))[0] == Series(
        "string", "string"
    )  # object dtypes that hold strings


def test_series_without_a_series_form_are_json_with_a_warning_that_says_why() -> None:
    mixed = pd.Series([{"a": 1}, [1, 2], "text"], index=["p", "q", "r"])
    type_, warnings = infer(mixed)
    assert type_ == Json()
    assert warnings == [
        "x: the Series' values have no series form (dtype object holds mixed values, not "
        "strings); served as json"
    ]
    type_, warnings = infer(
        pd.Series([1.0, 2.0], index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)]))
    )
    assert type_ == Json()
    assert warnings == [
        "x: the Series has a MultiIndex (2 levels), which has no series form; served as json"
    ]
    type_, warnings = infer(pd.Series([1.0], index=pd.CategoricalIndex(["a"])))
    assert type_ == Json()
    assert warnings[0].startswith("x: the Series' index has no series form (dtype category is not")
    type_, warnings = infer(pd.Series([pd.Timedelta(1)], index=["a"]))
    assert type_ == Json() and "values" in warnings[0] and "timedelta64" in warnings[0]


def test_a_name_that_is_not_a_string_travels_as_one_with_a_warning() -> None:
    type_, warnings = infer(pd.Series([1.0], index=["a"], name=0))  # e.g. a row: df.iloc[0]
    assert type_ == Series("float64", "string", "0")
    assert warnings == ["x: the Series' name 0 is not a string; it travels as '0'"]


def test_series_in_containers_and_annotations() -> None:
    type_, warnings = infer([PARAMS.rename("a"), PARAMS.rename("b")])
    assert (type_, warnings) == (ListOf(PARAMS_TYPE), [])  # names differ: the type has none
    assert infer({"params": PARAMS, "pvalues": PARAMS})[0] == Record(
        (Field("params", PARAMS_TYPE), Field("pvalues", PARAMS_TYPE))
    )
    annotation = ast.parse("pd.Series", mode="eval").body
    assert type_from_annotation(annotation, BY_NUMBER, "x", print) == Series("int64", "int64", "n")


@pytest.mark.parametrize(
    "type_",
    [PARAMS_TYPE, Series("int64", "datetime64[ns]", "named"), Series("bool", "uint8", "")],
    ids=["unnamed", "named", "empty-name"],
)
def test_the_manifest_form_round_trips(type_: Series) -> None:
    data = orjson.loads(orjson.dumps(type_.to_dict()))
    assert data["kind"] == "series"
    assert type_from_dict(data) == type_
    assert type_from_dict(Optional(ListOf(type_)).to_dict()) == Optional(ListOf(type_))


# ---------------------------------------------------------------------------------- JSON


def sent(value: Any, type_: TypeIR) -> Any:
    """What travels over REST: encoded as the server encodes, through orjson and back."""
    return orjson.loads(orjson.dumps(encode_json(value, type_, "x")))


def test_the_json_form_carries_index_values_and_name() -> None:
    assert sent(PARAMS, PARAMS_TYPE) == {
        "index": ["Intercept", "x"], "values": [1.5, -0.25], "name": None
    }  # fmt: skip
    # NaN is null in the data already, not only on the wire (the CLI prints with json.dumps)
    assert encode_json(GAPS, PARAMS_TYPE, "x") == {
        "index": ["a", "b", "c"], "values": [1.0, None, 3.0], "name": "y"
    }  # fmt: skip
    assert sent(BY_TIME, Series("float64", "datetime64[ns]")) == {
        "index": ["2024-01-01T10:00:00.000Z", "2024-06-30T23:30:00.500Z", None],
        "values": [0.5, 1.5, 2.5],
        "name": None,
    }  # RFC 3339 in UTC, as table columns are
    assert sent(WORDS, Series("string", "bool", "w"))["values"] == ["a", None, "c"]
    assert sent(BY_NUMBER, Series("float64", "int64"))["values"] == [10.0, 20.0, 30.0]


@pytest.mark.parametrize(
    "value",
    [PARAMS, GAPS, BY_NUMBER, BY_TIME, WORDS, TIMES, SMALL, EMPTY],
    ids=["params", "gaps", "by-number", "by-time", "words", "times", "small", "empty"],
)
def test_json_round_trips_keep_index_dtype_and_name(value: pd.Series) -> None:
    type_ = infer_type(value, "x", lambda _: None)
    assert isinstance(type_, Series)
    same_series(decode_json(sent(value, type_), type_, "x"), value)


def test_a_plain_object_of_labelled_values_is_accepted_for_string_labels() -> None:
    type_ = Series("float64", "string", "y")
    back = decode_json({"Intercept": 1, "x": None}, type_, "input.s")
    same_series(back, pd.Series([1.0, np.nan], index=["Intercept", "x"], name="y"))
    assert decode_json({}, type_, "s").empty
    # labels that are the form's keys, holding no arrays, are labels too
    assert list(decode_json({"index": 1.0, "values": 2.0}, type_, "s").index) == ["index", "values"]


def test_a_series_sent_without_a_name_gets_its_pinned_one() -> None:
    type_ = Series("float64", "string", "y")
    assert decode_json({"index": ["a"], "values": [1.0]}, type_, "s").name == "y"
    assert decode_json({"index": ["a"], "values": [1.0], "name": None}, type_, "s").name is None
    assert decode_json({"index": ["a"], "values": [1.0], "name": "z"}, type_, "s").name == "z"


INT_BY_NUMBER = Series("int64", "int64")
# (id, type, JSON data, the field named, part of the reason)
DECODE_ERRORS: list[tuple[str, TypeIR, Any, str, str]] = [
    ("lengths", PARAMS_TYPE, {"index": ["a", "b"], "values": [1.0]}, "input.s.values",
     "1 value, but the index has 2 labels"),
    ("value-type", PARAMS_TYPE, {"index": ["a", "b"], "values": [1.0, "2"]}, "input.s.values[1]",
     "expected a number or null, got a string"),
    ("index-type", INT_BY_NUMBER, {"index": ["1"], "values": [1]}, "input.s.index[0]",
     "expected an integer, got a string"),
    ("int-null", INT_BY_NUMBER, {"index": [1], "values": [None]}, "input.s.values[0]",
     "expected an integer, got null"),
    ("bool-for-int", INT_BY_NUMBER, {"index": [1], "values": [True]}, "input.s.values[0]",
     "expected an integer, got a boolean"),
    ("int-for-bool", Series("bool", "string"), {"a": 1}, "input.s.a", "expected a boolean"),
    ("too-big", Series("int8", "int64"), {"index": [0], "values": [300]}, "input.s.values",
     "does not fit in int8"),
    ("string-type", Series("string", "int64"), {"index": [0], "values": [1]}, "input.s.values[0]",
     "expected a string, got an integer"),
    ("date-time", Series("float64", "datetime64[ns]"), {"index": [1704103200], "values": [1.0]},
     "input.s.index", "RFC 3339"),
    ("unknown-key", PARAMS_TYPE, {"index": [], "values": [], "dtype": "float64"}, "input.s.dtype",
     "unknown key; expected only index, values and name"),
    ("no-index", PARAMS_TYPE, {"values": [1.0]}, "input.s.index", "field required"),
    ("index-not-array", PARAMS_TYPE, {"index": "a", "values": [1.0]}, "input.s.index",
     "expected an array, got a string"),
    ("name-type", PARAMS_TYPE, {"index": [], "values": [], "name": 1}, "input.s.name",
     "expected a string or null, got an integer"),
    ("array", PARAMS_TYPE, [1.0, 2.0], "input.s", "or an object of values by label, got an array"),
    ("labels-need-strings", INT_BY_NUMBER, {"1": 1}, "input.s",
     "accepted only for string labels, and this index is int64"),
    ("not-an-object", INT_BY_NUMBER, 3, "input.s", 'expected an object {"index": [...], "values'),
    ("labelled-value", PARAMS_TYPE, {"Intercept": 1.0, "x": "big"}, "input.s.x",
     "expected a number or null, got a string"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("type_", "data", "field", "reason"),
    [c[1:] for c in DECODE_ERRORS],
    ids=[c[0] for c in DECODE_ERRORS],
)
def test_bad_series_name_the_field(type_: TypeIR, data: Any, field: str, reason: str) -> None:
    with pytest.raises(ValueConversionError) as info:
        decode_json(data, type_, "input.s")
    assert info.value.field == field
    assert reason in info.value.reason


@pytest.mark.parametrize(
    ("value", "type_", "field", "reason"),
    [
        (PARAMS.to_list(), PARAMS_TYPE, "output.s", "expected a pandas Series, got list"),
        (pd.Series([1.0, None]), INT_BY_NUMBER, "output.s.values[1]", "which int64 cannot hold"),
        (pd.Series(["a", 1]), Series("string", "int64"), "output.s.values[1]", "got int"),
        (pd.Series([1.5]), INT_BY_NUMBER, "output.s.values", "cannot hold int64 values"),
        (
            pd.Series([1.0], index=pd.MultiIndex.from_tuples([("a", 1)])),
            PARAMS_TYPE,
            "output.s.index",
            "MultiIndex",
        ),
    ],
    ids=["list", "missing-int", "non-string", "float-for-int", "multi-index"],
)
def test_outputs_that_do_not_fit_name_the_field(
    value: Any, type_: TypeIR, field: str, reason: str
) -> None:
    with pytest.raises(ValueConversionError) as info:
        encode_json(value, type_, "output.s")
    assert info.value.field == field
    assert reason in info.value.reason


def test_the_self_test_compares_series_as_sent() -> None:
    """The pinned example (written at pin time) against what a server sends, also after a trip
    through google.protobuf.Struct (whole doubles come back as integers)."""
    type_ = Series("float64", "string", "y")
    example = encode_json(GAPS, type_, "y")
    served = encode_json(decode_json(example, type_, "y"), type_, "y", tensors="b64")
    assert wire_equal({"y": example}, {"y": served}, {"y": type_})
    from_struct = {"index": ["a", "b", "c"], "values": [1, None, 3], "name": "y"}
    assert reencode(from_struct, type_, "y") == example
    other = {**example, "values": [1.0, None, 4.0]}
    assert not wire_equal({"y": example}, {"y": other}, {"y": type_})


# ---------------------------------------------------------------------------- JSON Schema


def validator(type_: TypeIR) -> Draft202012Validator:
    schema = json_schema(type_)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


@pytest.mark.parametrize(
    "value",
    [PARAMS, GAPS, BY_NUMBER, BY_TIME, WORDS, TIMES, SMALL, EMPTY],
    ids=["params", "gaps", "by-number", "by-time", "words", "times", "small", "empty"],
)
def test_encoded_series_validate(value: pd.Series) -> None:
    type_ = infer_type(value, "x", lambda _: None)
    assert [e.message for e in validator(type_).iter_errors(sent(value, type_))] == []


def test_the_schema_types_index_and_values_and_allows_labelled_objects() -> None:
    schema = json_schema(Series("int64", "string", "n"))
    arrays, labelled = schema["oneOf"]
    assert arrays["properties"] == {
        "index": {"type": "array", "items": {"type": ["string", "null"]}},
        "values": {
            "type": "array",
            "items": {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
        },
        "name": {"type": ["string", "null"]},
    }
    assert arrays["required"] == ["index", "values"]
    assert labelled["additionalProperties"] == arrays["properties"]["values"]["items"]
    assert "int64 series (named 'n' when pinned) with a string index" in schema["description"]
    # Labels only when they are strings: an integer index has the one form.
    by_number = json_schema(Series("float64", "int64"))
    assert "oneOf" not in by_number and by_number["properties"]["index"]["items"]["type"] == (
        "integer"
    )
    assert validator(Series("int64", "string")).is_valid({"Intercept": 1, "x": 2})


INVALID: list[tuple[str, TypeIR, Any]] = [
    ("value-type", PARAMS_TYPE, {"index": ["a"], "values": ["1"]}),
    ("index-type", Series("float64", "int64"), {"index": ["a"], "values": [1.0]}),
    ("no-values", PARAMS_TYPE, {"index": ["a"]}),
    ("extra-key", PARAMS_TYPE, {"index": [], "values": [], "dtype": "float64"}),
    ("name-type", PARAMS_TYPE, {"index": [], "values": [], "name": 3}),
    ("labelled-wrong-value", PARAMS_TYPE, {"a": "1"}),
    ("labelled-for-ints", Series("float64", "int64"), {"1": 1.0}),
    ("array", PARAMS_TYPE, [1.0, 2.0]),
    ("date-time", Series("float64", "datetime64[ns]"), {"index": ["soon"], "values": [1.0]}),
]


@pytest.mark.parametrize(("type_", "data"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_wrong_series_do_not_validate(type_: TypeIR, data: Any) -> None:
    assert not validator(type_).is_valid(data)


def test_openapi_examples_of_series_render_and_validate() -> None:
    from tests.unit.test_json_schema import OK, REQUEST, at, document_validator

    inputs = [Variable("weights", PARAMS_TYPE, encode_json(GAPS, PARAMS_TYPE, "weights"))]
    outputs = [
        Variable("params", PARAMS_TYPE, encode_json(PARAMS, PARAMS_TYPE, "params")),
        Variable("by_time", Series("float64", "datetime64[ns]"), encode_json(
            BY_TIME, Series("float64", "datetime64[ns]"), "by_time"
        )),
    ]  # fmt: skip
    document = openapi_document(manifest("fit", inputs, outputs))
    orjson.dumps(document)  # strict JSON
    request = at(document, REQUEST)["examples"]["pinned"]["value"]
    assert request == {"input": {"weights": {"index": ["a", "b", "c"], "values": [1.0, None, 3.0],
                                             "name": "y"}}}  # fmt: skip
    document_validator(document, f"{REQUEST}/schema").validate(request)
    response = at(document, OK)["examples"]["pinned"]["value"]
    assert response["output"]["params"]["index"] == ["Intercept", "x"]
    document_validator(document, f"{OK}/schema").validate(response)


# ---------------------------------------------------------------------------------- proto

# (variable, type, value)
PROTO_CASES: list[tuple[str, TypeIR, Any]] = [
    ("params", PARAMS_TYPE, PARAMS),
    ("gaps", Series("float64", "string", "y"), GAPS),
    ("by_number", Series("int64", "int64", "n"), BY_NUMBER),
    ("by_time", Series("float64", "datetime64[ns]"), BY_TIME),
    ("words", Series("string", "bool", "w"), WORDS),
    ("times", Series("datetime64[ns]", "string"), TIMES),
    ("small", Series("uint8", "float64"), SMALL),
    ("empty", PARAMS_TYPE, EMPTY),
    ("maybe", Optional(PARAMS_TYPE), None),
    ("maybe_set", Optional(PARAMS_TYPE), PARAMS),
    ("listed", ListOf(PARAMS_TYPE), [PARAMS, GAPS]),
    ("by_key", DictOf(PARAMS_TYPE), {"first": GAPS}),
]
SERIES_MANIFEST = manifest(
    "series",
    [Variable(n, t, None) for n, t, _ in PROTO_CASES],
    [Variable("params", PARAMS_TYPE, None)],
)


@pytest.fixture(scope="module")
def series_pb2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    out = build(tmp_path_factory.mktemp("series"), SERIES_MANIFEST, "series.proto")
    with generated(out) as load:
        yield load("series_pb2")


def test_the_proto_uses_the_shared_series_message(series_pb2: ModuleType) -> None:
    text = render_proto(SERIES_MANIFEST)
    assert "\n  .checkpoint2svc.v1.Series params = 1;\n" in text
    assert "\n  repeated .checkpoint2svc.v1.Series listed = 11;\n" in text
    assert "\n  map<string, .checkpoint2svc.v1.Series> by_key = 12;\n" in text
    series = series_pb2.Input.DESCRIPTOR.fields_by_name["params"].message_type
    assert series.full_name == "checkpoint2svc.v1.Series"
    assert [(f.name, f.number, f.message_type and f.message_type.name) for f in series.fields] == [
        ("index", 1, "Column"), ("values", 2, "Column"), ("name", 3, None)
    ]  # fmt: skip
    assert series.fields_by_name["name"].has_presence  # None and "" stay apart


@pytest.mark.parametrize("codec", ["functions", "RecordCodec"])
def test_proto_round_trips_keep_index_dtype_and_name(series_pb2: ModuleType, codec: str) -> None:
    record = signature_record(SERIES_MANIFEST.inputs)
    values = {name: value for name, _, value in PROTO_CASES}
    if codec == "functions":
        message = encode_message(values, record, series_pb2.Input, "input")
        back = decode_message(wire(series_pb2, "Input", message), record, "input")
    else:
        message = RecordCodec(record, "input").encode(values, series_pb2.Input)
        back = RecordCodec(record, "input").decode(wire(series_pb2, "Input", message))
    for name, _, value in PROTO_CASES:
        if value is None:
            assert back[name] is None
        elif isinstance(value, list):
            for got, expected in zip(back[name], value, strict=True):
                same_series(got, expected)
        elif isinstance(value, dict):
            assert list(back[name]) == list(value)
            same_series(back[name]["first"], value["first"])
        else:
            same_series(back[name], value)


def test_the_proto_message_carries_the_labels_as_a_column(series_pb2: ModuleType) -> None:
    record = Record((Field("params", PARAMS_TYPE),))
    message = encode_message({"params": PARAMS}, record, series_pb2.Input, "input")
    assert list(message.params.index.strings.values) == ["Intercept", "x"]
    assert message.params.index.dtype == "string"
    assert list(message.params.values.doubles.values) == [1.5, -0.25]
    assert not message.params.HasField("name")


def series_input(module: ModuleType, **parts: tuple[str, str, list[Any]]) -> Any:
    """An Input whose ``params`` Series has the given (dtype, member, values) index/values."""
    message = module.Input()
    message.params.SetInParent()
    for key, (dtype, member, items) in parts.items():
        column = getattr(message.params, key)
        column.dtype = dtype
        getattr(column, member).SetInParent()
        getattr(column, member).values.extend(items)
    return message


def test_proto_decoding_errors_name_the_field(series_pb2: ModuleType) -> None:
    record = Record((Field("params", PARAMS_TYPE),))
    labels = ("string", "strings", ["a", "b"])
    cases = [
        (series_input(series_pb2, index=labels, values=("float64", "doubles", [1.0])),
         "input.params.values", "1 values, but the index has 2 labels"),
        (series_input(series_pb2, index=labels, values=("int64", "int64s", [1, 2])),
         "input.params.values.dtype", "expected float64, got int64"),
        (series_input(series_pb2, index=("string", "doubles", [1.0]),
                      values=("float64", "doubles", [1.0])),
         "input.params.index", "carries `strings`, not `doubles`"),
        (series_pb2.Input(), "input.params", "field required"),
    ]  # fmt: skip
    for message, field, reason in cases:
        with pytest.raises(ValueConversionError) as info:
            decode_message(wire(series_pb2, "Input", message), record, "input")
        assert (info.value.field, reason in info.value.reason) == (field, True), info.value.reason


def test_proto_encoding_errors_name_the_field(series_pb2: ModuleType) -> None:
    record = Record((Field("by_number", Series("int64", "int64", "n")),))
    for value, field, reason in [
        ({"a": 1}, "input.by_number", "expected a pandas Series, got dict"),
        (pd.Series([1, None], dtype=object), "input.by_number.values", "missing value"),
        (pd.Series([1], index=["a"]), "input.by_number.index", "cannot hold int64 values"),
    ]:
        with pytest.raises(ValueConversionError) as info:
            encode_message({"by_number": value}, record, series_pb2.Input, "input")
        assert info.value.field == field
        assert reason in info.value.reason


# ----------------------------------------------------------------------- generated client


CLIENT_MANIFEST = manifest("series-client", SERIES_MANIFEST.inputs, SERIES_MANIFEST.outputs)


@pytest.fixture(scope="module")
def client_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_package(CLIENT_MANIFEST, tmp_path_factory.mktemp("series-client"))


def test_the_client_types_series_as_pandas_series(client_package: Path) -> None:
    model = build_client_model(CLIENT_MANIFEST, names_of(CLIENT_MANIFEST))
    annotations = {f.name: f.annotation for f in model.input.fields}
    assert annotations["params"] == "pandas.Series"
    assert annotations["maybe"] == "pandas.Series | None"
    assert annotations["listed"] == "list[pandas.Series]"
    assert any(r.startswith("pandas>=") for r in model.dependencies)
    assert model.input.decorator == "dataclass(kw_only=True, eq=False)"
    models = client_files(model)["series_client_client/models.py"]
    assert 'ir.Field("gaps", ir.Series("float64", "string", "y"))' in models
    assert "    # series[float64, index=string, name=y]\n    gaps: pandas.Series\n" in models
    with imported_package(client_package, "series_client_client") as package:
        signature = package.models.SIGNATURE
        assert signature.inputs.to_dict() == signature_record(CLIENT_MANIFEST.inputs).to_dict()


def test_the_clients_wire_copy_round_trips_series(client_package: Path) -> None:
    """The package's own copies of json_values and proto_values (not checkpoint2svc's)."""
    with imported_package(client_package, "series_client_client") as package:
        copy = package._wire
        copied_type = copy.type_ir.Series("float64", "string", "y")
        data = copy.json_values.encode_json(GAPS, copied_type, "x")
        same_series(copy.json_values.decode_json(data, copied_type, "x"), GAPS)
        stubs = copy.proto_values.import_generated(
            "series_client_pb2", client_package / "series_client_client" / "_proto"
        )
        record = copy.type_ir.Record((copy.type_ir.Field("gaps", copied_type),))
        message = copy.proto_values.encode_message({"gaps": GAPS}, record, stubs.Input)
        back = copy.proto_values.decode_message(wire(stubs, "Input", message), record)
        same_series(back["gaps"], GAPS)
