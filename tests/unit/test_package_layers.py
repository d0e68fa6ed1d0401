"""The package's layering, read from the source: every import, function-level ones included.

A node is a sub-package of checkpoint2svc (``checkpoint``, ``runtime``, ``wire``...) or one of its
top-level modules (``cli``, ``errors``...); the package's own ``__init__`` is the node
``checkpoint2svc``. No two nodes may import each other, however indirectly, and ``wire`` (which
a generated client carries as a plain copy) imports nothing of checkpoint2svc but itself.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import checkpoint2svc

PACKAGE = Path(checkpoint2svc.__file__).parent
ROOT = "checkpoint2svc"


def _node_of(module: str) -> str:
    """``checkpoint2svc.runtime.server`` -> ``runtime``; the package itself -> its own name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def _module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


_NAMED = re.compile(rf"\b{ROOT}(?:\.[A-Za-z_]\w*)+")


def _named_module(text: str) -> Iterator[str]:
    """The checkpoint2svc modules a string names (``"checkpoint2svc.checkpoint.pin"``, or inside
    code to run, ``'__import__("checkpoint2svc.x.y", ...)'``): the longest dotted prefix of each
    mention that is a module file; an import by ``importlib.import_module`` or ``__import__``."""
    for match in _NAMED.finditer(text):
        parts = match.group().split(".")
        for end in range(len(parts), 1, -1):
            if _is_module(name := ".".join(parts[:end])):
                yield name
                break


def _imported(path: Path) -> Iterator[tuple[str, int]]:
    """The checkpoint2svc modules ``path`` imports (absolute), with the line of each import; a
    string that names a module counts as an import of it (docstrings and other bare strings
    excepted), as lazy imports name their modules in strings."""
    module = _module_of(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bare = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in bare:
            for name in _named_module(node.value):
                yield name, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:  # ``from checkpoint2svc import errors`` imports a module
                sub = f"{target}.{alias.name}"
                yield (sub if _is_module(sub) else target), node.lineno


@cache
def edges() -> dict[str, dict[str, list[str]]]:
    """node -> node it imports -> where (``path:line``), for imports between different nodes."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _node_of(_module_of(path))
        graph.setdefault(source, {})
        for target, line in _imported(path):
            if target != ROOT and not target.startswith(f"{ROOT}."):
                continue
            if (node := _node_of(target)) != source:
                where = f"{path.relative_to(PACKAGE.parent)}:{line}"
                wheres = graph[source].setdefault(node, [])
                if where not in wheres:
                    wheres.append(where)
    return graph


def _cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """One cycle through each node that is on one (as a list of nodes, first == last)."""
    found: list[list[str]] = []
    seen: set[str] = set()
    for start in sorted(graph):
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        visited: set[str] = set()
        while stack:
            node, trail = stack.pop()
            for nxt in sorted(graph.get(node, {})):
                if nxt == start and start not in seen:
                    found.append([*trail, start])
                    seen.update(trail)
                    stack.clear()
                    break
                if nxt not in visited:
                    visited.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    return found


def test_the_walk_sees_the_package() -> None:
    graph = edges()
    assert {"checkpoint", "runtime", "wire", "execution", "codegen", "cli", "errors"} <= set(graph)
    assert "wire" in graph["runtime"]
    assert "errors" in graph["checkpoint"]  # a top-level module is a node of its own


def test_a_cycle_is_found_however_long() -> None:
    graph: dict[str, dict[str, list[str]]] = {
        "a": {"b": []}, "b": {"c": []}, "c": {"a": [], "d": []}, "d": {},
    }  # fmt: skip
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b": []}, "b": {}}) == []


def test_no_two_parts_of_the_package_import_each_other() -> None:
    graph = edges()
    described = [
        " -> ".join(cycle)
        + "".join(
            f"\n    {a} -> {b}: {', '.join(graph[a][b][:3])}" for a, b in itertools.pairwise(cycle)
        )
        for cycle in _cycles(graph)
    ]
    assert not described, "import cycles between parts of checkpoint2svc:\n" + "\n".join(described)


def test_the_wire_imports_nothing_of_the_package_but_itself() -> None:
    assert edges()["wire"] == {}
    for path in sorted((PACKAGE / "wire").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert not (node.module or "").startswith(ROOT), f"{path.name}:{node.lineno}"
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith(ROOT) for a in node.names), path.name


def test_a_module_named_in_a_string_is_imported() -> None:
    code = '__import__("checkpoint2svc.checkpoint.kernel_side", fromlist=["capture"]).capture('
    assert list(_named_module(code)) == ["checkpoint2svc.checkpoint.kernel_side"]
    assert list(_named_module("checkpoint2svc.errors.NotebookError")) == ["checkpoint2svc.errors"]
    assert list(_named_module("checkpoint2svc.no_such_module, checkpoint2svc")) == []
    pin = {name for name, _ in _imported(PACKAGE / "checkpoint" / "pin.py")}
    assert "checkpoint2svc.checkpoint.kernel_side" in pin  # the code the kernel runs
    # the package's front door imports its names lazily, from modules named in ``_HOMES``
    assert {"codegen", "image", "control"} <= set(edges()[ROOT])
    assert all(where.startswith("checkpoint2svc/__init__.py:") for where in edges()[ROOT]["image"])
    # and such an import closes a cycle like any other: the walk would report control -> root
    graph = {node: dict(targets) for node, targets in edges().items()}
    graph["control"][ROOT] = ["a string naming checkpoint2svc"]
    assert any({ROOT, "control"} <= set(cycle) for cycle in _cycles(graph))
