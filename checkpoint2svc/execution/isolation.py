"""Exact isolation: every call of an isolated service starts from the pinned state.

A call runs in the state's own namespace, so notebook functions and the methods of notebook
classes (whose globals *are* that namespace) see what the call sees. Before the call, every
mutable value the cell can reach is replaced by a fresh deep copy of the pinned value (one memo
per call, so two names for one object stay one object), and so are the mutable defaults, closure
cells and attributes of notebook functions and the data attributes of notebook classes. After the
call everything is put back: the namespace's bindings (names the call added are removed), those
functions and classes, and the module attributes that notebook code assigns (``mod.attr = ...``,
on any branch). The global random generators (:mod:`random_state`) are set to their pinned
position before each call.

The pinned objects themselves are never handed to a call, so nothing a call does, on whatever
branch and through whatever path, reaches the next call. This is why isolated calls run one at a
time in a process: module and class attributes are process-wide. A value that cannot be deep
copied (a lock, a generator, a connection) is shared by all calls and reported by name.

What it costs: one deep copy per call of what the cell can reach; values that cannot change
(numbers, strings, tuples of them, functions, classes, modules) are never copied, and containers
of such values are copied shallowly at C speed (:func:`copy_seeds`). benchmarks/README.md has
the numbers (``bench_isolation.py``).
"""

from __future__ import annotations

import copy
import datetime
import decimal
import dis
import enum
import fractions
import functools
import io
import pickle
import sys
import types
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from checkpoint2svc.execution.random_state import RandomState

# Code that names any of these can reach every global by name: all of them are isolated.
_DYNAMIC_GLOBALS = frozenset({"globals", "vars", "eval", "exec", "locals", "dir"})
_DYNAMIC_ATTRIBUTES = frozenset({"setattr", "delattr"})
_ATOMIC = (
    int, float, complex, str, bytes, bool, type(None), range, type(Ellipsis),
    decimal.Decimal, fractions.Fraction, datetime.date, datetime.time, datetime.timedelta,
    types.FunctionType, types.BuiltinFunctionType, types.ModuleType, type,
)  # fmt: skip
_FRAMEWORK_ATTRIBUTES = frozenset({"_abc_impl"})
_LEAVES = (
    int, float, complex, str, bytes, bool, type(None), types.ModuleType,
    types.BuiltinFunctionType, type(Ellipsis),
)  # fmt: skip
_MISSING = object()


def is_immutable(value: Any) -> bool:
    """True when no call can change ``value`` in place (so it needs no copy per call)."""
    if isinstance(value, _ATOMIC):
        return True
    if type(value) in (tuple, frozenset):
        return all(is_immutable(item) for item in value)
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.generic)


def code_global_names(code: types.CodeType) -> set[str]:
    """Names a code object (and the functions, lambdas and classes nested in it) looks up."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= code_global_names(const)
    return names


def stored_attributes(code: types.CodeType) -> set[str]:
    """Attribute names a code object (nested code too) assigns or deletes: ``x.attr = ...``."""
    names = {
        str(op.argval)
        for op in dis.get_instructions(code)
        if op.opname in ("STORE_ATTR", "DELETE_ATTR")
    }
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= stored_attributes(const)
    return names


def _functions_of(cls: type) -> Iterator[types.FunctionType]:
    for member in vars(cls).values():
        member = getattr(member, "__func__", member)  # staticmethod, classmethod
        for function in (member, getattr(member, "fget", None), getattr(member, "fset", None)):
            if isinstance(function, types.FunctionType):
                yield function


@dataclass
class _FunctionState:
    function: types.FunctionType
    defaults: tuple[Any, ...] | None
    kwdefaults: dict[str, Any] | None
    cells: tuple[tuple[types.CellType, Any], ...]
    attributes: dict[str, Any]
    copy_defaults: bool = False
    copy_kwdefaults: bool = False
    copied_cells: list[int] = field(default_factory=list)
    copied_attributes: list[str] = field(default_factory=list)


@dataclass
class _ClassState:
    cls: type
    attributes: dict[str, Any]
    """The class's own data attributes, as pinned (put back after each call)."""
    copied: list[str] = field(default_factory=list)
    """Those given a fresh copy per call."""


