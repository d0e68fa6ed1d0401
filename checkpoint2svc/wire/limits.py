"""An instance's size limits (DataSphere's: 16 MiB per request and per response by default).

Its own module because pinning checks the examples against the default too, inside the kernel,
where importing the service would pull in the web stack.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    def describe(self) -> str:
        mib, rest = divmod(self.max_message_bytes, 1024 * 1024)
        return f"{mib} MiB" if not rest else f"{self.max_message_bytes} bytes"


__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "Limits"]
