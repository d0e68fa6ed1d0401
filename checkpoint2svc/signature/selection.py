"""Which variables are the service's inputs and outputs: the rules, as plain functions.

Explicit flags win. Otherwise the inputs are the variables of the cell tagged ``parameters``
(papermill's convention) that the target cell reads; a notebook without such a cell (most real
notebooks) gives a service with no inputs, which answers what the cell computes on the pinned
state, and the note printed at pin time names the simple-valued variables the cell reads that
``--inputs`` could turn into inputs. The outputs are the names the target cell assigns, minus
those starting with ``_``; which of them have a wire type is decided later, on their values.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

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


__all__ = ["InputChoice", "no_inputs_note", "select_inputs", "select_outputs"]