@dataclass
class IsolationPlan:
    """What a call of the cell can reach, worked out once when the service loads."""

    copied: list[str] = field(default_factory=list)
    """Globals given a fresh deep copy per call."""
    unpickled: dict[str, Pickled] = field(default_factory=dict)
    """Globals that deepcopy would copy wrongly: unpickled afresh per call from these bytes."""
    shared: dict[str, str] = field(default_factory=dict)
    """Globals that cannot be copied (name -> why): every call sees the same object."""
    functions: list[_FunctionState] = field(default_factory=list)
    classes: list[_ClassState] = field(default_factory=list)
    module_attributes: list[tuple[types.ModuleType, str, Any]] = field(default_factory=list)
    """(module, attribute, pinned value or _MISSING) put back after each call."""
    caches: list[Any] = field(default_factory=list)
    """Memoized notebook functions (``functools.cache``): emptied after each call, or a cached
    result computed from one call's inputs would answer the next."""
    flat: list[Any] = field(default_factory=list)
    """Containers of immutable values among what is copied: a shallow copy each."""
    immutable: dict[int, Any] = field(default_factory=dict)
    """Immutable tuples among what is copied, by id: never walked by deepcopy."""


_FLAT_TYPES = (list, dict, set)
MAX_WALKED = 1_000_000


def _children(value: Any) -> Iterator[Any]:
    kind = type(value)
    if kind in (list, tuple, set, frozenset):
        yield from value
    elif kind is dict:
        yield from value.keys()
        yield from value.values()
    elif not isinstance(value, _ATOMIC):
        attributes = getattr(value, "__dict__", None)
        if type(attributes) is dict:
            yield from attributes.values()


def _is_flat(value: Any) -> bool:
    """A plain list, dict or set holding only values that cannot change: a shallow copy of it is
    a deep one (a vocabulary, a list of labels, a set of stop words)."""
    kind = type(value)
    if kind is dict:
        return all(is_immutable(v) for v in value.values()) and all(is_immutable(k) for k in value)
    return kind in (list, set) and all(is_immutable(v) for v in value)


def copy_seeds(roots: Iterable[Any]) -> tuple[list[Any], dict[int, Any]]:
    """What makes a deep copy of ``roots`` cheap, found once: the flat containers among the
    objects they reach (copied per call at C speed, then found in the memo by deepcopy), and
    the immutable tuples (kept, never walked). Measured in benchmarks/bench_isolation.py: a
    dict of 10,000 words took 4.4 ms to deep-copy, 0.06 ms this way."""
    flat: list[Any] = []
    immutable: dict[int, Any] = {}
    seen: set[int] = set()
    stack = list(roots)
    while stack and len(seen) < MAX_WALKED:
        value = stack.pop()
        if isinstance(value, _ATOMIC) or id(value) in seen:
            continue
        seen.add(id(value))
        if type(value) in (tuple, frozenset) and is_immutable(value):
            immutable[id(value)] = value
        elif type(value) in _FLAT_TYPES and _is_flat(value):
            flat.append(value)
        else:
            stack.extend(_children(value))
    return flat, immutable


def _same_shape(original: Any, copied: Any, budget: int = 100_000) -> bool:
    """Whether a copy kept what deepcopy is known to lose: an object that is its own
    ``__dict__`` (a statsmodels ``Dataset``: a dict whose keys are its attributes) comes out of
    deepcopy without attributes (pickling keeps them). Walks both side by side (within
    ``budget`` objects), comparing types where both have the same key; caches that differ in
    keys are not a difference."""
    seen: set[int] = set()
    stack = [(original, copied)]
    while stack and len(seen) < budget:
        a, b = stack.pop()
        if type(a) is not type(b):
            return False
        if isinstance(a, _ATOMIC) or id(a) in seen:
            continue
        seen.add(id(a))
        if isinstance(a, list | tuple):
            stack.extend(zip(a, b, strict=False))
        elif isinstance(a, dict):
            stack.extend((a[k], b[k]) for k in a.keys() & b.keys())
        attributes = getattr(a, "__dict__", None)
        other = getattr(b, "__dict__", None)
        if attributes is a and not _has_all(other, attributes):
            return False  # its attributes are gone
        if type(attributes) is dict and type(other) is dict and attributes is not a:
            stack.extend((attributes[k], other[k]) for k in attributes.keys() & other.keys())
    return True


def _has_all(attributes: Any, wanted: Any) -> bool:
    return (
        isinstance(attributes, dict)
        and isinstance(wanted, dict)
        and wanted.keys() <= attributes.keys()
    )


