"""Exact isolation: a call never sees what an earlier call changed, whatever the path.

Each case builds a notebook's globals, then calls a cell twice on a branch that mutates through
that path (a branch a pin-time example would not take). Both calls must answer the same, and the
pinned state must be as it was.
"""

from __future__ import annotations

import random
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from checkpoint2svc.execution.executor import CellExecutor
from checkpoint2svc.execution.isolation import PinnedState, is_immutable, stored_attributes
from checkpoint2svc.execution.random_state import RandomState


def notebook_state(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(source, namespace)
    return namespace


# (earlier cells, target cell): the target cell assigns `size` from state it mutated on the
# `leak` branch; an isolated service must answer 1 on every call.
PATHS = {
    "a global list": ("seen = []", "if mode == 'leak':\n    seen.append(n)\nsize = len(seen)"),
    "a rebound global": ("count = 0", "if mode == 'leak':\n    count += 1\nsize = count"),
    "a notebook function's globals": (
        "seen = []\ndef remember(x):\n    seen.append(x)\n",
        "if mode == 'leak':\n    remember(n)\nsize = len(seen)",
    ),
    "a function's `global` statement": (
        "count = 0\ndef bump():\n    global count\n    count += 1\n",
        "if mode == 'leak':\n    bump()\nsize = count",
    ),
    "a method on an object in a global": (
        "class Bag:\n    def __init__(self):\n        self.items = []\n"
        "    def add(self, x):\n        self.items.append(x)\nbag = Bag()\n",
        "if mode == 'leak':\n    bag.add(n)\nsize = len(bag.items)",
    ),
    "a method that changes a global": (
        "seen = []\nclass Tracker:\n    def track(self, x):\n        seen.append(x)\n"
        "tracker = Tracker()\n",
        "if mode == 'leak':\n    tracker.track(n)\nsize = len(seen)",
    ),
    "a class attribute": (
        "class Registry:\n    entries = []\n    total = 0\n"
        "    def register(self, x):\n        Registry.total += 1\n",
        "if mode == 'leak':\n    Registry.entries.append(n)\n    Registry().register(n)\n"
        "size = len(Registry.entries) + Registry.total",
    ),
    "an attribute added to a class": (
        "class Flags:\n    pass\n",
        "if mode == 'leak':\n    Flags.extra = 5\nsize = getattr(Flags, 'extra', 0)",
    ),
    "nested containers": (
        "config = {'a': {'b': [], 'c': {'d': set()}}}",
        "if mode == 'leak':\n    config['a']['b'].append(n)\n    config['a']['c']['d'].add(n)\n"
        "size = len(config['a']['b']) + len(config['a']['c']['d'])",
    ),
    "an object inside a tuple": (
        "pair = ([], 'label')",
        "if mode == 'leak':\n    pair[0].append(n)\nsize = len(pair[0])",
    ),
    "a closure": (
        "def make():\n    items = []\n    def add(x):\n        items.append(x)\n"
        "        return len(items)\n    return add\nadd = make()\n",
        "size = add(n) if mode == 'leak' else 0",
    ),
    "a mutable default argument": (
        "def collect(x, acc=[]):\n    acc.append(x)\n    return len(acc)\n",
        "size = collect(n) if mode == 'leak' else 0",
    ),
    "a function attribute": (
        "def tally():\n    tally.calls = getattr(tally, 'calls', 0) + 1\n    return tally.calls\n",
        "size = tally() if mode == 'leak' else 0",
    ),
    "a module attribute": (
        "import c2s_isolation_probe as probe",
        "if mode == 'leak':\n    probe.level += 1\n    probe.added = 1\n"
        "size = probe.level + getattr(probe, 'added', 0)",
    ),
    "a module attribute set by a notebook function": (
        "import c2s_isolation_probe as probe\ndef louder():\n    probe.level += 1\n",
        "if mode == 'leak':\n    louder()\nsize = probe.level",
    ),
    "a memoized notebook function": (
        "import functools\nseen = []\n@functools.lru_cache\ndef note(x):\n"
        "    seen.append(x)\n    return len(seen)\n",
        "size = note(n) if mode == 'leak' else len(seen)",
    ),
    "a decorated notebook function": (
        "import functools\nseen = []\ndef logged(f):\n    @functools.wraps(f)\n"
        "    def inner(*a):\n        return f(*a)\n    return inner\n"
        "@logged\ndef note(x):\n    seen.append(x)\n    return len(seen)\n",
        "size = note(n) if mode == 'leak' else len(seen)",
    ),
    "a function held in a dict": (
        "seen = []\ndef h(x):\n    seen.append(x)\n    return len(seen)\nhandlers = {'a': h}\n",
        "size = handlers['a'](n) if mode == 'leak' else 0",
    ),
    "a functools.partial": (
        "import functools\nseen = []\ndef f(k, x):\n    seen.append(x)\n    return len(seen)\n"
        "g = functools.partial(f, 1)\n",
        "size = g(n) if mode == 'leak' else 0",
    ),
    "a bound method": (
        "seen = []\nclass M:\n    def predict(self, x):\n        seen.append(x)\n"
        "        return len(seen)\npredict = M().predict\n",
        "size = predict(n) if mode == 'leak' else 0",
    ),
    "an instance inside a list": (
        "class Step:\n    calls = 0\n    def run(self):\n        type(self).calls += 1\n"
        "        return type(self).calls\nsteps = [Step()]\n",
        "size = steps[0].run() if mode == 'leak' else 0",
    ),
    "globals() by name": (
        "count = 0",
        "if mode == 'leak':\n    globals()['count'] = count + 1\nsize = count",
    ),
    "a numpy array in place": (
        "import numpy as np\nweights = np.zeros(3)",
        "if mode == 'leak':\n    weights += 1\nsize = int(weights.sum())",
    ),
}
FIRST = {  # what the first call answers on the leak branch
    "a global list": 1, "a rebound global": 1, "a notebook function's globals": 1,
    "a function's `global` statement": 1, "a method on an object in a global": 1,
    "a method that changes a global": 1, "a class attribute": 2,
    "an attribute added to a class": 5, "nested containers": 2, "an object inside a tuple": 1,
    "a closure": 1, "a mutable default argument": 1, "a function attribute": 1,
    "a module attribute": 2, "a module attribute set by a notebook function": 1,
    "a memoized notebook function": 1, "a decorated notebook function": 1,
    "a function held in a dict": 1, "a functools.partial": 1, "a bound method": 1,
    "an instance inside a list": 1,
    "globals() by name": 1, "a numpy array in place": 3,
}  # fmt: skip


@pytest.fixture
def probe_module() -> Iterator[types.ModuleType]:
    module = types.ModuleType("c2s_isolation_probe")
    module.level = 0  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


@pytest.mark.parametrize("path", sorted(PATHS))
def test_a_call_never_sees_what_an_earlier_call_changed(
    path: str, probe_module: types.ModuleType
) -> None:
    earlier, cell = PATHS[path]
    state = notebook_state(earlier)
    executor = CellExecutor(state, cell, ["mode", "n"], ["size"])
    answers = [executor.run({"mode": "leak", "n": i})["size"] for i in range(3)]
    assert answers == [FIRST[path]] * 3
    assert executor.run({"mode": "read", "n": 0})["size"] == 0
    # The pinned state is as it was, and the cell's own names are gone again.
    shims = {"__builtins__", "display"}
    assert notebook_state(earlier).keys() | shims == state.keys() | shims
    assert probe_module.level == 0 and not hasattr(probe_module, "added")


def test_the_same_paths_leak_in_shared_mode(probe_module: types.ModuleType) -> None:
    earlier, cell = PATHS["a method that changes a global"]
    executor = CellExecutor(notebook_state(earlier), cell, ["mode", "n"], ["size"], "shared")
    assert [executor.run({"mode": "leak", "n": i})["size"] for i in range(3)] == [1, 2, 3]


def test_two_names_for_one_object_stay_one_object_within_a_call() -> None:
    state = notebook_state("a = []\nb = a\nholder = {'list': a}")
    executor = CellExecutor(
        state, "a.append(1)\nsize = (len(b), len(holder['list']))", [], ["size"]
    )
    assert executor.run({}) == {"size": (1, 1)}
    assert executor.run({}) == {"size": (1, 1)}


def test_a_value_that_cannot_be_copied_is_shared_and_named() -> None:
    state = notebook_state("import threading\nlock = threading.Lock()\nseen = []")
    pinned = PinnedState(state, compile("with lock:\n    seen.append(1)", "<cell>", "exec"))
    assert "lock" in pinned.plan.shared and "seen" in pinned.plan.copied
    assert "lock" in pinned.plan.shared["lock"]  # the reason names what failed


def test_only_what_the_cell_can_reach_is_copied() -> None:
    state = notebook_state(
        "big = list(range(10))\nsmall = [1]\nother = [2]\n"
        "def helper():\n    return other\nlabel = 'x'\n"
    )
    pinned = PinnedState(state, compile("y = small + helper()", "<cell>", "exec"))
    assert sorted(pinned.plan.copied) == ["other", "small"]  # not big; not the str


def test_immutable_values_are_recognised() -> None:
    assert all(is_immutable(v) for v in (1, 2.0, "s", b"b", None, (1, ("a",)), frozenset({1})))
    assert not any(is_immutable(v) for v in ([], {}, (1, []), np.zeros(1)))
    assert is_immutable(np.float64(1.0))


def test_stored_attributes_finds_assignments_on_every_branch() -> None:
    code = compile("if x:\n    m.a = 1\nelse:\n    def f():\n        del m.b\n", "<c>", "exec")
    assert stored_attributes(code) == {"a", "b"}


def test_calls_take_turns_and_do_not_mix_inputs() -> None:
    state = notebook_state("import time\nseen = []")
    executor = CellExecutor(state, "time.sleep(0.002)\nseen.append(x)\ny = (x, len(seen))", ["x"],
                            ["y"])  # fmt: skip
    results: dict[int, Any] = {}

    def call(n: int) -> None:
        results[n] = executor.run({"x": n})["y"]

    threads = [threading.Thread(target=call, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {n: (n, 1) for n in range(10)}


def test_random_state_restored_before_every_isolated_call() -> None:
    random.seed(7)
    np.random.seed(7)
    pinned = RandomState.capture()
    expected = (random.random(), float(np.random.normal()))
    random.seed(99)  # anything that moves the generators between pin and serve
    np.random.seed(99)
    state = notebook_state("import random\nimport numpy as np")
    cell = "y = (random.random(), float(np.random.normal()))"
    executor = CellExecutor(state, cell, [], ["y"], random_state=pinned)
    assert [executor.run({})["y"] for _ in range(3)] == [expected] * 3


def test_shared_mode_continues_from_the_pinned_random_state() -> None:
    np.random.seed(3)
    pinned = RandomState.capture()
    sequence = [float(np.random.normal()) for _ in range(3)]
    np.random.seed(1)
    state = notebook_state("import numpy as np")
    executor = CellExecutor(state, "y = float(np.random.normal())", [], ["y"], "shared", pinned)
    assert [executor.run({})["y"] for _ in range(3)] == sequence


def test_random_state_survives_its_file(tmp_path: Any) -> None:
    np.random.seed(11)
    random.seed(11)
    RandomState.capture().write(tmp_path)
    expected = (random.random(), float(np.random.normal()))
    read = RandomState.read(tmp_path)
    assert read is not None and set(read.sources) >= {"random", "numpy.random"}
    read.restore()
    assert (random.random(), float(np.random.normal())) == expected


def test_containers_of_immutable_values_are_copied_shallowly_and_stay_separate() -> None:
    state = notebook_state(
        "vocab = {f'w{i}': i for i in range(1000)}\nlabels = ['a', 'b']\n"
        "nested = {'inner': [1, 2], 'key': ('x', 1)}\nalias = labels"
    )
    cell = "vocab['new'] = 1\nlabels.append('c')\nnested['inner'].append(3)\n" \
           "out = (len(vocab), len(alias), len(nested['inner']), alias is labels)"  # fmt: skip
    executor = CellExecutor(state, cell, [], ["out"])
    assert executor.pinned is not None
    flat = executor.pinned.plan.flat
    assert any(f is state["vocab"] for f in flat) and any(f is state["labels"] for f in flat)
    assert [executor.run({})["out"] for _ in range(2)] == [(1001, 3, 3, True)] * 2
    assert len(state["vocab"]) == 1000 and state["labels"] == ["a", "b"]
    assert state["nested"] == {"inner": [1, 2], "key": ("x", 1)}


def test_an_object_that_is_its_own_dict_keeps_its_attributes_in_every_call() -> None:
    """statsmodels' Dataset: deepcopy would give a dict without its attributes."""
    state = notebook_state(
        "class Bunch(dict):\n    def __init__(self, **kw):\n        dict.__init__(self, kw)\n"
        "        self.__dict__ = self\n"
        "dataset = Bunch(data=[1, 2, 3], names=['a'])\n"
    )
    cell = "dataset.data.append(4)\nsize = (len(dataset.data), dataset.names)"
    executor = CellExecutor(state, cell, [], ["size"])
    assert executor.pinned is not None and "dataset" in executor.pinned.plan.unpickled
    assert [executor.run({})["size"] for _ in range(2)] == [(4, ["a"])] * 2
    assert state["dataset"].data == [1, 2, 3]


@pytest.mark.parametrize("cached_gaussian", [False, True], ids=["plain", "cached-gaussian"])
def test_numpy_generator_is_put_back_whether_a_call_moved_it_or_used_a_cached_gaussian(
    cached_gaussian: bool,
) -> None:
    np.random.seed(5)
    if cached_gaussian:
        np.random.standard_normal()  # legacy Gaussians come in pairs: one is now cached
    pinned = RandomState.capture()
    expected = [float(np.random.standard_normal()) for _ in range(3)]
    for _ in range(3):
        pinned.restore()
        assert [float(np.random.standard_normal()) for _ in range(3)] == expected
    pinned.restore()
    np.random.seed(123)  # a call that reseeds is put back too
    pinned.restore()
    assert float(np.random.standard_normal()) == expected[0]


def test_the_random_module_is_put_back_after_a_call_moved_it_in_any_way() -> None:
    random.seed(21)
    pinned = RandomState.capture()
    expected = [random.random() for _ in range(2)]
    for move in (random.random, lambda: random.gauss(0, 1), lambda: random.seed(3), lambda: None):
        pinned.restore()
        move()
        pinned.restore()
        assert [random.random() for _ in range(2)] == expected


def test_a_memoized_function_does_not_answer_from_an_earlier_calls_inputs() -> None:
    state = notebook_state(
        "import functools\nfactor = 1\n@functools.cache\ndef scaled(x):\n    return x * factor\n"
    )
    executor = CellExecutor(state, "y = scaled(10)", ["factor"], ["y"])
    assert [executor.run({"factor": f})["y"] for f in (2, 3, 2)] == [20, 30, 20]


@pytest.mark.parametrize(
    "earlier",
    [
        "from dataclasses import dataclass, field\n@dataclass\nclass Cfg:\n    alpha: float = 0.5\n"
        "    tags: list = field(default_factory=list)\ncfg = Cfg()",
        "from abc import ABC\nclass Base(ABC):\n    pass\nclass Cfg(Base):\n    alpha = 0.5\n"
        "    def __init__(self):\n        self.tags = []\ncfg = Cfg()",
        "import enum\nclass Color(enum.Enum):\n    RED = 1\nclass Cfg:\n    alpha = 0.5\n"
        "    color = Color.RED\n    def __init__(self):\n        self.tags = []\ncfg = Cfg()",
        "import pydantic\nclass Cfg(pydantic.BaseModel):\n    alpha: float = 0.5\n"
        "    tags: list = []\ncfg = Cfg()",
        "import threading\nclass Cfg:\n    alpha = 0.5\n    lock = threading.Lock()\n"
        "    def __init__(self):\n        self.tags = []\ncfg = Cfg()",
    ],
    ids=["dataclass", "abc", "enum", "pydantic", "class-lock"],
)
def test_instances_of_framework_classes_are_isolated_and_never_break_a_call(earlier: str) -> None:
    state = notebook_state(earlier)
    executor = CellExecutor(state, "cfg.tags.append(1)\ny = (cfg.alpha, len(cfg.tags))", [], ["y"])
    assert [executor.run({})["y"] for _ in range(3)] == [(0.5, 1)] * 3


def test_a_failing_prepare_leaves_the_pinned_state_in_place() -> None:
    state = notebook_state("data = [1]\nclass Box:\n    items = []\n")
    executor = CellExecutor(state, "y = len(data) + len(Box.items)", [], ["y"])
    assert executor.pinned is not None
    executor.pinned.plan.copied.append("missing")  # a prepare that fails half-way
    with pytest.raises(KeyError):
        executor.run({})
    assert state["data"] is executor.pinned._bindings["data"]  # the pinned object, not a copy


def test_a_submodule_the_call_imports_stays_importable() -> None:
    state = notebook_state("import xml\nclass Report:\n    pass\nreport = Report()")
    cell = "import xml.dom.minidom\nreport.dom = 'parsed'\ny = xml.dom.minidom.__name__"
    executor = CellExecutor(state, cell, [], ["y"])
    assert [executor.run({})["y"] for _ in range(2)] == ["xml.dom.minidom"] * 2


def test_figures_a_call_opens_are_closed_after_it() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    state = notebook_state("import matplotlib.pyplot as plt")
    cell = "plt.plot([1, 2])\nn = len(plt.gca().lines)\nopen_figures = len(plt.get_fignums())"
    executor = CellExecutor(state, cell, [], ["n", "open_figures"])
    before = len(plt.get_fignums())
    results = [executor.run({}) for _ in range(3)]
    assert results == [{"n": 1, "open_figures": before + 1}] * 3
    assert len(plt.get_fignums()) == before


def test_a_call_that_swaps_numpys_bit_generator_does_not_break_the_next() -> None:
    np.random.seed(8)
    pinned = RandomState.capture()
    expected = float(np.random.random())
    state = notebook_state("import numpy as np")
    cell = "y = float(np.random.random())\nnp.random.set_bit_generator(np.random.PCG64(3))"
    executor = CellExecutor(state, cell, [], ["y"], random_state=pinned)
    try:
        assert [executor.run({})["y"] for _ in range(3)] == [expected] * 3
    finally:
        pinned.restore()  # leave the MT19937 generator in place for other tests
