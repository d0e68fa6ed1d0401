"""Type IR -> JSON Schema (2020-12, as OpenAPI 3.1 uses it), and the instance's OpenAPI document.

The schemas describe the JSON forms that ``checkpoint2svc.wire.json_values`` reads and writes,
so that a client (or a generator of clients) can check a request before sending it. Every function
here is pure and deterministic: the same manifest gives the same document, key order included, so
the output can be kept as a golden file.
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any, assert_never

from checkpoint2svc.checkpoint.manifest import Manifest, Variable
from checkpoint2svc.wire.names import component_prefix
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

OPENAPI_VERSION = "3.1.0"
JSON = "application/json"

_SCALARS: dict[str, dict[str, Any]] = {
    "bool": {"type": "boolean"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "str": {"type": "string"},
    "bytes": {"type": "string", "contentEncoding": "base64"},
}
_INTEGER_DTYPE = re.compile(r"(u?)int(8|16|32|64)")


def json_schema(type_: TypeIR) -> dict[str, Any]:
    """The JSON Schema of the JSON form of a value of ``type_`` (the README's type table)."""
    if isinstance(type_, Scalar):
        return dict(_SCALARS[type_.kind])
    if isinstance(type_, Optional):
        return {"anyOf": [json_schema(type_.inner), {"type": "null"}]}
    if isinstance(type_, ListOf):
        return {"type": "array", "items": json_schema(type_.item)}
    if isinstance(type_, DictOf):
        return {"type": "object", "additionalProperties": json_schema(type_.value)}
    if isinstance(type_, Record):
        return {
            "type": "object",
            "properties": {f.name: json_schema(f.type) for f in type_.fields},
            "required": [f.name for f in type_.fields if not isinstance(f.type, Optional)],
            "additionalProperties": False,
        }
    if isinstance(type_, Tensor):
        return _tensor_schema(type_)
    if isinstance(type_, Table):
        return _table_schema(type_)
    if isinstance(type_, Series):
        return _series_schema(type_)
    if isinstance(type_, Json):
        return {}
    assert_never(type_)


def _dtype_schema(dtype: str) -> dict[str, Any]:
    """One element of a tensor: integers carry their dtype's range, which JSON cannot."""
    if dtype == "bool":
        return {"type": "boolean"}
    match = _INTEGER_DTYPE.fullmatch(dtype)
    if match is None:
        return {"type": "number"}
    bits = int(match.group(2))
    if match.group(1):
        return {"type": "integer", "minimum": 0, "maximum": 2**bits - 1}
    return {"type": "integer", "minimum": -(2 ** (bits - 1)), "maximum": 2 ** (bits - 1) - 1}


def _sized(schema: dict[str, Any], size: int) -> dict[str, Any]:
    """``schema`` (an array) held to ``size`` items, unless the size is free (-1)."""
    return schema if size == -1 else {**schema, "minItems": size, "maxItems": size}


def _tensor_schema(type_: Tensor) -> dict[str, Any]:
    """Nested arrays of the tensor's depth, or the ``{"dtype", "shape", "b64"}`` object."""
    nested = _dtype_schema(type_.dtype)
    for size in reversed(type_.shape):
        nested = _sized({"type": "array", "items": nested}, size)
    dims = [{"type": "integer", "minimum": 0} if d == -1 else {"const": d} for d in type_.shape]
    shape: dict[str, Any] = (
        {"type": "array", "prefixItems": dims, "minItems": len(dims), "maxItems": len(dims)}
        if dims
        else {"type": "array", "maxItems": 0}
    )
    packed = {
        "type": "object",
        "properties": {
            "dtype": {"const": type_.dtype},
            "shape": shape,
            "b64": {"type": "string", "contentEncoding": "base64"},
        },
        "required": ["shape", "b64"],
        "additionalProperties": False,
    }
    sizes = ", ".join(str(d) for d in type_.shape)
    return {
        "description": (
            f"{type_.dtype} tensor of shape ({sizes}) (-1 = any size): nested arrays, or "
            '{"dtype", "shape", "b64"} with the little-endian raw bytes in base64'
        ),
        "oneOf": [nested, packed],
    }


def _column_schema(dtype: str) -> dict[str, Any]:
    """One cell of a table column; strings and floats may be missing (null) as in pandas."""
    if dtype == "string":
        return {"type": ["string", "null"]}
    if dtype.startswith("datetime64"):  # RFC 3339 in UTC (json_values); NaT is null
        return {"type": ["string", "null"], "format": "date-time"}
    if dtype.startswith("float"):
        return {"type": ["number", "null"]}
    return _dtype_schema(dtype)


def _table_schema(type_: Table) -> dict[str, Any]:
    """An array of row objects, or an object of column arrays."""
    names = [c.name for c in type_.columns]
    rows = {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {c.name: _column_schema(c.dtype) for c in type_.columns},
            "required": names,
            "additionalProperties": False,
        },
    }
    columns = {
        "type": "object",
        "properties": {
            c.name: {"type": "array", "items": _column_schema(c.dtype)} for c in type_.columns
        },
        "required": names,
        "additionalProperties": False,
    }
    described = ", ".join(f"{c.name} ({c.dtype})" for c in type_.columns)
    return {
        "description": (
            f"table with columns {described}: an array of row objects, "
            "or an object of column arrays"
        ),
        "oneOf": [rows, columns],
    }


