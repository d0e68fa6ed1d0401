"""Which variables are the service's inputs and outputs: the rules, as plain functions.

Explicit flags win. Otherwise the inputs are the variables of the cell tagged ``parameters``
(papermill's convention) that the target cell reads; a notebook without such a cell (most real
notebooks) gives a service with no inputs, which answers what the cell computes on the pinned
state, and the note printed at pin time names the simple-valued variables the cell reads that
``--inputs`` could turn into inputs. The outputs are the names the target cell assigns, minus
those starting with ``_``; the service serves those whose value has a wire type (the kernel
finds out, on the example run) and leaves the others out with a warning, or refuses when
``--outputs`` named one. Finally the examples must fit in one message of the default limit.

Nothing here looks at a value except :func:`is_simple_value`: the kernel half of pinning gathers
the facts and these functions decide.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from checkpoint2svc.errors import SignatureError


@dataclass(frozen=True)
class InputChoice:
    names: tuple[str, ...]
    note: str = ""
    """Said at pin time when the rule chose for the user (how to choose otherwise)."""


def no_inputs_note(candidates: Sequence[str]) -> str:
    hint = (
        f"; to make variables it reads into inputs, pass --inputs (e.g. --inputs "
        f"{','.join(candidates[:3])}) or tag the cell that defines them `parameters`"
        if candidates
        else "; tag a cell `parameters` or pass --inputs a,b to give it inputs"
    )
    return (
        "no cell is tagged `parameters`, so the service takes no inputs: it answers what the "
        "target cell computes on the pinned state" + hint
    )


def _check_flag(
    flag: str,
    names: Sequence[str],
    allowed: Sequence[str],
    verb: str,
    more: str,
    listed: Sequence[str] | None = None,
) -> None:
    """Every name a flag gives is one the target cell ``verb``s, or an error that lists them."""
    for name in names:
        if name not in allowed:
            shown = ", ".join(allowed if listed is None else listed) or "nothing"
            raise SignatureError(
                f"{flag} names {name!r}, which the target cell never {verb} "
                f"(it {verb}: {shown}); fix the flag{more}"
            )


def select_inputs(
    explicit: Sequence[str] | None,
    parameters: Sequence[str] | None,
    reads: Sequence[str],
    defined: Collection[str],
    candidates: Sequence[str] = (),
) -> InputChoice:
    """The inputs: ``explicit`` (``--inputs``; empty means none), else the ``parameters`` cell's
    variables the cell ``reads``, else none. ``defined`` are the names that have a value before
    the target cell; ``candidates`` the simple-valued ones among ``reads`` (named in the note)."""
    if explicit is not None:
        no_inputs = ", or pass --inputs '' for a service without inputs"
        _check_flag("--inputs", explicit, reads, "reads", no_inputs)
        chosen = tuple(explicit)
        note = ""
    elif parameters is not None:
        chosen = tuple(name for name in parameters if name in reads)
        if not chosen:
            raise SignatureError(
                "the target cell reads none of the variables of the cell tagged `parameters` "
                f"({', '.join(parameters) or 'it defines none'}); read them in the target cell, "
                "name the inputs with --inputs a,b, or pass --inputs '' for a service without "
                "inputs"
            )
        note = ""
    else:
        return InputChoice((), no_inputs_note(candidates))
    for name in chosen:
        if name not in defined:
            raise SignatureError(
                f"input {name!r} has no value before the target cell; define an example value "
                "in an earlier cell (the parameters cell) so its type can be recorded"
            )
    return InputChoice(chosen, note)


_SCALARS = (bool, int, float, str)
_SIMPLE_LIST_LENGTH = 64


def is_simple_value(value: object) -> bool:
    """A value a caller could plausibly send: a scalar, or a short list of scalars (such
    variables are the ones the no-inputs note suggests for ``--inputs``)."""
    return isinstance(value, _SCALARS) or (
        isinstance(value, list | tuple)
        and len(value) <= _SIMPLE_LIST_LENGTH
        and all(isinstance(v, _SCALARS) for v in value)
    )


def select_outputs(
    explicit: Sequence[str] | None, assigns: Sequence[str], binds: Sequence[str]
) -> tuple[str, ...]:
    """The outputs: ``explicit`` (``--outputs``), else what the cell assigns, minus ``_`` names."""
    if explicit is not None:
        _check_flag("--outputs", explicit, binds, "assigns", "", listed=assigns)
        return tuple(explicit)
    chosen = tuple(name for name in assigns if not name.startswith("_"))
    if not chosen:
        raise SignatureError(
            "the target cell assigns no variable, so it has no outputs; assign the result to a "
            "variable (e.g. `result = ...`) or pass --outputs"
        )
    return chosen


@dataclass(frozen=True)
class OutputCandidate:
    """One of the selected outputs, as the example run found it."""

    name: str
    no_wire_type: str = ""
    """The Python type of a value with no wire type (no JSON form); empty when it has one."""


@dataclass(frozen=True)
class OutputChoice:
    names: tuple[str, ...]
    """The outputs the service serves, in the order selected."""
    warning: str = ""
    """Said at pin time when some were left out (which, and how to choose otherwise)."""


def served_outputs(candidates: Sequence[OutputCandidate], explicit: bool) -> OutputChoice:
    """The outputs that have a wire type. The others are left out with a warning, unless
    ``explicit`` (``--outputs`` named them) or none is left: both are errors."""
    served = [c.name for c in candidates if not c.no_wire_type]
    left_out = [c for c in candidates if c.no_wire_type]
    listing = ", ".join(f"{c.name} ({c.no_wire_type})" for c in left_out)
    if explicit and left_out:
        raise SignatureError(
            f"--outputs names {listing}, which has no wire type (no JSON form); outputs that "
            f"could be served: {', '.join(served) or 'none'}. Derive a number, "
            "string, list, dict, array or DataFrame from it in the cell"
        )
    if not served:
        raise SignatureError(
            f"none of the target cell's outputs has a wire type: {listing}; assign a number, "
            "string, list, dict, numpy array, Series or DataFrame derived from them in the cell "
            "(e.g. `r2 = results.rsquared`), or name such variables with --outputs"
        )
    warning = (
        f"outputs left out, they have no wire type: {listing}; the service serves "
        f"{', '.join(served)} (choose with --outputs)"
        if left_out
        else ""
    )
    return OutputChoice(tuple(served), warning)


def example_size_warning(
    what: str, examples: Mapping[str, Any], limit: int, strict: bool
) -> str | None:
    """``None`` when the example ``what`` (``input`` or ``output``: its variables' JSON values)
    fits in a message of ``limit`` bytes; else the warning, raised instead under ``--strict``."""
    size = len(json.dumps({what: examples}, separators=(",", ":")))
    if size <= limit:
        return None
    message = (
        f"the example {what} is {size / 2**20:.1f} MiB as JSON, over the "
        f"{limit >> 20} MiB message limit: it cannot be sent to a service "
        "with the default limit (the OpenAPI example, the client's example and the self-test "
        "need it); serve with --max-message-mb larger, or make the example smaller"
    )
    if strict:
        raise SignatureError(f"{message} (--strict)")
    return message


__all__ = [
    "InputChoice",
    "OutputCandidate",
    "OutputChoice",
    "example_size_warning",
    "is_simple_value",
    "no_inputs_note",
    "select_inputs",
    "select_outputs",
    "served_outputs",
]
