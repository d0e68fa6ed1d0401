"""The runtime a generated client package carries in ``<package>/_runtime/``.

The client modules of checkpoint2svc (checking and converting values, REST and gRPC calls,
errors) are copied into the package with their imports made relative, so that installing a
client brings httpx, orjson, grpcio, grpcio-status and protobuf, and not checkpoint2svc with its
docker, fastapi, ipykernel and grpcio-tools. The copies are exact apart from those import lines
and a header, so the runtime's own tests cover them.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from functools import cache
from pathlib import Path

from checkpoint2svc import __version__
from checkpoint2svc.errors import Checkpoint2SvcError

RUNTIME_DIR = "_runtime"
"""The package's sub-package that holds the copies."""

VENDORED: dict[str, str] = {
    "errors": "checkpoint2svc.errors",
    "types": "checkpoint2svc.signature.types",
    "client": "checkpoint2svc.runtime.client",
    "json_values": "checkpoint2svc.runtime.json_values",
    "proto_values": "checkpoint2svc.runtime.proto_values",
    "rest_client": "checkpoint2svc.runtime.rest_client",
    "grpc_client": "checkpoint2svc.runtime.grpc_client",
}
"""Module of ``_runtime/`` -> the checkpoint2svc module it is a copy of."""

RUNTIME_DEPENDENCIES = (
    "grpcio>=1.60",
    "grpcio-status>=1.60",
    "httpx>=0.27",
    "orjson>=3.9",
    "protobuf>=5.26",
)
"""What the copies import (numpy and pandas only for tensors and tables: the package adds them
when its signature has one)."""

_LOCAL = {module: name for name, module in VENDORED.items()}
_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class RuntimeCopyError(Checkpoint2SvcError):
    """A client module of checkpoint2svc imports a part of checkpoint2svc that is not copied."""


def runtime_files() -> dict[str, str]:
    """The files of ``_runtime/`` (name -> text): the copies and an ``__init__.py``."""
    files = {"__init__.py": f'"""Copied from checkpoint2svc {__version__}; do not edit."""\n'}
    for name, module in VENDORED.items():
        files[f"{name}.py"] = copied_source(module)
    return files


@cache
def copied_source(module: str) -> str:
    """``module``'s source with its imports of the other copies made relative (once per
    process: ~20 ms for the seven, and ``serve CHECKPOINT`` generates a client at start-up)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    source = Path(spec.origin).read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    statements: list[tuple[int, int, tuple[str, str]]] = []  # first, last line (1-based), key
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _ours(node.value)
            and _MODULE_NAME.fullmatch(node.value)
        ):
            raise RuntimeCopyError(
                f"{module} line {node.lineno} names the module {node.value} in a string (an "
                "import by name?), which a client package's copy cannot load"
            )
        if isinstance(node, ast.Import) and any(_ours(a.name) for a in node.names):
            raise RuntimeCopyError(f"{module} line {node.lineno}: use `from ... import` there")
        if isinstance(node, ast.ImportFrom) and node.level == 0 and _ours(node.module or ""):
            old = f"from {node.module} import "
            line = lines[node.lineno - 1]
            if not line.startswith(old):
                raise RuntimeCopyError(
                    f"{module} line {node.lineno} imports {node.module} inside a block; "
                    "the client package's copy needs it at the top level"
                )
            new = _relative(module, node)
            lines[node.lineno - 1] = line.replace(old, f"from {new} import ", 1)
            key = (new, node.names[0].name.lower())
            statements.append((node.lineno, node.end_lineno or node.lineno, key))
    _sort_adjacent(lines, sorted(statements))
    header = f"# Copied from {module} (checkpoint2svc {__version__}); do not edit.\n"
    return header + "".join(lines)


def _sort_adjacent(lines: list[str], statements: list[tuple[int, int, tuple[str, str]]]) -> None:
    """Sort each run of adjacent rewritten imports by module, then first name, as isort orders
    relative imports (``checkpoint2svc.errors`` came before ``checkpoint2svc.runtime.client``;
    ``.errors`` goes after ``.client``)."""
    runs: list[list[tuple[int, int, tuple[str, str]]]] = []
    for statement in statements:
        if runs and statement[0] == runs[-1][-1][1] + 1:
            runs[-1].append(statement)
        else:
            runs.append([statement])
    for run in runs:
        first, last = run[0][0] - 1, run[-1][1]
        texts = {s: "".join(lines[s[0] - 1 : s[1]]) for s in run}
        ordered = [texts[s] for s in sorted(run, key=lambda s: s[2])]
        lines[first:last] = ordered + [""] * (last - first - len(ordered))  # same numbering


def _ours(module: str) -> bool:
    return module == "checkpoint2svc" or module.startswith("checkpoint2svc.")


def _relative(module: str, node: ast.ImportFrom) -> str:
    """``from checkpoint2svc.runtime.client import X`` -> ``from .client import X``, and
    ``from checkpoint2svc import errors`` -> ``from . import errors``."""
    target = node.module or ""
    if target in _LOCAL:
        return f".{_LOCAL[target]}"
    if all(f"{target}.{alias.name}" in _LOCAL for alias in node.names):
        names = {_LOCAL[f"{target}.{alias.name}"] for alias in node.names}
        if names == {alias.name for alias in node.names}:
            return "."
    raise RuntimeCopyError(
        f"{module} line {node.lineno} imports {target}, which a client package does not carry; "
        f"add it to codegen.client_runtime.VENDORED or import it elsewhere"
    )
