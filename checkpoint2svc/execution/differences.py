"""How served outputs differ from the pinned examples, said so a person can read it.

Used by readiness (an instance replays its pinned example), the image self-test and pin's
determinism check. Tensors are compared as numbers (how many differ, the largest absolute
difference, the first few), never as base64 text. For a cell that pinned as non-deterministic
only the form is compared: types, keys, lengths and tensor shapes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from checkpoint2svc.wire.errors import ValueConversionError
from checkpoint2svc.wire.json_values import decode_json, wire_equal
from checkpoint2svc.wire.type_ir import Optional, Tensor, TypeIR

MAX_SHOWN = 3


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _tensor_difference(expected: Any, got: Any, type_: Tensor, field: str) -> str:
    import numpy as np

    try:
        want = np.asarray(decode_json(expected, type_, field))
        have = np.asarray(decode_json(got, type_, field))
    except ValueConversionError as exc:
        return f"not a tensor of this type ({exc.reason})"
    if want.shape != have.shape:
        return f"shape {tuple(want.shape)} expected, got {tuple(have.shape)}"
    if want.dtype.kind in "biuf":
        a, b = want.astype(float).ravel(), have.astype(float).ravel()
        unequal = ~((a == b) | (np.isnan(a) & np.isnan(b)))
        positions = np.flatnonzero(unequal)
        if not positions.size:
            return "equal values in another encoding"
        biggest = float(np.nanmax(np.abs(a[positions] - b[positions]), initial=0.0))
        shown = ", ".join(
            f"[{', '.join(str(int(i)) for i in np.unravel_index(p, want.shape))}]: "
            f"expected {a[p]:.6g}, got {b[p]:.6g}"
            for p in positions[:MAX_SHOWN]
        )
        return (
            f"{positions.size} of {a.size} values differ (largest absolute difference "
            f"{biggest:.6g}); {shown}"
        )
    return f"values differ: expected {_short(want.tolist())}, got {_short(have.tolist())}"


def _json_difference(expected: Any, got: Any, path: str, form_only: bool) -> str | None:
    """The first place two JSON values differ (in value, or only in form), or None."""
    where = f" at {path}" if path else ""
    if isinstance(expected, dict) and isinstance(got, dict):
        if set(expected) != set(got):
            missing = sorted(set(expected) - set(got))
            extra = sorted(set(got) - set(expected))
            return f"keys differ{where}: missing {missing}, unexpected {extra}"
        for key in expected:
            found = _json_difference(expected[key], got[key], f"{path}.{key}", form_only)
            if found:
                return found
        return None
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return f"{len(expected)} items expected{where}, got {len(got)}"
        for i, (a, b) in enumerate(zip(expected, got, strict=True)):
            found = _json_difference(a, b, f"{path}[{i}]", form_only)
            if found:
                return found
        return None
    if _number(expected) and _number(got):
        if form_only or expected == got:
            return None
        if math.isnan(float(expected)) and math.isnan(float(got)):
            return None
        return f"expected {expected!r}{where}, got {got!r} (difference {got - expected:.6g})"
    if form_only:
        same_kind = type(expected) is type(got) or expected is None or got is None
        return (
            None if same_kind else f"a {type(expected).__name__} expected{where}, got {_short(got)}"
        )
    if expected == got:
        return None
    return f"expected {_short(expected)}{where}, got {_short(got)}"


def _tensor_type(type_: TypeIR) -> Tensor | None:
    if isinstance(type_, Optional):
        return _tensor_type(type_.inner)
    return type_ if isinstance(type_, Tensor) else None


def _equal(want: Any, have: Any, name: str, type_: TypeIR) -> bool:
    try:
        return wire_equal({name: want}, {name: have}, {name: type_})
    except (TypeError, ValueError):  # orjson refuses an int past 64 bits: compare as Python
        return bool(want == have)


def output_differences(
    expected: Mapping[str, Any],
    served: Mapping[str, Any],
    types: Mapping[str, TypeIR],
    *,
    form_only: bool = False,
) -> list[str]:
    """One line per output that differs (``name: how``); empty when they agree. With
    ``form_only`` only types, keys, lengths and shapes count, not values."""
    lines = []
    for name, want in expected.items():
        have = served.get(name)
        type_ = types[name]
        if not form_only and _equal(want, have, name, type_):
            continue
        tensor = _tensor_type(type_)
        if tensor is not None and want is not None and have is not None:
            tensor_how = _tensor_difference(want, have, tensor, name)
            form_differs = tensor_how.startswith(("shape", "not a tensor"))
            how: str | None = tensor_how if form_differs or not form_only else None
        else:
            how = _json_difference(want, have, "", form_only)
            if how is None and not form_only:
                how = f"expected {_short(want)}, got {_short(have)}"
        if how:
            lines.append(f"{name}: {how}")
    return lines


__all__ = ["output_differences"]
