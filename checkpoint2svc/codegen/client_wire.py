"""What a generated client package carries in ``<package>/_wire/``: checkpoint2svc's ``wire``
package, copied as it is.

``checkpoint2svc.wire`` (the type IR, the value conversions, the errors and the REST and gRPC
client bases) imports nothing else of checkpoint2svc and its modules import each other
relatively (``tests/unit/test_package_layers.py`` holds it to that), so the copy needs no
rewriting: installing a client brings httpx, orjson, grpcio, grpcio-status and protobuf, and
not checkpoint2svc with its docker, fastapi, ipykernel and grpcio-tools, and the copy is byte for
byte the code that checkpoint2svc's own tests run.
"""

from __future__ import annotations

from pathlib import Path

from checkpoint2svc import wire

WIRE_DIR = "_wire"
"""The package's sub-package that holds the copy."""

WIRE_DEPENDENCIES = (
    "grpcio>=1.60",
    "grpcio-status>=1.60",
    "httpx>=0.27",
    "orjson>=3.9",
    "protobuf>=5.26",
)
"""What the copy imports (numpy and pandas only for tensors and tables: the package adds them
when its signature has one)."""


def wire_folder() -> Path:
    """Where ``checkpoint2svc.wire``'s modules are."""
    return Path(wire.__file__).parent


def wire_files() -> dict[str, str]:
    """The files of ``_wire/`` (name -> text): every module of ``checkpoint2svc.wire``, as it
    is, read when a client package is rendered (``generate``, ``checkpoint2svc client``)."""
    return {
        path.name: path.read_text(encoding="utf-8") for path in sorted(wire_folder().glob("*.py"))
    }