class _Pickler(pickle.Pickler):
    """Pickles a value's data; classes, functions and modules go by reference to the very
    objects (a notebook class is not importable by name, and a copy must stay an instance of
    the class the cell sees)."""

    def __init__(self, stream: io.BytesIO, refs: list[Any]) -> None:
        super().__init__(stream, protocol=pickle.HIGHEST_PROTOCOL)
        self.refs = refs

    def persistent_id(self, obj: Any) -> int | None:
        if isinstance(
            obj, type | types.FunctionType | types.ModuleType | types.BuiltinFunctionType
        ):
            self.refs.append(obj)
            return len(self.refs) - 1
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, stream: io.BytesIO, refs: list[Any]) -> None:
        super().__init__(stream)
        self.refs = refs

    def persistent_load(self, pid: Any) -> Any:
        return self.refs[pid]


@dataclass(frozen=True)
class Pickled:
    """A value as bytes plus the classes and functions it refers to: unpickled afresh per call."""

    data: bytes
    refs: list[Any]

    @classmethod
    def of(cls, value: Any) -> Pickled:
        stream, refs = io.BytesIO(), list[Any]()
        _Pickler(stream, refs).dump(value)
        return cls(stream.getvalue(), refs)

    def load(self) -> Any:
        return _Unpickler(io.BytesIO(self.data), self.refs).load()


def _copier(value: Any) -> tuple[Pickled | None, str | None]:
    """How ``value`` is copied per call: (None, None) by deepcopy; (pickled, None) by
    unpickling (when deepcopy loses structure); (None, why) not at all."""
    try:
        if _same_shape(value, copy.deepcopy(value)):
            return None, None
        why = "deep copies of it lose attributes"
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
    try:
        pickled = Pickled.of(value)
        if _same_shape(value, pickled.load()):
            return pickled, None
    except Exception as exc:
        why = f"{why}; pickling it fails ({type(exc).__name__}: {exc})"
    return None, why


