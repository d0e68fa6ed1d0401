"""Generated client packages for tests: write one for a manifest, and import it from its folder
for a while (then forget it, the modules it loaded from there, and the import paths it added)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from checkpoint2svc.checkpoint.manifest import Manifest
from checkpoint2svc.codegen.client_package import render_client
from checkpoint2svc.codegen.proto import render_proto, service_names
from checkpoint2svc.wire.names import ServiceNames


def names_of(manifest: Manifest) -> ServiceNames:
    return service_names(manifest)


def write_package(manifest: Manifest, folder: Path) -> Path:
    """The client package of ``manifest``'s service, written into ``folder`` (returned)."""
    names = names_of(manifest)
    folder.mkdir(parents=True, exist_ok=True)
    proto = folder / f"{names.module}.proto"
    proto.write_text(render_proto(manifest), encoding="utf-8")
    render_client(manifest).write_to(folder / "client")
    return folder / "client"


def _places(module: ModuleType) -> list[str]:
    """Where a module was loaded from: its file, or a (namespace) package's folders."""
    return [getattr(module, "__file__", None) or "", *getattr(module, "__path__", [])]


@contextmanager
def imported_package(folder: Path, name: str) -> Iterator[ModuleType]:
    saved_path = list(sys.path)
    before = set(sys.modules)
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    try:
        yield importlib.import_module(name)
    finally:
        sys.path[:] = saved_path
        stale = [
            module
            for module in sorted(set(sys.modules) - before)
            if any(str(place).startswith(str(folder)) for place in _places(sys.modules[module]))
        ]
        for module in stale:
            del sys.modules[module]
