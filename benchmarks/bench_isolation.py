"""Benchmark: what exact isolation costs per call, isolated versus shared, side by side.

Each case builds a notebook-like state in this process (the kind of objects real notebooks keep:
a fitted model, a lookup table, a data frame) and runs one cell over it through
``CellExecutor``, once in ``isolated`` mode (every call gets fresh copies of what the cell can
reach, the global random generators are put back where the notebook had them, and everything
is put back after it) and once in ``shared`` mode (the cell runs on the state as it is: the
least any executor does). The two take turns call by call, so a busy moment
costs both alike; ``--rounds`` rounds of ``--calls`` calls each, the median of the rounds'
medians reported, with the ratio isolated / shared and the per-call time isolation adds.
No server is involved: the REST and gRPC benchmarks measure the whole request path.

    .venv/bin/python benchmarks/bench_isolation.py [--calls 400] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from checkpoint2svc.execution.executor import CellExecutor
from checkpoint2svc.execution.random_state import RandomState


@dataclass(frozen=True)
class Case:
    name: str
    state: Callable[[], dict[str, Any]]
    cell: str
    inputs: dict[str, Any]


def _classifier() -> dict[str, Any]:
    x, y = load_iris(return_X_y=True)
    return {"model": LogisticRegression(max_iter=500).fit(x, y), "np": np,
            "species": ["setosa", "versicolor", "virginica"]}  # fmt: skip


def _forest() -> dict[str, Any]:
    x, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=50, random_state=0).fit(x, y)
    return {"model": model, "np": np}


def _vocabulary() -> dict[str, Any]:
    return {"vocab": {f"word{i}": i for i in range(10_000)}}


def _frame() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"group": rng.integers(0, 10, 100_000), "value": rng.normal(size=100_000)})
    return {"df": frame}


CASES = [
    Case("c = a + b (no state)", dict, "c = a + b", {"a": 1, "b": 2}),
    Case("LogisticRegression.predict_proba", _classifier,
         "p = model.predict_proba(np.array([features]))[0]\nlabel = species[int(p.argmax())]",
         {"features": [6.7, 3.0, 5.2, 2.3]}),
    Case("RandomForest(50).predict", _forest,
         "label = int(model.predict(np.array([features]))[0])", {"features": [6.7, 3.0, 5.2, 2.3]}),
    Case("dict of 10,000 words, one lookup", _vocabulary, "i = vocab.get(word, -1)",
         {"word": "word42"}),
    Case("DataFrame of 100,000 rows, a filtered mean", _frame,
         "m = float(df.loc[df['group'] == g, 'value'].mean())", {"g": 3}),
]  # fmt: skip


def per_call(executor: CellExecutor, inputs: dict[str, Any]) -> float:
    started = time.perf_counter()
    executor.run(inputs)
    return time.perf_counter() - started


def measure(case: Case, calls: int, rounds: int) -> tuple[float, float, list[str]]:
    generators = RandomState.capture()  # as a served checkpoint has them: restored per call
    isolated = CellExecutor(case.state(), case.cell, list(case.inputs), [], "isolated", generators)
    shared = CellExecutor(case.state(), case.cell, list(case.inputs), [], "shared", generators)
    assert isolated.pinned is not None
    for _ in range(20):  # warm up both
        per_call(isolated, case.inputs)
        per_call(shared, case.inputs)
    medians: dict[str, list[float]] = {"isolated": [], "shared": []}
    for _ in range(rounds):
        times: dict[str, list[float]] = {"isolated": [], "shared": []}
        for _ in range(calls):
            times["isolated"].append(per_call(isolated, case.inputs))
            times["shared"].append(per_call(shared, case.inputs))
        for side, values in times.items():
            medians[side].append(statistics.median(values))
    return (
        statistics.median(medians["isolated"]),
        statistics.median(medians["shared"]),
        isolated.pinned.plan.copied,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print("| cell over its state | copied per call | isolated | shared | ratio | added |")
    print("|---|---|---:|---:|---:|---:|")
    for case in CASES:
        isolated, shared, copied = measure(case, args.calls, args.rounds)
        print(
            f"| {case.name} | {', '.join(copied) or 'nothing'} | {isolated * 1e6:,.1f} µs "
            f"| {shared * 1e6:,.1f} µs | {isolated / shared:.2f} | "
            f"{(isolated - shared) * 1e6:,.1f} µs |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
