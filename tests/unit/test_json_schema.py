import json
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from checkpoint2svc.checkpoint.manifest import Manifest, TargetCell, Variable
from checkpoint2svc.codegen.json_schema import json_schema, openapi_document
from checkpoint2svc.errors import ValueConversionError
from checkpoint2svc.wire.json_values import decode_json, encode_json, wire_equal
from checkpoint2svc.wire.names import component_prefix
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
    )
)
FRAME = pd.DataFrame(
    {
        "n": [1, 2],
        "celsius": [3.5, np.nan],
        "city": ["Oslo", None],
        "ok": [True, False],
        "small": np.array([0, 255], dtype=np.uint8),
    }
)

# (id, type, a value of that type); every IR kind, alone and nested.
CASES: list[tuple[str, TypeIR, Any]] = [
    ("bool", Scalar("bool"), True),
    ("int", Scalar("int"), -3),
    ("float", Scalar("float"), 3.5),
    ("float-from-int", Scalar("float"), 2),
    ("str", Scalar("str"), "text"),
    ("bytes", Scalar("bytes"), b"\x00\xff"),
    ("optional-set", Optional(Scalar("int")), 3),
    ("optional-none", Optional(Scalar("int")), None),
    ("list", ListOf(Scalar("float")), [1.0, 2.5]),
    ("list-empty", ListOf(Scalar("str")), []),
    ("list-of-lists", ListOf(ListOf(Scalar("str"))), [["a"], [], ["b", "c"]]),
    ("dict", DictOf(Scalar("int")), {"a": 1, "not an identifier": 2}),
    ("record", POINT, {"x": 1.5, "label": None}),
    (
        "record-nested",
        Record((Field("points", ListOf(POINT)), Field("meta", DictOf(Json())))),
        {"points": [{"x": 1.0, "label": "a"}], "meta": {"k": [1, "two", None]}},
    ),
    ("tensor-2d", Tensor("float32", (-1, 3)), np.arange(6, dtype=np.float32).reshape(2, 3)),
    ("tensor-0d", Tensor("int64", ()), np.array(7, dtype=np.int64)),
    ("tensor-empty", Tensor("float64", (-1,)), np.zeros(0)),
    ("tensor-bool", Tensor("bool", (-1,)), np.array([True, False])),
    ("tensor-uint8", Tensor("uint8", (-1, 2, 2)), np.full((1, 2, 2), 255, dtype=np.uint8)),
    ("tensor-int8", Tensor("int8", (2,)), np.array([-128, 127], dtype=np.int8)),
    (
        "list-of-tensors",
        ListOf(Tensor("float64", (-1,))),
        [np.array([1.0]), np.array([2.0, 3.0])],
    ),
    ("table", FRAME_TYPE, FRAME),
    ("table-empty", FRAME_TYPE, FRAME.iloc[:0]),
    (
        "record-with-table-and-tensor",
        Record((Field("frame", FRAME_TYPE), Field("weights", Optional(Tensor("float32", (3,)))))),
        {"frame": FRAME, "weights": np.ones(3, dtype=np.float32)},
    ),
    ("json", Json(), {"any": [1, "x", None, {"nested": True}]}),
    ("json-scalar", Json(), "just a string"),
]


