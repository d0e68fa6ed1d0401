"""The executor's modes on a hand-built state (a notebook's globals, minus the kernel)."""

import threading
from typing import Any

import pytest

from checkpoint2svc.errors import ExecutionError
from checkpoint2svc.execution.executor import CellExecutor


def notebook_state(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(source, namespace)
    return namespace


def test_isolated_calls_do_not_leak_rebinding_or_mutation() -> None:
    state = notebook_state("seen = []\ncount = 0\n")
    cell = "seen.append(item)\ncount += 1\nresult = (list(seen), count)"
    executor = CellExecutor(state, cell, ["item"], ["result"])
    assert executor.run({"item": "a"}) == {"result": (["a"], 1)}
    assert executor.run({"item": "b"}) == {"result": (["b"], 1)}
    assert state["seen"] == [] and state["count"] == 0


def test_shared_calls_accumulate() -> None:
    state = notebook_state("count = 0\n")
    executor = CellExecutor(state, "count += step\ntotal = count", ["step"], ["total"], "shared")
    assert [executor.run({"step": 2})["total"] for _ in range(3)] == [2, 4, 6]


def test_notebook_functions_see_this_calls_inputs() -> None:
    state = notebook_state("text = 'pinned'\ndef shout():\n    return text.upper()\n")
    executor = CellExecutor(state, "loud = shout()", ["text"], ["loud"])
    assert executor.run({"text": "hi"}) == {"loud": "HI"}
    assert state["shout"]() == "PINNED"  # the pinned function itself is untouched


def test_isolated_calls_run_concurrently_without_mixing_inputs() -> None:
    state = notebook_state("import time\n")
    executor = CellExecutor(state, "time.sleep(0.01)\ny = x * 2", ["x"], ["y"])
    results: dict[int, Any] = {}

    def call(n: int) -> None:
        results[n] = executor.run({"x": n})["y"]

    threads = [threading.Thread(target=call, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {n: n * 2 for n in range(20)}


def test_an_exception_in_the_cell_carries_name_message_and_cell_traceback() -> None:
    executor = CellExecutor(notebook_state(""), "y = 1 / x", ["x"], ["y"])
    with pytest.raises(ExecutionError) as info:
        executor.run({"x": 0})
    assert info.value.error_name == "ZeroDivisionError"
    assert info.value.error_message == "division by zero"
    assert any("y = 1 / x" in line for line in info.value.traceback)
    assert executor.run({"x": 2}) == {"y": 0.5}  # and the next call works


def test_an_output_the_cell_did_not_assign_is_reported() -> None:
    executor = CellExecutor(notebook_state(""), "if x:\n    y = 1", ["x"], ["y"])
    with pytest.raises(ExecutionError, match="did not assign its output 'y'"):
        executor.run({"x": False})


def test_display_works_without_ipython_and_prints_to_the_log(
    capsys: pytest.CaptureFixture[str],
) -> None:
    executor = CellExecutor(notebook_state("x = 41"), "display(x + 1)\ny = x", [], ["y"])
    assert executor.run({}) == {"y": 41}
    assert capsys.readouterr().out == "42\n"
