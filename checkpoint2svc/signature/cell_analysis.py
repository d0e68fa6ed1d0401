"""Static analysis of one cell: which global names it reads, assigns and imports."""

from __future__ import annotations

import ast
import symtable
import sys
from dataclasses import dataclass
from functools import lru_cache

from checkpoint2svc.errors import SignatureError


@dataclass(frozen=True)
class CellNames:
    """What a cell does with global names, each tuple in order of first appearance."""

    reads: tuple[str, ...]
    """Globals whose value from before the cell is read (anywhere, nested scopes included)."""
    assigns: tuple[str, ...]
    """Names given a value by assignment at the top level (``=``, ``+=``, ``:=``, annotated)."""
    binds: tuple[str, ...]
    """Every name the cell binds at the top level, ``def``, ``class``, ``import`` and loops too."""
    imports: tuple[str, ...]
    """Top-level packages the cell imports."""


@lru_cache(maxsize=1)
def _transformer() -> object:
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager()  # type: ignore[no-untyped-call]


def to_python(source: str) -> str:
    """Turn cell source with IPython syntax (``%magic``, ``!cmd``) into plain Python."""
    if not any(marker in source for marker in ("%", "!", "?")):
        return source
    return _transformer().transform_cell(source)  # type: ignore[attr-defined, no-any-return]


def parse_cell(source: str, where: str) -> ast.Module:
    try:
        return ast.parse(source, filename=where)
    except SyntaxError as exc:
        raise SignatureError(
            f"{where} is not valid Python (line {exc.lineno}: {exc.msg}); fix it and pin again"
        ) from exc


def _nested_global_reads(table: symtable.SymbolTable) -> set[str]:
    names: set[str] = set()
    for child in table.get_children():
        for symbol in child.get_symbols():
            if symbol.is_referenced() and (symbol.is_global() or symbol.is_free()):
                names.add(symbol.get_name())
        names |= _nested_global_reads(child)
    return names


def _first_positions(
    tree: ast.Module,
) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]]:
    """First load and first store position of every name, in source order."""
    loads: dict[str, tuple[int, int]] = {}
    stores: dict[str, tuple[int, int]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            target = stores if isinstance(node.ctx, ast.Store) else loads
            pos = (node.lineno, node.col_offset)
            if node.id not in target or pos < target[node.id]:
                target[node.id] = pos
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                pos = (node.lineno, node.col_offset)
                if bound not in stores or pos < stores[bound]:
                    stores[bound] = pos
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            pos = (node.lineno, node.col_offset)
            if node.name not in stores or pos < stores[node.name]:
                stores[node.name] = pos
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            # ``x += 1`` reads x before it stores it.
            pos = (node.lineno, node.col_offset)
            if node.target.id not in loads or pos < loads[node.target.id]:
                loads[node.target.id] = pos
    return loads, stores


def _assigned_names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple | ast.List):
        return [n for elt in target.elts for n in _assigned_names(elt)]
    if isinstance(target, ast.Starred):
        return _assigned_names(target.value)
    return []  # attribute or subscript targets mutate, they do not bind


def analyze_cell(source: str, where: str = "the cell") -> CellNames:
    """Find the globals ``source`` (plain Python) reads, assigns, binds and imports."""
    tree = parse_cell(source, where)
    top = symtable.symtable(source, where, "exec")
    read_set = {s.get_name() for s in top.get_symbols() if s.is_referenced()}
    read_set |= _nested_global_reads(top)
    loads, stores = _first_positions(tree)

    assigns: list[str] = []
    imports: list[str] = []
    for stmt in ast.walk(tree):
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        if isinstance(stmt, ast.Assign):
            names = [n for t in stmt.targets for n in _assigned_names(t)]
        elif (
            isinstance(stmt, ast.AnnAssign | ast.AugAssign) and stmt.value is not None
        ) or isinstance(stmt, ast.NamedExpr):
            names = _assigned_names(stmt.target)
        elif isinstance(stmt, ast.Import | ast.ImportFrom):
            if isinstance(stmt, ast.Import):
                imports.extend(alias.name.split(".")[0] for alias in stmt.names)
            elif stmt.module and stmt.level == 0:
                imports.append(stmt.module.split(".")[0])
            continue
        else:
            continue
        assigns.extend(n for n in names if n not in assigns)
    assigns = sorted(  # in source order (ast.walk is breadth-first)
        (n for n in assigns if _is_top_level_binding(top, n)),
        key=lambda n: stores.get(n, (sys.maxsize, 0)),
    )

    binds = [s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()]
    reads = [
        name
        for name in sorted(read_set, key=lambda n: loads.get(n, (sys.maxsize, 0)))
        if name not in stores or loads.get(name, (sys.maxsize, 0)) <= stores[name]
    ]
    return CellNames(
        reads=tuple(reads),
        assigns=tuple(assigns),
        binds=tuple(sorted(binds, key=lambda n: stores.get(n, (sys.maxsize, 0)))),
        imports=tuple(dict.fromkeys(imports)),
    )


def _is_top_level_binding(top: symtable.SymbolTable, name: str) -> bool:
    try:
        return top.lookup(name).is_assigned()
    except KeyError:
        return False


def annotations_of(source: str) -> dict[str, ast.expr]:
    """The annotation expression of every top-level ``name: T = ...`` in a cell."""
    tree = parse_cell(source, "the parameters cell")
    return {
        stmt.target.id: stmt.annotation
        for stmt in tree.body
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
    }