class PinnedState:
    """The state of an isolated service: hands each call a fresh copy and takes it back."""

    def __init__(
        self,
        state: dict[str, Any],
        cell_code: types.CodeType,
        random_state: RandomState | None = None,
        inputs: Iterable[str] = (),
    ) -> None:
        """``inputs``: names every call sets itself (and names that are not state): not copied."""
        self.state = state
        self.random_state = random_state
        self._bindings = dict(state)
        self._figures: set[int] = set()
        self._classes_of: dict[type, list[type]] = {}
        self.plan = self._plan(cell_code, set(inputs))

    def _is_notebook_function(self, value: Any) -> bool:
        return isinstance(value, types.FunctionType) and value.__globals__ is self.state

    def _is_notebook_class(self, value: Any) -> bool:
        return isinstance(value, type) and (
            value.__module__ == self.state.get("__name__", "__main__")
            or any(self._is_notebook_function(f) for f in _functions_of(value))
        )

    def _notebook_classes_of(self, value: Any) -> list[type]:
        """The notebook classes ``value`` is, or is an instance of (with their notebook bases)."""
        kind = value if isinstance(value, type) else type(value)
        found = self._classes_of.get(kind)
        if found is None:
            found = [c for c in kind.__mro__ if self._is_notebook_class(c)]
            self._classes_of[kind] = found
        return found

    def _plan(self, cell_code: types.CodeType, inputs: set[str]) -> IsolationPlan:
        state = self.state
        codes = [cell_code]
        reached: dict[str, None] = {}
        functions: dict[int, types.FunctionType] = {}
        classes: dict[int, type] = {}
        caches: dict[int, Any] = {}
        queue = sorted(code_global_names(cell_code))
        walked: set[int] = set()

        def meet(value: Any) -> None:
            """A value the cell can reach: its notebook functions and classes are planned, and
            the globals they read are reached in turn."""
            found: list[types.FunctionType] = []
            unwrapped = _unwrap(value)
            if self._is_notebook_function(unwrapped):
                found.append(unwrapped)
            if unwrapped is not value and callable(getattr(value, "cache_clear", None)):
                caches[id(value)] = value  # functools.lru_cache / cache over a notebook function
            for cls in self._notebook_classes_of(value):
                if id(cls) not in classes:
                    classes[id(cls)] = cls
                    found.extend(f for f in _functions_of(cls) if self._is_notebook_function(f))
            for function in found:
                if id(function) not in functions:
                    functions[id(function)] = function
                    codes.append(function.__code__)
                    queue.extend(sorted(code_global_names(function.__code__)))
                    walk([function])

        def walk(roots: list[Any]) -> None:
            """Notebook functions and classes held inside values (a dict of handlers, a partial,
            a bound method, a closure, an instance inside a list) count as reached too."""
            stack = list(roots)
            while stack and len(walked) < MAX_WALKED:
                value = stack.pop()
                if id(value) in walked or isinstance(value, _LEAVES):
                    continue
                walked.add(id(value))
                meet(value)
                stack.extend(_references(value))

        while queue:
            name = queue.pop(0)
            if name in reached or name not in state:
                continue
            reached[name] = None
            walk([state[name]])
        names = set().union(*(code_global_names(c) for c in codes))
        everything = bool(names & _DYNAMIC_GLOBALS)
        if everything:
            walk(list(state.values()))
        plan = IsolationPlan(caches=list(caches.values()))
        for cache in plan.caches:
            cache.cache_clear()  # what dill kept of it is not what the notebook had either
        for name in state if everything else reached:
            value = state[name]
            dunder = name.startswith("__") and name.endswith("__")
            if dunder or name in inputs or is_immutable(value):  # inputs: set by every call
                continue
            pickled, reason = _copier(value)
            if reason is not None:
                plan.shared[name] = reason
            elif pickled is not None:
                plan.unpickled[name] = pickled  # our own bytes, made here from the state
            else:
                plan.copied.append(name)
        plan.functions = [self._function_state(f, plan.shared) for f in functions.values()]
        plan.classes = [
            self._class_state(c, plan.shared)
            for c in classes.values()
            if not isinstance(c, enum.EnumMeta)  # members cannot be reassigned, nor need it
        ]
        roots: list[Any] = [state[name] for name in plan.copied]
        for fs in plan.functions:
            roots += [fs.defaults, fs.kwdefaults, *(c for _, c in fs.cells), fs.attributes]
        roots += [[cs.attributes[k] for k in cs.copied] for cs in plan.classes]
        plan.flat, plan.immutable = copy_seeds(roots)
        stored = set().union(*(stored_attributes(c) for c in codes))
        modules = [v for n, v in state.items() if isinstance(v, types.ModuleType)]
        for module in dict.fromkeys(modules):
            attributes = vars(module) if names & _DYNAMIC_ATTRIBUTES else stored
            for attribute in sorted(attributes):
                if not (attribute.startswith("__") and attribute.endswith("__")):
                    plan.module_attributes.append(
                        (module, attribute, vars(module).get(attribute, _MISSING))
                    )
        return plan

    @staticmethod
    def _function_state(f: types.FunctionType, shared: dict[str, str]) -> _FunctionState:
        """What of a notebook function a call could change, each part checked to copy."""
        name = f.__qualname__

        def copyable(value: Any, where: str) -> bool:
            if is_immutable(value):
                return False
            pickled, reason = _copier(value)
            if reason is None and pickled is None:
                return True
            shared[f"{name}{where}"] = reason or "deep copies of it lose attributes"
            return False

        cells = tuple((c, c.cell_contents) for c in f.__closure__ or () if _has_contents(c))
        return _FunctionState(
            f, f.__defaults__, f.__kwdefaults__, cells, dict(f.__dict__),
            copy_defaults=copyable(f.__defaults__, " (its defaults)"),
            copy_kwdefaults=copyable(f.__kwdefaults__, " (its defaults)"),
            copied_cells=[i for i, (_, v) in enumerate(cells) if copyable(v, " (its closure)")],
            copied_attributes=[k for k, v in f.__dict__.items() if copyable(v, f".{k}")],
        )  # fmt: skip

    @staticmethod
    def _class_state(cls: type, shared: dict[str, str]) -> _ClassState:
        """A notebook class's own data attributes (not the interpreter's or a framework's:
        dunders, ``_abc_impl``, descriptors), each checked to copy."""
        attributes = {k: v for k, v in vars(cls).items() if _is_class_data(k)}
        copied = []
        for key, value in attributes.items():
            if is_immutable(value) or _is_descriptor(value):
                continue
            pickled, reason = _copier(value)
            if reason is None and pickled is None:
                copied.append(key)
            else:
                shared[f"{cls.__qualname__}.{key}"] = reason or "deep copies of it lose attributes"
        return _ClassState(cls, attributes, copied)

    def prepare(self) -> None:
        """Give the coming call fresh copies of everything it can change."""
        plan, state = self.plan, self.state
        memo: dict[int, Any] = dict(plan.immutable)
        for container in plan.flat:
            memo[id(container)] = container.copy()
        for name in plan.copied:
            state[name] = copy.deepcopy(self._bindings[name], memo)
        for name, pickled in plan.unpickled.items():
            state[name] = pickled.load()
        for fs in plan.functions:
            if fs.copy_defaults:
                fs.function.__defaults__ = copy.deepcopy(fs.defaults, memo)
            if fs.copy_kwdefaults:
                fs.function.__kwdefaults__ = copy.deepcopy(fs.kwdefaults, memo)
            for index in fs.copied_cells:
                cell, contents = fs.cells[index]
                cell.cell_contents = copy.deepcopy(contents, memo)
            for key in fs.copied_attributes:
                fs.function.__dict__[key] = copy.deepcopy(fs.attributes[key], memo)
        for cs in plan.classes:
            for key in cs.copied:
                setattr(cs.cls, key, copy.deepcopy(cs.attributes[key], memo))
        pyplot = sys.modules.get("matplotlib.pyplot")
        self._figures = set(pyplot.get_fignums()) if pyplot is not None else set()
        if self.random_state is not None:
            self.random_state.restore()

    def restore(self) -> None:
        """Put back the pinned state, whatever the call changed (the random generators are put
        back before each call: a shared executor of the same state re-pins them itself)."""
        plan, state = self.plan, self.state
        state.clear()
        state.update(self._bindings)
        for fs in plan.functions:
            fs.function.__defaults__ = fs.defaults
            fs.function.__kwdefaults__ = fs.kwdefaults
            for cell, contents in fs.cells:
                cell.cell_contents = contents
            fs.function.__dict__.clear()
            fs.function.__dict__.update(fs.attributes)
        for cs in plan.classes:
            for key in [k for k in vars(cs.cls) if _is_class_data(k)]:
                if key not in cs.attributes:
                    delattr(cs.cls, key)  # added by the call
            for key, value in cs.attributes.items():
                if vars(cs.cls).get(key, _MISSING) is not value:
                    setattr(cs.cls, key, value)
        for cache in plan.caches:
            cache.cache_clear()
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:  # pyplot's figures are module state: a call's own are closed
            for number in set(pyplot.get_fignums()) - self._figures:
                pyplot.close(number)
        for module, attribute, value in plan.module_attributes:
            current = vars(module).get(attribute, _MISSING)
            submodule = sys.modules.get(f"{module.__name__}.{attribute}")
            if current is value or (submodule is not None and current is submodule):
                continue  # unchanged, or a submodule the call imported: Python will not rebind it
            if value is _MISSING:
                delattr(module, attribute)
            else:
                setattr(module, attribute, value)


