"""Prometheus metrics with DataSphere's names, kept in-process without a client library.

Every request counts for the node (``node_*``); a request the gateway routed through an alias
(it sets ``x-node-alias``) also counts for that alias (``alias_*``, labelled ``alias_id``).
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MAX_ALIASES = 64
"""Alias label values kept per instance: the header comes from the gateway, but is bounded."""


class _RequestCounts:
    """Requests, status codes and a duration histogram for one label value."""

    def __init__(self) -> None:
        self.http_codes: Counter[int] = Counter()
        self.grpc_codes: Counter[str] = Counter()
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.count = 0

    def add(self, seconds: float, index: int, http_code: int | None, grpc_code: str | None) -> None:
        self.count += 1
        self.duration_sum += seconds
        self.buckets[index] += 1
        if http_code is not None:
            self.http_codes[http_code] += 1
        if grpc_code is not None:
            self.grpc_codes[grpc_code] += 1


def _render(prefix: str, label: str, counts: dict[str, _RequestCounts]) -> list[str]:
    """The four families of ``prefix`` (node or alias), one sample set per label value."""
    what = "Requests served" if prefix == "node" else "Requests served through the alias"
    lines = [f"# HELP {prefix}_requests {what}.", f"# TYPE {prefix}_requests counter"]
    lines += [f'{prefix}_requests_total{{{label}="{v}"}} {c.count}' for v, c in counts.items()]
    for protocol, family in (("HTTP", "http_codes"), ("gRPC", "grpc_codes")):
        lines += [f"# HELP {prefix}_{family} {protocol} responses by status code.",
                  f"# TYPE {prefix}_{family} counter"]  # fmt: skip
        for value, c in counts.items():
            by_code: Counter[int] | Counter[str] = getattr(c, family)
            lines += [
                f'{prefix}_{family}_total{{{label}="{value}",code="{code}"}} {n}'
                for code, n in sorted(by_code.items())
            ]
    lines += [f"# HELP {prefix}_request_durations Request durations in seconds.",
              f"# TYPE {prefix}_request_durations histogram"]  # fmt: skip
    for value, c in counts.items():
        cumulative = 0
        for bound, n in zip((*DURATION_BUCKETS, float("inf")), c.buckets, strict=True):
            cumulative += n
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(
                f'{prefix}_request_durations_bucket{{{label}="{value}",le="{le}"}} {cumulative}'
            )
        lines.append(f'{prefix}_request_durations_sum{{{label}="{value}"}} {c.duration_sum}')
        lines.append(f'{prefix}_request_durations_count{{{label}="{value}"}} {c.count}')
    return lines


class NodeMetrics:
    """``node_requests``, ``node_http_codes``, ``node_grpc_codes``, ``node_request_durations``,
    and the same ``alias_*`` families for requests that came through an alias."""

    def __init__(self, node: str) -> None:
        self.node = node
        self._lock = threading.Lock()
        self._node = _RequestCounts()
        self._aliases: dict[str, _RequestCounts] = {}

    def observe(
        self,
        seconds: float,
        http_code: int | None = None,
        grpc_code: str | None = None,
        alias: str = "",
    ) -> None:
        """Count one request that took ``seconds`` and ended with the given status."""
        index = bisect.bisect_left(DURATION_BUCKETS, seconds)
        with self._lock:
            self._node.add(seconds, index, http_code, grpc_code)
            if alias and (alias in self._aliases or len(self._aliases) < MAX_ALIASES):
                counts = self._aliases.setdefault(alias, _RequestCounts())
                counts.add(seconds, index, http_code, grpc_code)

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            lines = _render("node", "node_id", {self.node: self._node})
            if self._aliases:
                lines += _render("alias", "alias_id", dict(sorted(self._aliases.items())))
        return "\n".join(lines) + "\n"
