"""The global random generators, captured at pin time and restored before every isolated call.

A notebook that seeds in its first cell (``np.random.seed(12345)``) and samples in a later one
computes values that depend on how far the generators had advanced when the target cell ran. The
checkpoint keeps that position, so a service answers what the notebook answered: an isolated
call starts from it every time; a shared service starts from it once and goes on from there.

Generators held in variables (``rng = np.random.default_rng(0)``) are part of the state and need
nothing here. The global ones live in modules, which the state pickles by reference.
"""

from __future__ import annotations

import base64
import json
import random
import sys
from pathlib import Path
from typing import Any

RANDOM_STATE_NAME = "random_state.json"


def _capture_random() -> Any:
    version, internal, gauss = random.getstate()
    return {"version": version, "state": list(internal), "gauss_next": gauss}


def _capture_numpy() -> Any:
    name, keys, position, has_gauss, cached = sys.modules["numpy"].random.get_state()
    return {
        "bit_generator": name,
        "keys": [int(k) for k in keys],
        "position": int(position),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _numpy_state(data: Any) -> Any:
    np = sys.modules["numpy"]
    keys = np.array(data["keys"], dtype=np.uint32)
    return (data["bit_generator"], keys, data["position"], data["has_gauss"],
            data["cached_gaussian"])  # fmt: skip


def _capture_torch() -> Any:
    state = sys.modules["torch"].get_rng_state()
    return base64.b64encode(bytes(state.numpy().tobytes())).decode("ascii")


def _torch_state(data: Any) -> Any:
    torch = sys.modules["torch"]
    return torch.frombuffer(bytearray(base64.b64decode(data)), dtype=torch.uint8)


class RandomState:
    """Positions of the global generators of ``random``, ``numpy.random`` and ``torch``."""

    def __init__(self, sources: dict[str, Any]) -> None:
        self.sources = sources
        """Source name -> its state as JSON data; only modules that were imported at pin time."""
        # Built once: restoring runs before every call, so it converts nothing.
        self._prepared: list[tuple[str, Any]] = []
        for name, data in sources.items():
            if name == "random":
                state = (data["version"], tuple(data["state"]), data["gauss_next"])
                self._prepared.append((name, state))
            elif name == "numpy.random" and "numpy" in sys.modules:
                self._prepared.append((name, _numpy_state(data)))
            elif name == "torch" and "torch" in sys.modules:
                self._prepared.append((name, _torch_state(data)))

    @classmethod
    def capture(cls) -> RandomState:
        sources: dict[str, Any] = {"random": _capture_random()}
        if "numpy" in sys.modules:
            sources["numpy.random"] = _capture_numpy()
        if "torch" in sys.modules and hasattr(sys.modules["torch"], "get_rng_state"):
            sources["torch"] = _capture_torch()
        return cls(sources)

    def restore(self) -> None:
        """Set every captured generator back to its pinned position."""
        for name, state in self._prepared:
            if name == "random":
                random.setstate(state)
            elif name == "numpy.random":
                sys.modules["numpy"].random.set_state(state)
            else:
                sys.modules["torch"].set_rng_state(state)

    def describe(self) -> str:
        return ", ".join(self.sources)

    def write(self, directory: Path) -> Path:
        path = directory / RANDOM_STATE_NAME
        path.write_text(json.dumps(self.sources, separators=(",", ":")), encoding="utf-8")
        return path

    @classmethod
    def read(cls, directory: Path) -> RandomState | None:
        """The checkpoint's generators; numpy or torch are imported first if it has theirs."""
        path = directory / RANDOM_STATE_NAME
        if not path.is_file():
            return None
        sources = json.loads(path.read_text(encoding="utf-8"))
        for name, module in (("numpy.random", "numpy"), ("torch", "torch")):
            if name in sources and module not in sys.modules:
                try:
                    __import__(module)
                except ImportError:
                    del sources[name]  # the state never uses it, or loading it fails first
        return cls(sources)


__all__ = ["RANDOM_STATE_NAME", "RandomState"]
