"""Which installed distributions a checkpoint needs: only those its state and cell use."""

from __future__ import annotations

import importlib.metadata as metadata
import pickletools
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

# This project's own runtime reaches every image anyway; it is not a requirement of the state.
_SELF = {"checkpoint2svc"}


@dataclass(frozen=True)
class Distribution:
    name: str
    version: str
    direct: bool
    """True when the state or the cell uses it; False when it is only needed by one that is."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "direct": self.direct}


def modules_in_pickle(path: Path) -> set[str]:
    """Top-level packages a dill/pickle file refers to (classes, functions, modules by name)."""
    found: set[str] = set()
    with path.open("rb") as stream:
        for opcode, arg, _ in pickletools.genops(stream):
            if not isinstance(arg, str):
                continue
            # GLOBAL carries "module name"; STACK_GLOBAL and dill's by-reference modules push the
            # module's dotted name as a plain string.
            name = arg.split(" ", 1)[0] if opcode.name == "GLOBAL" else arg
            if name in sys.modules:
                found.add(name.split(".", 1)[0])
    return found


def _third_party(packages: Iterable[str]) -> set[str]:
    return {
        p for p in packages
        if p and p not in sys.stdlib_module_names and p not in sys.builtin_module_names
        and not p.startswith("_") and p not in ("__main__", "builtins")
    }  # fmt: skip


def _installed(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def _dependencies(dist: metadata.Distribution) -> list[str]:
    names = []
    for text in dist.requires or []:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        names.append(requirement.name)
    return names


def resolve_distributions(packages: Iterable[str]) -> list[Distribution]:
    """Pinned distributions for top-level ``packages``, plus the installed ones they depend on."""
    direct: dict[str, metadata.Distribution] = {}
    by_package: Mapping[str, list[str]] | None = None
    for package in sorted(_third_party(packages)):
        # Most packages ship in a distribution of their own name; the full map of installed
        # files (packages_distributions) costs ~60 ms, so it is built only when needed.
        same_name = _installed(package)
        if same_name is not None:
            direct[canonicalize_name(same_name.metadata["Name"])] = same_name
            continue
        if by_package is None:
            by_package = metadata.packages_distributions()
        for dist_name in by_package.get(package, []):
            dist = _installed(dist_name)
            if dist is not None:
                direct[canonicalize_name(dist.metadata["Name"])] = dist
    seen: dict[str, tuple[metadata.Distribution, bool]] = {
        name: (dist, True) for name, dist in direct.items()
    }
    queue = list(direct.values())
    while queue:
        for dep_name in _dependencies(queue.pop()):
            key = canonicalize_name(dep_name)
            if key in seen:
                continue
            dep = _installed(dep_name)
            if dep is not None:
                seen[key] = (dep, False)
                queue.append(dep)
    return [
        Distribution(name=dist.metadata["Name"], version=dist.version, direct=is_direct)
        for key, (dist, is_direct) in sorted(seen.items())
        if key not in _SELF
    ]
