"""How many instances a node wants: in-flight requests per instance against a target, within
[min, max], changed only after the demand has held for the node's stabilisation window."""

from __future__ import annotations

import math
from dataclasses import dataclass

from checkpoint2svc.control.models import NodeSpec


@dataclass
class ScaleState:
    desired: int
    pressure_since: float | None = None
    """When the demand first differed from ``desired`` in the current direction."""
    direction: int = 0


def wanted(in_flight: float, spec: NodeSpec) -> int:
    """The instance count the current demand asks for, clamped to the node's range."""
    raw = math.ceil(in_flight / spec.autoscaling.target_in_flight) if in_flight > 0 else 0
    return max(spec.min_instances, min(spec.max_instances, raw))


def next_desired(state: ScaleState, in_flight: float, spec: NodeSpec, now: float) -> int:
    """Update ``state`` with one observation; returns the (possibly changed) desired count."""
    state.desired = max(spec.min_instances, min(spec.max_instances, state.desired))
    target = wanted(in_flight, spec)
    direction = (target > state.desired) - (target < state.desired)
    if direction == 0:
        state.pressure_since, state.direction = None, 0
        return state.desired
    if direction != state.direction or state.pressure_since is None:
        state.pressure_since, state.direction = now, direction
    window = spec.autoscaling.up_window_s if direction > 0 else spec.autoscaling.down_window_s
    if now - state.pressure_since >= window:
        state.desired = target
        state.pressure_since, state.direction = None, 0
    return state.desired
