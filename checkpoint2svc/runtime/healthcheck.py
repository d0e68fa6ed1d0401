"""The container's HEALTHCHECK: exit 0 when the instance's ``/readyz`` answers 200, else 1.

Stdlib only and no checkpoint2svc imports beyond this module, so it starts in a few ms.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = os.environ.get("CHECKPOINT2SVC_HTTP_PORT", "8080")
    url = f"http://127.0.0.1:{port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2.5) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