def _unwrap(value: Any) -> Any:
    """The function under decorators that keep ``__wrapped__`` (functools.wraps, lru_cache)."""
    for _ in range(16):
        inner = getattr(value, "__wrapped__", None) if callable(value) else None
        if inner is None or inner is value:
            return value
        value = inner
    return value


def _has_contents(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:  # an empty cell: the variable is not bound yet
        return False
    return True


def _is_class_data(key: str) -> bool:
    """An attribute of a class that its code may change: not the interpreter's own (dunders:
    ``__dataclass_fields__``, ``__match_args__``...) nor a framework's (``_abc_impl``)."""
    return not (key.startswith("__") and key.endswith("__")) and key not in _FRAMEWORK_ATTRIBUTES


def _references(value: Any) -> Iterator[Any]:
    """What a value holds, for finding notebook functions and classes inside values: container
    items, attributes, a partial's function and arguments, a method's function and object, a
    function's closure and defaults."""
    yield from _children(value)
    if isinstance(value, functools.partial):
        yield value.func
        yield from value.args
        yield from value.keywords.values()
    elif isinstance(value, types.MethodType):
        yield value.__func__
        yield value.__self__
    elif isinstance(value, types.FunctionType):
        yield from (c.cell_contents for c in value.__closure__ or () if _has_contents(c))
        yield from value.__defaults__ or ()
        inner = getattr(value, "__wrapped__", None)
        if inner is not None:
            yield inner
    elif callable(value) and getattr(value, "__wrapped__", None) is not None:
        yield value.__wrapped__


def _is_descriptor(value: Any) -> bool:
    return isinstance(value, staticmethod | classmethod | property) or hasattr(value, "__get__")


def describe_shared(shared: Mapping[str, str]) -> str:
    """A warning for values every isolated call shares, naming each and why."""
    return (
        "isolated mode cannot give each call its own copy of "
        + ", ".join(f"{name} ({reason})" for name, reason in shared.items())
        + ": every call sees the same object, so a call that changes it changes it for the "
        "next; create it inside the target cell, or pin with --mode shared"
    )


__all__ = [
    "IsolationPlan",
    "PinnedState",
    "code_global_names",
    "copy_seeds",
    "describe_shared",
    "is_immutable",
    "stored_attributes",
]