def wire(value: Any, type_: TypeIR, tensors: str) -> Any:
    """What travels over REST: encoded as the runtime encodes, then through orjson and back."""
    data = encode_json(value, type_, "x", tensors=tensors)  # type: ignore[arg-type]
    return orjson.loads(orjson.dumps(data))


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@pytest.mark.parametrize("tensors", ["list", "b64"])
@pytest.mark.parametrize(("type_", "value"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_encoded_values_validate(type_: TypeIR, value: Any, tensors: str) -> None:
    data = wire(value, type_, tensors)
    errors = [e.message for e in validator(json_schema(type_)).iter_errors(data)]
    assert errors == []


def test_tables_validate_as_columns_too() -> None:
    by_columns = orjson.loads(orjson.dumps(encode_json(FRAME, FRAME_TYPE)))
    by_columns = {name: [row[name] for row in by_columns] for name in FRAME.columns}
    assert validator(json_schema(FRAME_TYPE)).is_valid(by_columns)


def test_scalars_follow_the_readme_table() -> None:
    assert json_schema(Scalar("bool")) == {"type": "boolean"}
    assert json_schema(Scalar("int")) == {"type": "integer"}
    assert json_schema(Scalar("float")) == {"type": "number"}
    assert json_schema(Scalar("str")) == {"type": "string"}
    assert json_schema(Scalar("bytes")) == {"type": "string", "contentEncoding": "base64"}
    assert json_schema(Optional(Scalar("int"))) == {
        "anyOf": [{"type": "integer"}, {"type": "null"}]
    }
    assert json_schema(ListOf(Scalar("str"))) == {"type": "array", "items": {"type": "string"}}
    assert json_schema(DictOf(Json())) == {"type": "object", "additionalProperties": {}}
    assert json_schema(POINT) == {
        "type": "object",
        "properties": {
            "x": {"type": "number"},
            "label": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "required": ["x"],
        "additionalProperties": False,
    }
    assert json_schema(Json()) == {}


def test_tensor_schema_describes_dtype_and_shape() -> None:
    schema = json_schema(Tensor("float32", (-1, 28)))
    assert "float32" in schema["description"] and "(-1, 28)" in schema["description"]
    nested, packed = schema["oneOf"]
    assert nested["items"]["items"] == {"type": "number"}
    assert packed["properties"]["dtype"] == {"const": "float32"}
    assert packed["properties"]["b64"]["contentEncoding"] == "base64"


def test_table_schema_types_each_column() -> None:
    type_ = Table((Column("when", "datetime64[ns]"), Column("n", "int32")))
    rows, columns = json_schema(type_)["oneOf"]
    assert rows["items"]["properties"]["when"] == {
        "type": ["string", "null"],
        "format": "date-time",
    }
    assert rows["items"]["properties"]["n"]["type"] == "integer"
    assert columns["properties"]["n"]["items"]["type"] == "integer"


TENSOR = Tensor("float32", (-1, 3))
PACKED_OK = {"dtype": "float32", "shape": [1, 3], "b64": "AAAAAAAAAAAAAAAA"}

# (id, type, JSON data that must not validate)
INVALID: list[tuple[str, TypeIR, Any]] = [
    ("string-for-number", Scalar("float"), "3.5"),
    ("string-for-int", Scalar("int"), "3"),
    ("float-for-int", Scalar("int"), 3.5),
    ("bool-for-int", Scalar("int"), True),
    ("number-for-bytes", Scalar("bytes"), 3),
    ("null-for-required", Scalar("str"), None),
    ("wrong-optional", Optional(Scalar("int")), "x"),
    ("wrong-list-item", ListOf(Scalar("float")), [1.0, "2"]),
    ("wrong-dict-value", DictOf(Scalar("int")), {"a": "1"}),
    ("record-missing-field", POINT, {"label": "a"}),
    ("record-extra-field", POINT, {"x": 1.0, "label": None, "y": 2.0}),
    ("record-wrong-field", POINT, {"x": "1.0"}),
    ("nested-record-wrong", ListOf(POINT), [{"x": 1.0}, {"x": 1.0, "z": 0}]),
    ("tensor-wrong-dtype", TENSOR, {**PACKED_OK, "dtype": "float64"}),
    ("tensor-wrong-rank", TENSOR, {**PACKED_OK, "shape": [3]}),
    ("tensor-wrong-fixed-dim", TENSOR, {**PACKED_OK, "shape": [1, 4]}),
    ("tensor-negative-dim", TENSOR, {**PACKED_OK, "shape": [-1, 3]}),
    ("tensor-extra-key", TENSOR, {**PACKED_OK, "order": "C"}),
    ("tensor-no-b64", TENSOR, {"dtype": "float32", "shape": [1, 3]}),
    ("tensor-list-wrong-depth", TENSOR, [1.0, 2.0, 3.0]),
    ("tensor-list-wrong-width", TENSOR, [[1.0, 2.0]]),
    ("tensor-list-string-leaf", TENSOR, [["1", 2.0, 3.0]]),
    ("tensor-int-gets-float", Tensor("int64", (-1,)), [1.5]),
    ("tensor-uint8-out-of-range", Tensor("uint8", (-1,)), [256]),
    ("tensor-int8-out-of-range", Tensor("int8", (-1,)), [-129]),
    ("tensor-bool-gets-int", Tensor("bool", (-1,)), [1]),
    ("table-not-rows", FRAME_TYPE, "n,celsius"),
    ("table-row-missing-column", Table((Column("a", "int64"),)), [{}]),
    ("table-row-extra-column", Table((Column("a", "int64"),)), [{"a": 1, "b": 2}]),
    ("table-row-wrong-type", Table((Column("a", "int64"),)), [{"a": "1"}]),
    ("table-null-int", Table((Column("a", "int64"),)), [{"a": None}]),
    ("table-columns-wrong-type", Table((Column("a", "bool"),)), {"a": [1]}),
    ("table-columns-not-arrays", Table((Column("a", "int64"),)), {"a": 1}),
    ("table-columns-extra", Table((Column("a", "int64"),)), {"a": [1], "b": [2]}),
]


@pytest.mark.parametrize(("type_", "data"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_wrong_values_do_not_validate(type_: TypeIR, data: Any) -> None:
    assert not validator(json_schema(type_)).is_valid(data)


def test_encoded_datetimes_are_rfc3339_and_round_trip() -> None:
    type_ = Table((Column("when", "datetime64[ns]"),))
    frame = pd.DataFrame({"when": pd.to_datetime(
        ["2024-01-01 10:00:00", "2024-01-02 00:00:00.123456789", None], format="ISO8601"
    ).astype("datetime64[ns]")})  # fmt: skip
    data = wire(frame, type_, "list")
    assert [row["when"] for row in data] == [
        "2024-01-01T10:00:00.000000000Z",
        "2024-01-02T00:00:00.123456789Z",
        None,
    ]  # as precise as the column needs: here nanoseconds
    Draft202012Validator(json_schema(type_), format_checker=FormatChecker()).validate(data)
    back = decode_json(data, type_)
    pd.testing.assert_frame_equal(back, frame)


def test_whole_seconds_are_sent_without_a_fraction() -> None:
    type_ = Table((Column("when", "datetime64[ns]"),))
    frame = pd.DataFrame(
        {"when": pd.to_datetime(["2024-01-01 10:00:00", "2024-03-01"], format="ISO8601")}
    )
    assert [r["when"] for r in wire(frame, type_, "list")] == [
        "2024-01-01T10:00:00Z",
        "2024-03-01T00:00:00Z",
    ]


def test_far_dates_and_gaps_are_sent_as_they_are() -> None:
    type_ = Table((Column("until", "datetime64[ns]"),))
    # pandas 3 keeps these in microseconds: beyond what nanoseconds hold (1677-2262)
    until = pd.to_datetime(["9999-12-31", "1500-01-01 12:00:00.25", None], format="ISO8601")
    assert [r["until"] for r in wire(pd.DataFrame({"until": until}), type_, "list")] == [
        "9999-12-31T00:00:00.000Z", "1500-01-01T12:00:00.250Z", None
    ]  # fmt: skip
    gaps = pd.DataFrame({"until": pd.to_datetime(["2024-01-01", None])})
    assert [r["until"] for r in wire(gaps, type_, "list")] == ["2024-01-01T00:00:00Z", None]
    assert encode_json(gaps, type_, "x")[1]["until"] is None  # not NaN (the CLI prints JSON)


def test_examples_pinned_before_rfc3339_still_match() -> None:
    type_ = Table((Column("when", "datetime64[ns]"),))
    served = wire(pd.DataFrame({"when": pd.to_datetime(["2024-01-01 10:00:00"])}), type_, "list")
    old_example = [{"when": "2024-01-01 10:00:00"}]  # as versions before 0.1.0's RFC 3339 wrote
    assert wire_equal({"t": old_example}, {"t": served}, {"t": type_})
    assert not wire_equal({"t": [{"when": "2024-01-01 11:00:00"}]}, {"t": served}, {"t": type_})
    nan = {"x": float("nan")}
    assert wire_equal({"x": None}, nan, {"x": Scalar("float")})  # NaN is null on the wire


def test_decoded_datetimes_honour_offsets_and_accept_naive_strings() -> None:
    type_ = Table((Column("when", "datetime64[ns]"),))
    sent = [{"when": "2024-01-01T12:00:00+02:00"}, {"when": "2024-01-01 10:00:00"},
            {"when": "2024-01-01T10:00:00Z"}]  # fmt: skip
    assert set(decode_json(sent, type_)["when"]) == {pd.Timestamp("2024-01-01 10:00:00")}
    with pytest.raises(ValueConversionError, match=r"when.*RFC 3339"):
        decode_json([{"when": 1704103200}], type_)
    with pytest.raises(ValueConversionError, match="when"):
        decode_json([{"when": "yesterday"}], type_)


def test_a_column_with_a_time_zone_is_sent_in_utc() -> None:
    type_ = Table((Column("when", "datetime64[ns]"),))  # what pinning infers for it
    when = pd.to_datetime(["2024-01-01 11:00:00"]).tz_localize("Europe/Berlin")
    data = wire(pd.DataFrame({"when": when}), type_, "list")
    assert data == [{"when": "2024-01-01T10:00:00Z"}]
    assert list(decode_json(data, type_)["when"]) == [pd.Timestamp("2024-01-01 10:00:00")]


def variable(name: str, type_: TypeIR, value: Any) -> Variable:
    """A manifest variable whose example is stored as pinning stores it (tensors in b64)."""
    return Variable(name, type_, encode_json(value, type_, name, tensors="b64"))


def make_manifest(name: str = "image-classifier", mode: str = "isolated") -> Manifest:
    options = Record((Field("top_k", Scalar("int")), Field("tag", Optional(Scalar("str")))))
    return Manifest(
        name=name,
        notebook="classifier.ipynb",
        notebook_sha256="0" * 64,
        cell=TargetCell("cell-7f3a", 4, "label = model.predict(x)", "label = model.predict(x)"),
        inputs=[
            variable(
                "image", Tensor("uint8", (-1, 2, 2)), np.arange(4, dtype=np.uint8).reshape(1, 2, 2)
            ),
            variable("features", ListOf(Scalar("float")), [6.7, 3.0]),
            variable("options", options, {"top_k": 2, "tag": None}),
            variable("raw", Scalar("bytes"), b"\x00\x01"),
        ],
        outputs=[
            variable("label", Scalar("str"), "virginica"),
            variable(
                "scores", Tensor("float32", (-1, 3)), np.array([[0.1, 0.2, 0.7]], dtype=np.float32)
            ),
            variable("frame", FRAME_TYPE, FRAME),
            variable("extra", Json(), {"anything": [1, 2]}),
        ],
        mode=mode,  # type: ignore[arg-type]
        python_version="3.11.2",
        requirements=[],
        state=[],
        excluded=[],
        files={},
        created="2024-01-01T00:00:00+00:00",
        checkpoint2svc_version="0.1.0",
    )


def document_validator(document: dict[str, Any], pointer: str) -> Draft202012Validator:
    """A validator for the schema at ``pointer`` inside ``document``, resolving its $refs."""
    resource = DRAFT202012.create_resource(document)
    registry: Registry[Any] = Registry().with_resource("urn:openapi", resource)
    return Draft202012Validator({"$ref": f"urn:openapi#{pointer}"}, registry=registry)


EXECUTE = "/paths/~1execute/post"
REQUEST = f"{EXECUTE}/requestBody/content/application~1json"
OK = f"{EXECUTE}/responses/200/content/application~1json"


def at(document: dict[str, Any], pointer: str) -> Any:
    node: Any = document
    for part in pointer.strip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_openapi_paths() -> None:
    document = openapi_document(make_manifest())
    assert document["openapi"] == "3.1.0"
    assert {path: list(ops) for path, ops in document["paths"].items()} == {
        "/execute": ["post"],
        "/healthz": ["get"],
        "/readyz": ["get"],
        "/metrics": ["get"],
    }
    assert list(at(document, f"{EXECUTE}/responses")) == ["200", "413", "422", "500"]
    assert list(document["paths"]["/readyz"]["get"]["responses"]) == ["200", "503"]
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]


def test_openapi_info_names_the_notebook_and_cell() -> None:
    info = openapi_document(make_manifest())["info"]
    assert info["title"] == "image-classifier"
    assert info["version"] == "0.1.0"
    assert "classifier.ipynb" in info["description"]
    assert "cell-7f3a" in info["description"] and "cell 4" in info["description"]
    assert "isolated" in info["description"]
    assert "shared" in openapi_document(make_manifest(mode="shared"))["info"]["description"]


def test_openapi_components() -> None:
    manifest = make_manifest()
    schemas = openapi_document(manifest)["components"]["schemas"]
    assert list(schemas) == [
        "ImageClassifierInput",
        "ImageClassifierOutput",
        "Error",
        "ValidationError",
        "Status",
    ]
    inputs = schemas["ImageClassifierInput"]
    assert inputs["required"] == ["image", "features", "options", "raw"]
    assert inputs["additionalProperties"] is False
    assert inputs["properties"]["features"] == json_schema(ListOf(Scalar("float")))
    assert list(schemas["ImageClassifierOutput"]["properties"]) == [
        "label",
        "scores",
        "frame",
        "extra",
    ]
    assert schemas["Error"]["required"] == ["error_name", "error_message", "traceback"]


def test_openapi_examples_validate() -> None:
    document = openapi_document(make_manifest())
    Draft202012Validator.check_schema(document["components"]["schemas"]["ImageClassifierInput"])
    request = at(document, REQUEST)["examples"]["pinned"]["value"]
    assert set(request["input"]) == {"image", "features", "options", "raw"}
    assert request["input"]["image"]["dtype"] == "uint8"  # stored as pinned: the b64 form
    document_validator(document, f"{REQUEST}/schema").validate(request)
    response = at(document, OK)["examples"]["pinned"]["value"]
    document_validator(document, f"{OK}/schema").validate(response)
    # The envelope is required and the input object is closed.
    requests = document_validator(document, f"{REQUEST}/schema")
    assert not requests.is_valid(request["input"])
    assert not requests.is_valid({"input": {**request["input"], "typo": 1}})
    assert not requests.is_valid(
        {"input": {k: v for k, v in request["input"].items() if k != "raw"}}
    )


def test_openapi_error_schemas() -> None:
    document = openapi_document(make_manifest())
    body = {"error_name": "ValidationError", "error_message": "field required", "traceback": []}
    unprocessable = document_validator(
        document, f"{EXECUTE}/responses/422/content/application~1json/schema"
    )
    assert unprocessable.is_valid({**body, "field": "input.features"})
    assert not unprocessable.is_valid(body)
    failed = document_validator(
        document, f"{EXECUTE}/responses/500/content/application~1json/schema"
    )
    assert failed.is_valid({**body, "error_name": "ZeroDivisionError", "traceback": ["line 1"]})
    assert not failed.is_valid({**body, "traceback": "line 1"})


def test_openapi_is_deterministic() -> None:
    first = json.dumps(openapi_document(make_manifest()))
    assert json.dumps(openapi_document(make_manifest())) == first
    reread = Manifest.from_dict(json.loads(json.dumps(make_manifest().to_dict())))
    assert json.dumps(openapi_document(reread)) == first


def test_openapi_document_does_not_alias_the_manifest() -> None:
    manifest = make_manifest()
    document = openapi_document(manifest)
    at(document, REQUEST)["examples"]["pinned"]["value"]["input"]["features"].append(1.0)
    assert manifest.inputs[1].example == [6.7, 3.0]


def test_openapi_spec_is_valid() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(openapi_document(make_manifest()))


@pytest.mark.parametrize(
    ("name", "prefix"),
    [("predict", "Predict"), ("image-classifier", "ImageClassifier"), ("svc-2stage", "Svc2stage")],
)
def test_component_prefix(name: str, prefix: str) -> None:
    assert component_prefix(name) == prefix


def test_openapi_document_is_strict_json() -> None:
    """A table example with missing floats/strings (NaN at pin time) goes out as null."""
    document = openapi_document(make_manifest())
    json.dumps(document, allow_nan=False)
    frame = at(document, OK)["examples"]["pinned"]["value"]["output"]["frame"]
    assert frame[1]["celsius"] is None and frame[1]["city"] is None
