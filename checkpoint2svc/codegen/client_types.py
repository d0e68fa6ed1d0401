"""IR types -> what a generated client package writes for them: Python annotations, the
``TypedDict`` of each record, and the expressions that rebuild the IR in ``models.py``.

The mappings are exhaustive (``assert_never``): a new IR kind fails type checking here until it
has an annotation and an expression. ``codegen.client_package`` builds the package's model from
these; the templates only print it.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import assert_never

from checkpoint2svc.codegen.python_source import (
    INDENT,
    Call,
    comment,
    from_import,
    literal,
    noqa,
    tuple_of,
)
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

MAX_RECORD_NAME = 48
"""Records are named after where they are (``InputPointsItem``), cut to this length."""
ARRAYS = (Tensor, Table, Series)
"""The kinds whose Python values compare elementwise, and whose annotation hides the IR type."""
RESERVED_NAMES = frozenset({"Input", "Output", "SIGNATURE"})
"""Names ``models.py`` defines itself, which no record may take."""


@dataclass(frozen=True)
class PyField:
    """A field of a dataclass or a TypedDict."""

    name: str
    key: str
    """The name as a Python string literal (dict keys, functional TypedDicts)."""
    annotation: str
    comment: tuple[str, ...]
    """Comment lines above the field: the IR type where the annotation does not show it all."""
    default: str
    """``" = None"`` for an optional input, else empty."""
    noqa: str
    """``"  # noqa: E501"`` where the line cannot be shortened, else empty."""


@dataclass(frozen=True)
class RecordModel:
    """A record of the signature, as a ``TypedDict``."""

    name: str
    fields: tuple[PyField, ...]
    functional: bool
    """``TypedDict("Name", {...})`` with quoted types: some key is no plain identifier."""


def ir_expression(type_: TypeIR) -> Call:
    """The expression that builds ``type_`` from ``checkpoint2svc.wire.type_ir`` (``ir``)."""
    if isinstance(type_, Scalar):
        return Call("ir.Scalar(", (literal(type_.kind),))
    if isinstance(type_, Optional):
        return Call("ir.Optional(", (ir_expression(type_.inner),))
    if isinstance(type_, ListOf):
        return Call("ir.ListOf(", (ir_expression(type_.item),))
    if isinstance(type_, DictOf):
        return Call("ir.DictOf(", (ir_expression(type_.value),))
    if isinstance(type_, Record):
        fields = (Call("ir.Field(", (literal(f.name), ir_expression(f.type))) for f in type_.fields)
        return Call("ir.Record(", (tuple_of(fields),))
    if isinstance(type_, Tensor):
        return Call("ir.Tensor(", (literal(type_.dtype), tuple_of(str(d) for d in type_.shape)))
    if isinstance(type_, Table):
        columns = (Call("ir.Column(", (literal(c.name), literal(c.dtype))) for c in type_.columns)
        return Call("ir.Table(", (tuple_of(columns),))
    if isinstance(type_, Series):
        named = () if type_.name is None else (literal(type_.name),)
        return Call("ir.Series(", (literal(type_.dtype), literal(type_.index), *named))
    if isinstance(type_, Json):
        return Call("ir.Json(", ())
    assert_never(type_)


def camel(name: str) -> str:
    """``name`` in CamelCase, its non-alphanumeric characters dropped: ``max_len`` -> ``MaxLen``."""
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[^0-9A-Za-z]+", name) if p)


def _plain_key(key: str) -> bool:
    """A key that can be a field of a class-syntax TypedDict (no keyword, no name mangling)."""
    return key.isidentifier() and not keyword.iskeyword(key) and not key.startswith("__")


def contains(type_: TypeIR, kinds: tuple[type, ...]) -> bool:
    """Whether ``type_`` is one of ``kinds`` or holds one (in an optional, list, dict, record)."""
    if isinstance(type_, kinds):
        return True
    if isinstance(type_, Optional):
        return contains(type_.inner, kinds)
    if isinstance(type_, ListOf):
        return contains(type_.item, kinds)
    if isinstance(type_, DictOf):
        return contains(type_.value, kinds)
    if isinstance(type_, Record):
        return any(contains(f.type, kinds) for f in type_.fields)
    return False


class PythonTypes:
    """Python annotations for IR types; declares a TypedDict per distinct record (``records``)."""

    def __init__(self) -> None:
        self.records: list[RecordModel] = []
        self._names: dict[Record, str] = {}
        self._used = set(RESERVED_NAMES)

    def annotation(self, type_: TypeIR, hint: str) -> str:
        """The annotation of ``type_``; a record is named after ``hint`` (where it is)."""
        if isinstance(type_, Scalar):
            return type_.kind
        if isinstance(type_, Optional):
            inner = type_.inner
            while isinstance(inner, Optional):
                inner = inner.inner
            return f"{self.annotation(inner, hint)} | None"
        if isinstance(type_, ListOf):
            return f"list[{self.annotation(type_.item, f'{hint}Item')}]"
        if isinstance(type_, DictOf):
            return f"dict[str, {self.annotation(type_.value, f'{hint}Value')}]"
        if isinstance(type_, Record):
            return self._record(type_, hint)
        if isinstance(type_, Tensor):
            scalar = "bool_" if type_.dtype == "bool" else type_.dtype
            return f"NDArray[numpy.{scalar}]"
        if isinstance(type_, Table):
            return "pandas.DataFrame"
        if isinstance(type_, Series):
            return "pandas.Series"
        if isinstance(type_, Json):
            return "Any"
        assert_never(type_)

    def _record(self, record: Record, hint: str) -> str:
        if record in self._names:
            return self._names[record]
        hint = hint[:MAX_RECORD_NAME]
        name, n = hint, 1
        while name in self._used:
            n += 1
            name = f"{hint}{n}"
        self._used.add(name)
        self._names[record] = name
        functional = not all(_plain_key(f.name) for f in record.fields)
        indent = INDENT * 2 if functional else INDENT
        fields = tuple(
            py_field(
                f.name, self.annotation(f.type, f"{name}{camel(f.name)}"), f.type, indent,
                quoted=functional,
            )
            for f in record.fields
        )  # fmt: skip
        self.records.append(RecordModel(name, fields, functional))
        return name


def py_field(
    name: str, annotation: str, type_: TypeIR, indent: str, quoted: bool = False, default: str = ""
) -> PyField:
    """A field at ``indent``; ``quoted``: as an entry ``"key": "type",`` of a functional
    TypedDict."""
    key = literal(name)
    line = f'{indent}{key}: "{annotation}",' if quoted else f"{indent}{name}: {annotation}{default}"
    lines = comment(type_.render(), indent) if contains(type_, ARRAYS) else ()
    return PyField(name, key, annotation, lines, default, noqa(line))


@dataclass(frozen=True)
class AnnotationNeeds:
    """What some annotations refer to, beyond builtins."""

    typing: tuple[str, ...]
    """``Any``, if used."""
    type_checking: tuple[str, ...]
    """Import lines of numpy and pandas, for type checkers only."""
    records: tuple[str, ...]

    @classmethod
    def of(cls, annotations: Iterable[str], records: Iterable[str]) -> AnnotationNeeds:
        names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", " ".join(annotations)))
        imports = [
            *(["import numpy"] if "numpy" in names else []),
            *(["import pandas"] if "pandas" in names else []),
            *(["from numpy.typing import NDArray"] if "NDArray" in names else []),
        ]
        return cls(
            typing=("Any",) if "Any" in names else (),
            type_checking=tuple(imports),
            records=tuple(r for r in records if r in names),
        )

    def typing_import(self, *more: str) -> tuple[str, ...]:
        """The ``from typing import ...`` line(s): these names, ``more``, and TYPE_CHECKING
        when numpy or pandas are imported for annotations."""
        names = [*self.typing, *more, *(["TYPE_CHECKING"] if self.type_checking else [])]
        return from_import("typing", names) if names else ()
