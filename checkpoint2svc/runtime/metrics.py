"""Prometheus metrics with DataSphere's names, kept in-process without a client library."""

from __future__ import annotations

import bisect
import threading
from collections import Counter

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(**labels: str) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels.items())


class NodeMetrics:
    """``node_requests``, ``node_http_codes``, ``node_grpc_codes``, ``node_request_durations``."""

    def __init__(self, node: str) -> None:
        self.node = node
        self._lock = threading.Lock()
        self._http_codes: Counter[int] = Counter()
        self._grpc_codes: Counter[str] = Counter()
        self._buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self._duration_sum = 0.0
        self._count = 0

    def observe(
        self, seconds: float, http_code: int | None = None, grpc_code: str | None = None
    ) -> None:
        """Count one request that took ``seconds`` and ended with the given status."""
        index = bisect.bisect_left(DURATION_BUCKETS, seconds)
        with self._lock:
            self._count += 1
            self._duration_sum += seconds
            self._buckets[index] += 1
            if http_code is not None:
                self._http_codes[http_code] += 1
            if grpc_code is not None:
                self._grpc_codes[grpc_code] += 1

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        node = _labels(node_id=self.node)
        with self._lock:
            lines = [
                "# HELP node_requests Requests served.",
                "# TYPE node_requests counter",
                f"node_requests_total{{{node}}} {self._count}",
                "# HELP node_http_codes HTTP responses by status code.",
                "# TYPE node_http_codes counter",
            ]
            lines += [
                f'node_http_codes_total{{{node},code="{code}"}} {n}'
                for code, n in sorted(self._http_codes.items())
            ]
            lines += ["# HELP node_grpc_codes gRPC responses by status code.",
                      "# TYPE node_grpc_codes counter"]  # fmt: skip
            lines += [
                f'node_grpc_codes_total{{{node},code="{code}"}} {n}'
                for code, n in sorted(self._grpc_codes.items())
            ]
            lines += ["# HELP node_request_durations Request durations in seconds.",
                      "# TYPE node_request_durations histogram"]  # fmt: skip
            cumulative = 0
            for bound, n in zip((*DURATION_BUCKETS, float("inf")), self._buckets, strict=True):
                cumulative += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f'node_request_durations_bucket{{{node},le="{le}"}} {cumulative}')
            lines.append(f"node_request_durations_sum{{{node}}} {self._duration_sum}")
            lines.append(f"node_request_durations_count{{{node}}} {self._count}")
        return "\n".join(lines) + "\n"
