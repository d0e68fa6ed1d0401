"""The client runtime a generated package carries: exact copies but for the import lines."""

from __future__ import annotations

import ast
import importlib.util
import sys
import tomllib
from pathlib import Path

import pytest

from checkpoint2svc.codegen.client_runtime import (
    RUNTIME_DEPENDENCIES,
    VENDORED,
    RuntimeCopyError,
    copied_source,
    runtime_files,
)

REPO = Path(__file__).resolve().parents[2]


def _source(module: str) -> str:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).read_text(encoding="utf-8")


def test_each_copy_differs_from_its_module_only_in_imports_of_checkpoint2svc() -> None:
    files = runtime_files()
    assert set(files) == {"__init__.py", *(f"{name}.py" for name in VENDORED)}
    for name, module in VENDORED.items():
        header, copy = files[f"{name}.py"].split("\n", 1)
        assert header.startswith(f"# Copied from {module} ")
        original = _source(module)
        tree = ast.parse(copy)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert not (node.module or "").startswith("checkpoint2svc"), (name, node.lineno)
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("checkpoint2svc") for a in node.names), name
        gone = set(original.splitlines()) - set(copy.splitlines())
        new = set(copy.splitlines()) - set(original.splitlines())
        assert all(line.startswith("from checkpoint2svc") for line in gone), (name, gone)
        assert all(line.startswith("from .") for line in new), (name, new)
        assert len(copy.splitlines()) == len(original.splitlines())


def test_copied_imports_are_sorted_as_relative_imports() -> None:
    copy = runtime_files()["rest_client.py"]
    relative = [line for line in copy.splitlines() if line.startswith("from .")]
    assert relative == sorted(relative)
    assert relative[0].startswith("from .client import")  # checkpoint2svc.errors came first


def test_a_module_importing_what_is_not_copied_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "leaky_runtime.py").write_text(
        "from checkpoint2svc.errors import ValueConversionError\n"
        "from checkpoint2svc.control.home import Home\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RuntimeCopyError, match=r"imports checkpoint2svc\.control\.home"):
        copied_source("leaky_runtime")
    (tmp_path / "nested_runtime.py").write_text(
        "def f() -> None:\n    from checkpoint2svc.errors import ValueConversionError\n",
        encoding="utf-8",
    )
    with pytest.raises(RuntimeCopyError, match="needs it at the top level"):
        copied_source("nested_runtime")
    (tmp_path / "by_name_runtime.py").write_text(
        "import importlib\nerrors = importlib.import_module('checkpoint2svc.errors')\n",
        encoding="utf-8",
    )
    with pytest.raises(RuntimeCopyError, match=r"names the module checkpoint2svc\.errors"):
        copied_source("by_name_runtime")


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
    for text in runtime_files().values():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party <= set(DISTRIBUTIONS), third_party - set(DISTRIBUTIONS)
    required = {r.split(">=")[0] for r in RUNTIME_DEPENDENCIES} | {"numpy", "pandas"}
    assert {DISTRIBUTIONS[name] for name in third_party} <= required


def test_the_lower_bounds_are_checkpoint2svc_s_own() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert set(RUNTIME_DEPENDENCIES) <= set(project["dependencies"])