def _series_schema(type_: Series) -> dict[str, Any]:
    """``{"index", "values", "name"}``; with string labels, an object of values by label too."""
    arrays = {
        "type": "object",
        "properties": {
            "index": {"type": "array", "items": _column_schema(type_.index)},
            "values": {"type": "array", "items": _column_schema(type_.dtype)},
            "name": {"type": ["string", "null"]},
        },
        "required": ["index", "values"],
        "additionalProperties": False,
    }
    named = "" if type_.name is None else f" (named {type_.name!r} when pinned)"
    described = f"{type_.dtype} series{named} with a {type_.index} index"
    forms = '{"index": [labels], "values": [values], "name": string or null}'
    if type_.index != "string":
        return {"description": f"{described}: {forms}", **arrays}
    labelled = {"type": "object", "additionalProperties": _column_schema(type_.dtype)}
    return {
        "description": f"{described}: {forms}, or an object of values by label",
        "oneOf": [arrays, labelled],
    }


def _variables_schema(variables: list[Variable], what: str) -> dict[str, Any]:
    """The ``input`` or ``output`` object: every variable present, nothing else."""
    return {
        "type": "object",
        "description": f"The cell's {what}, by variable name.",
        "properties": {v.name: json_schema(v.type) for v in variables},
        "required": [v.name for v in variables],
        "additionalProperties": False,
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _envelope(key: str, schema_name: str) -> dict[str, Any]:
    return {"type": "object", "properties": {key: _ref(schema_name)}, "required": [key]}


def _as_sent(value: Any) -> Any:
    """A copy of an example as it goes over the wire: NaN and infinities become null (as orjson
    writes them), so that the document stays strict JSON whatever a table cell held at pin time."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _as_sent(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_sent(v) for v in value]
    return value


def _example(key: str, variables: list[Variable]) -> dict[str, Any]:
    value = {key: {v.name: _as_sent(v.example) for v in variables}}
    return {
        "pinned": {"summary": "The example recorded when the notebook was pinned", "value": value}
    }


def _error_response(description: str, schema_name: str = "Error") -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref(schema_name)}}}


def _request_id() -> dict[str, Any]:
    return {
        "description": "The request's id in the instance's logs (generated when not given).",
        "schema": {"type": "string"},
    }


def _status_response(description: str, status: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {JSON: {"schema": _ref("Status"), "example": {"status": status}}},
    }


_MODES = {
    "isolated": "every request starts from the pinned state, so no request leaks into the next",
    "shared": "requests run one at a time on one interpreter state and may change it",
}

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Why a request failed; for an exception in the cell, its name and traceback.",
    "properties": {
        "error_name": {"type": "string"},
        "error_message": {"type": "string"},
        "traceback": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["error_name", "error_message", "traceback"],
}

_VALIDATION_ERROR_SCHEMA: dict[str, Any] = {
    "allOf": [
        _ref("Error"),
        {
            "type": "object",
            "properties": {
                "field": {
                    "type": "string",
                    "description": 'Where the input is wrong, e.g. "input.features[2]".',
                }
            },
            "required": ["field"],
        },
    ]
}

_STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "string"},
        "reason": {"type": "string", "description": "why not ready, e.g. the failed self-test"},
    },
    "required": ["status"],
}


def openapi_document(manifest: Manifest) -> dict[str, Any]:
    """The OpenAPI 3.1 document of one instance's REST API, typed by the manifest's signature."""
    prefix = component_prefix(manifest.name)
    input_name, output_name = f"{prefix}Input", f"{prefix}Output"
    cell = manifest.cell
    description = (
        f"Runs cell {cell.index} (id `{cell.id}`) of the notebook `{manifest.notebook}` on its "
        f"pinned interpreter state, in {manifest.mode} mode: {_MODES[manifest.mode]}.\n\n"
        'Tensors travel as nested arrays or as `{"dtype", "shape", "b64"}`; bytes as base64; '
        "tables as an array of row objects or an object of column arrays."
    )
    execute = {
        "operationId": "execute",
        "summary": "Run the cell on one input",
        "parameters": [
            {"name": "x-request-id", "in": "header", "required": False, **_request_id()}
        ],
        "requestBody": {
            "required": True,
            "content": {
                JSON: {
                    "schema": _envelope("input", input_name),
                    "examples": _example("input", manifest.inputs),
                }
            },
        },
        "responses": {
            "200": {
                "description": "The cell's outputs",
                "headers": {"x-request-id": _request_id()},
                "content": {
                    JSON: {
                        "schema": _envelope("output", output_name),
                        "examples": _example("output", manifest.outputs),
                    }
                },
            },
            "413": _error_response(
                "The request or the response exceeds the instance's message size limit"
            ),
            "422": _error_response(
                "The input does not match the signature; `field` names where", "ValidationError"
            ),
            "500": _error_response("The cell raised an exception; the instance keeps serving"),
        },
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": manifest.name,
            "version": manifest.checkpoint2svc_version,
            "description": description,
        },
        "paths": {
            "/execute": {"post": execute},
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness: the process answers",
                    "responses": {"200": _status_response("Alive", "alive")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Readiness: the state is loaded and the self-test passed",
                    "responses": {
                        "200": _status_response("Ready to serve", "ready"),
                        "503": _status_response("Not ready yet", "not ready"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format 0.0.4",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": {
                input_name: _variables_schema(manifest.inputs, "inputs"),
                output_name: _variables_schema(manifest.outputs, "outputs"),
                "Error": copy.deepcopy(_ERROR_SCHEMA),
                "ValidationError": copy.deepcopy(_VALIDATION_ERROR_SCHEMA),
                "Status": copy.deepcopy(_STATUS_SCHEMA),
            }
        },
    }
