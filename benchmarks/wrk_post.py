"""The wrk Lua script the benchmarks POST with, and the result line it prints."""

from __future__ import annotations

import re

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%%d duration_us=%%d p50_us=%%.1f p99_us=%%.1f errors=%%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""
"""``WRK_SCRIPT % body``: POSTs ``body`` (JSON, single quotes escaped by the caller) and prints
one ``RESULT`` line (errors: connect, read, write, non-2xx status and timeouts)."""

RESULT = re.compile(
    r"^RESULT requests=(\d+) duration_us=(\d+) p50_us=([\d.]+) p99_us=([\d.]+) errors=(\d+)$",
    re.MULTILINE,
)
