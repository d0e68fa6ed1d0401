"""The copy of the wire a generated package carries (``_wire/``): ``checkpoint2svc.wire``, byte
for byte."""

from __future__ import annotations

import ast
import importlib
import sys
import tomllib
from pathlib import Path

import pytest

from checkpoint2svc.codegen.client_wire import WIRE_DEPENDENCIES, wire_files, wire_folder
from checkpoint2svc.wire.errors import ValueConversionError

REPO = Path(__file__).resolve().parents[2]


def test_the_copy_is_the_wire_package_as_it_is() -> None:
    files = wire_files()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in wire_folder().glob("*.py")}
    assert files == on_disk
    assert {"__init__.py", "type_ir.py", "rest_client.py", "grpc_client.py"} <= set(files)
    assert not [p.name for p in wire_folder().iterdir() if p.is_dir() and p.name != "__pycache__"]


def test_the_copy_imports_only_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, text in wire_files().items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert not (node.module or "").startswith("checkpoint2svc"), (name, node.lineno)
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("checkpoint2svc") for a in node.names), name
    copy = tmp_path / "copied_client" / "_wire"
    copy.mkdir(parents=True)
    (copy.parent / "__init__.py").write_text("", encoding="utf-8")
    for name, text in wire_files().items():
        (copy / name).write_text(text, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        rest_client = importlib.import_module("copied_client._wire.rest_client")
        errors = importlib.import_module("copied_client._wire.errors")
        assert errors.ValueConversionError is not ValueConversionError
        assert rest_client.ValidationError.__module__ == "copied_client._wire.client_errors"
    finally:
        for module in [m for m in sys.modules if m.split(".")[0] == "copied_client"]:
            del sys.modules[module]


# What a top-level import of the copies needs installed (numpy and pandas: only for tensors and
# tables, which the package's pyproject adds when its signature has them).
DISTRIBUTIONS = {
    "grpc": "grpcio",
    "grpc_status": "grpcio-status",
    "google": "protobuf",  # google.rpc comes with grpcio-status (googleapis-common-protos)
    "httpx": "httpx",
    "orjson": "orjson",
    "numpy": "numpy",
    "pandas": "pandas",
}


def test_the_package_requires_what_the_copies_import() -> None:
    imported: set[str] = set()
    for text in wire_files().values():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party <= set(DISTRIBUTIONS), third_party - set(DISTRIBUTIONS)
    required = {r.split(">=")[0] for r in WIRE_DEPENDENCIES} | {"numpy", "pandas"}
    assert {DISTRIBUTIONS[name] for name in third_party} <= required


def test_the_lower_bounds_are_checkpoint2svc_s_own() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert set(WIRE_DEPENDENCIES) <= set(project["dependencies"])
