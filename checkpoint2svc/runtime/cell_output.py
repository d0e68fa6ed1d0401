"""Send what the cell prints to the instance's log, tagged with the request id, not to clients."""

from __future__ import annotations

import contextvars
import io
import logging
import sys
from typing import TextIO

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
log = logging.getLogger("checkpoint2svc.cell")


class _CellStream(io.TextIOBase):
    """Stands in for sys.stdout/stderr: lines written during a request become log records."""

    def __init__(self, original: TextIO, level: int) -> None:
        self._original = original
        self._level = level
        self._partial: dict[str, str] = {}

    def write(self, text: str) -> int:
        rid = request_id.get()
        if rid is None:
            return self._original.write(text)
        buffered = self._partial.pop(rid, "") + text
        *lines, rest = buffered.split("\n")
        for line in lines:
            log.log(self._level, "[%s] %s", rid, line)
        if rest:
            self._partial[rid] = rest
        return len(text)

    def flush_request(self, rid: str) -> None:
        rest = self._partial.pop(rid, "")
        if rest:
            log.log(self._level, "[%s] %s", rid, rest)

    def flush(self) -> None:
        self._original.flush()


_streams: list[_CellStream] = []


def install() -> None:
    """Route cell output to the log (idempotent)."""
    if _streams:
        return
    out, err = _CellStream(sys.stdout, logging.INFO), _CellStream(sys.stderr, logging.WARNING)
    _streams.extend((out, err))
    sys.stdout, sys.stderr = out, err


def finish(rid: str) -> None:
    """Flush a request's unterminated last line."""
    for stream in _streams:
        stream.flush_request(rid)
