"""Python source text as ruff expects it: literals, comments, imports and calls.

The client generator (``codegen.client_package``) builds its model from these, so that the rendered
modules pass ``ruff check`` under the project's settings (line length, isort, RUF022) as they
come out of the template, without running ruff.
"""

from __future__ import annotations

import re
import textwrap
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

LINE_LENGTH = 100
INDENT = "    "


def width(line: str) -> int:
    """The width of ``line`` as ruff measures it: wide characters count twice."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)


def literal(text: str) -> str:
    """A Python string literal of ``text``, double-quoted where that needs no escapes."""
    quoted = repr(text)
    if quoted.startswith("'") and '"' not in text:
        quoted = '"' + quoted[1:-1].replace("\\'", "'") + '"'
    return quoted


def comment(text: str, indent: str) -> tuple[str, ...]:
    """``text`` as comment lines at ``indent``, within the line length (any text is safe)."""
    clean = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    room = LINE_LENGTH - len(indent) - 2
    return tuple(f"{indent}# {line}" for line in textwrap.wrap(clean, room, break_on_hyphens=False))


def noqa(line: str) -> str:
    """``"  # noqa: E501"`` for a line too long to fit, else ``""`` (ruff never finds a line of
    one word, such as a long string, too long, and flags a needless ``noqa``)."""
    return "  # noqa: E501" if width(line) > LINE_LENGTH and len(line.split()) > 1 else ""


def import_order(name: str) -> tuple[Any, ...]:
    """isort's order of imported names (and RUF022's of ``__all__``): constants, classes, the
    rest; numbers inside names compared as numbers."""
    kind = 0 if len(name) > 1 and name.isupper() else 1 if name[:1].isupper() else 2
    parts = tuple(int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name))
    return (kind, parts)


def from_import(module: str, names: Iterable[str]) -> tuple[str, ...]:
    """The line(s) of ``from module import names``, wrapped as isort wraps them."""
    ordered = sorted(set(names), key=import_order)
    line = f"from {module} import {', '.join(ordered)}"
    if width(line) <= LINE_LENGTH:
        return (line,)
    return (f"from {module} import (", *(f"{INDENT}{n}," for n in ordered), ")")


@dataclass(frozen=True)
class Call:
    """A call or a tuple, laid out as ruff's formatter would: on one line if it fits, else one
    argument per line with a trailing comma."""

    open: str
    """Everything up to the opening parenthesis, included: ``ir.Record(``, ``inputs=f(``."""
    args: tuple[Call | str, ...]
    close: str = ")"
    is_tuple: bool = False

    def flat(self) -> str:
        inner = ", ".join(a if isinstance(a, str) else a.flat() for a in self.args)
        if self.is_tuple and len(self.args) == 1:
            inner += ","
        return f"{self.open}{inner}{self.close}"

    def lines(self, indent: str = "", suffix: str = "") -> list[str]:
        line = f"{indent}{self.flat()}{suffix}"
        if width(line) <= LINE_LENGTH or not self.args:
            return [line]
        out = [f"{indent}{self.open}"]
        for arg in self.args:
            if isinstance(arg, str):
                text = f"{indent}{INDENT}{arg},"
                out.append(text + noqa(text))
            else:
                out.extend(arg.lines(indent + INDENT, ","))
        out.append(f"{indent}{self.close}{suffix}")
        return out


def tuple_of(items: Iterable[Call | str]) -> Call:
    return Call("(", tuple(items), is_tuple=True)
