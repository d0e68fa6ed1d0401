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
import ctypes
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


class _NumpyGlobal:
    """numpy's global generator, put back cheaply. ``np.random.set_state`` takes ~55 µs, more
    than many a cell: so after the first full restore, the bit generator's C state (numpy's
    public ``ctypes`` view of it) is kept as bytes, and a restore compares them first (~1 µs),
    setting the whole state again only when a call moved the generator. A pinned state holding
    a cached Gaussian (which a call can use up without moving the generator) is always set."""

    STATE_BYTES = 624 * 4 + 4  # numpy's mt19937_state: uint32_t key[624]; int pos

    def __init__(self, state: Any) -> None:
        self.state = state
        self.address: int | None = None
        self.pinned = b""
        self.first = True

    def _watch(self) -> None:
        np = sys.modules["numpy"]
        generator = np.random.mtrand._rand._bit_generator
        if type(generator).__name__ != "MT19937" or self.state[3]:  # has a cached Gaussian
            return
        address = int(generator.ctypes.state_address)
        pinned = ctypes.string_at(address, self.STATE_BYTES)
        keys = np.frombuffer(pinned[:-4], dtype=np.uint32)
        position = int.from_bytes(pinned[-4:], sys.byteorder, signed=True)
        if np.array_equal(keys, self.state[1]) and position == self.state[2]:
            self.address, self.pinned = address, pinned  # the layout is what we think

    def restore(self) -> None:
        unmoved = self.address is not None and (
            ctypes.string_at(self.address, self.STATE_BYTES) == self.pinned
        )
        if unmoved:
            return
        sys.modules["numpy"].random.set_state(self.state)
        if self.first:
            self.first = False
            try:
                self._watch()
            except Exception:  # another numpy: always the full restore
                self.address = None


class _PythonGlobal:
    """The ``random`` module's generator, put back cheaply: ``random.setstate`` costs ~3 µs
    and ``getstate`` ~8 µs, on every call. After the first restore, CPython's Mersenne Twister
    state (``int index; uint32_t state[624]`` right after the object header) is read as bytes
    and checked against ``getstate``; a restore then compares bytes (~0.5 µs) and sets the
    state only when a call moved it. Reading is all it does with those bytes; where the layout
    is not that, every restore sets the state."""

    STATE_BYTES = 4 + 624 * 4

    def __init__(self, state: Any) -> None:
        self.state = state
        self.address: int | None = None
        self.pinned = b""
        self.first = True

    def _watch(self) -> None:
        generator = random._inst
        address = id(generator) + object.__basicsize__
        pinned = ctypes.string_at(address, self.STATE_BYTES)
        words = [int.from_bytes(pinned[i : i + 4], sys.byteorder) for i in range(0, len(pinned), 4)]
        gauss_next = getattr(generator, "gauss_next", None)
        if (*words[1:], words[0]) == tuple(self.state[1]) and gauss_next is None:
            self.address, self.pinned = address, pinned

    def restore(self) -> None:
        unmoved = (
            self.address is not None
            and ctypes.string_at(self.address, self.STATE_BYTES) == self.pinned
            and getattr(random._inst, "gauss_next", None) is None
        )
        if unmoved:
            return
        random.setstate(self.state)
        if self.first:
            self.first = False
            self._watch()


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
                self._prepared.append((name, _PythonGlobal(state)))
            elif name == "numpy.random" and "numpy" in sys.modules:
                self._prepared.append((name, _NumpyGlobal(_numpy_state(data))))
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
            if name in ("random", "numpy.random"):
                state.restore()
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
