"""How faithfully does checkpoint2svc reproduce real notebooks with its default flags?

For every notebook of the corpus (tests/fidelity/notebooks) the harness

1. finds the *result cells*: code cells that assign a name not starting with ``_``;
2. runs the notebook twice top to bottom in plain kernels and captures, after each result cell,
   the wire form of every name it assigns (``reference.py``). A cell is *measured* when at least
   one of its names has a wire form and all of them are equal in both runs; the others are
   reported as excluded (non-deterministic, or no value with a wire form);
3. for each measured cell: ``checkpoint2svc pin NB --cell '#N'`` (no other flag), ``run`` on the
   pinned example, ``serve`` + ``POST /execute``, comparing each answer exactly with the reference
   (``service_check.py``).

A cell is *reproduced* when pin succeeds, run and serve answer the reference values exactly, and
at least one output was compared.

    python -m tests.fidelity.corpus [--jobs N] [--json FILE] [NOTEBOOK...]

The last line printed is ``reproduced: A of B result cells (P%)``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from tests.fidelity.rules import ResultCell, classify, reason_key, result_cells
from tests.fidelity.service_check import check_cell, last_line

HERE = Path(__file__).resolve().parent
CORPUS_DIR = HERE / "notebooks"
REPO_ROOT = HERE.parent.parent
REFERENCE_TIMEOUT = 900.0

Progress = Callable[[str], None]


@dataclass
class Outcome:
    """One result cell's fate."""

    notebook: str
    cell: int
    """Its position among the notebook's code cells (``--cell '#N'``)."""
    first_line: str
    names: list[str]
    status: str
    """reproduced, failed, nondeterministic, no wire value, or reference failed."""
    stage: str = ""
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def measured(self) -> bool:
        return self.status in ("reproduced", "failed")


@dataclass
class Report:
    outcomes: list[Outcome]
    seconds: float
    reference_seconds: float
    jobs: int

    @property
    def measured(self) -> int:
        return sum(o.measured for o in self.outcomes)

    @property
    def reproduced(self) -> int:
        return sum(o.status == "reproduced" for o in self.outcomes)

    @property
    def fraction(self) -> float:
        return self.reproduced / self.measured if self.measured else 0.0

    def reasons(self) -> list[tuple[int, str, str]]:
        """(count, reason with names and numbers blanked, one example cell), most common first."""
        counts: Counter[str] = Counter()
        examples: dict[str, str] = {}
        for o in self.outcomes:
            if o.status == "failed":
                key = reason_key(o.stage, o.reason)
                counts[key] += 1
                examples.setdefault(key, f"{o.notebook} #{o.cell}")
        return [(n, key, examples[key]) for key, n in counts.most_common()]

    def summary_line(self) -> str:
        return (
            f"reproduced: {self.reproduced} of {self.measured} result cells "
            f"({100 * self.fraction:.1f}%)"
        )

    def table(self, width: int = 110) -> str:
        rows = [f"{'NOTEBOOK':<20} {'CELL':<5} {'STATUS':<17} {'STAGE':<6} DETAIL"]
        for o in self.outcomes:
            detail = o.reason or ("; ".join(o.notes) if o.status != "reproduced" else "")
            if o.status == "reproduced":
                detail = ", ".join(o.names)
            detail = " ".join(detail.split())
            if len(detail) > width:
                detail = detail[: width - 3] + "..."
            rows.append(f"{o.notebook:<20} #{o.cell:<4} {o.status:<17} {o.stage:<6} {detail}")
        rows.append("")
        reasons = self.reasons()
        if reasons:
            rows.append("failure reasons (names, numbers and paths blanked), by count:")
            rows.extend(f"{n:>5}  {key}   (e.g. {example})" for n, key, example in reasons)
        excluded = Counter(o.status for o in self.outcomes if not o.measured)
        rows.append(
            "excluded: "
            + (", ".join(f"{n} {status}" for status, n in sorted(excluded.items())) or "none")
        )
        rows.append(
            f"took {self.seconds:.0f} s (plain reference runs {self.reference_seconds:.0f} s) "
            f"with --jobs {self.jobs}"
        )
        rows.append(self.summary_line())
        return "\n".join(rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "reproduced": self.reproduced,
            "measured": self.measured,
            "fraction": self.fraction,
            "seconds": round(self.seconds, 1),
            "reference_seconds": round(self.reference_seconds, 1),
            "jobs": self.jobs,
            "reasons": [{"count": n, "reason": k, "example": e} for n, k, e in self.reasons()],
            "cells": [asdict(o) for o in self.outcomes],
        }


def corpus_notebooks() -> list[Path]:
    return sorted(CORPUS_DIR.glob("*.ipynb"))


def reference_run(notebook: Path, scratch: Path) -> dict[str, Any]:
    """One plain top-to-bottom run in its own process (see reference.py)."""
    out = Path(tempfile.mkstemp(suffix=".json", dir=scratch)[1])
    pythonpath = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO_ROOT)) if p)
    env = dict(os.environ, PYTHONPATH=pythonpath, TMPDIR=str(scratch))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tests.fidelity.reference", str(notebook), str(out)],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True,
            timeout=REFERENCE_TIMEOUT, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            return {"cells": {}, "error": f"the plain run crashed: {last_line(done.stderr)}"}
        result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return result
    except subprocess.TimeoutExpired:
        return {"cells": {}, "error": f"the plain run took over {REFERENCE_TIMEOUT:.0f} s"}
    finally:
        out.unlink(missing_ok=True)


def _classified(
    notebook: Path, cells: list[ResultCell], runs: tuple[dict[str, Any], dict[str, Any]]
) -> list[Outcome]:
    outcomes = []
    for cell in cells:
        first, second = (run["cells"].get(str(cell.code_index)) for run in runs)
        status, why = classify(first, second)
        if status == "reference failed":
            why = next((run["error"] for run in runs if run.get("error")), why)
        outcomes.append(
            Outcome(notebook.stem, cell.code_index, cell.first_line, list(cell.names), status,
                    reason="" if status == "measured" else why)
        )  # fmt: skip
    return outcomes


def _checked(
    notebook: Path, outcome: Outcome, reference: dict[str, Any], pin_args: Sequence[str]
) -> Outcome:
    try:
        check = check_cell(notebook, outcome.cell, reference, pin_args)
    except Exception as exc:  # a timeout or a harness bug: report it on the cell, go on
        outcome.status, outcome.stage = "failed", "harness"
        outcome.reason = f"{type(exc).__name__}: {exc}"
        return outcome
    outcome.status = "reproduced" if check.reproduced else "failed"
    outcome.stage, outcome.reason = check.stage, check.reason
    outcome.notes, outcome.seconds = check.notes, check.seconds
    return outcome


def measure(
    notebooks: Sequence[Path] | None = None,
    jobs: int = 2,
    pin_args: Sequence[str] = (),
    progress: Progress | None = None,
) -> Report:
    """Run the whole measurement over ``notebooks`` (default: the corpus)."""
    say = progress or (lambda _: None)
    paths = [Path(p).resolve() for p in (notebooks or corpus_notebooks())]
    started = time.perf_counter()
    cells = {path: result_cells(nbformat.read(path, as_version=4)) for path in paths}
    outcomes: list[Outcome] = []
    with (
        tempfile.TemporaryDirectory(prefix="fidelity-") as scratch_dir,
        ThreadPoolExecutor(max_workers=max(1, jobs)) as pool,
    ):
        scratch = Path(scratch_dir)
        say(f"plain reference runs: {len(paths)} notebooks, twice each")
        futures = {p: tuple(pool.submit(reference_run, p, scratch) for _ in "12") for p in paths}
        references: dict[Path, tuple[dict[str, Any], dict[str, Any]]] = {}
        for path, (a, b) in futures.items():
            references[path] = (a.result(), b.result())
            say(f"  {path.stem}: {references[path][0].get('error') or 'ok'}")
        reference_seconds = time.perf_counter() - started

        work: list[tuple[Outcome, Future[Outcome]]] = []
        for path in paths:
            for outcome in _classified(path, cells[path], references[path]):
                if outcome.status == "measured":
                    first = references[path][0]["cells"][str(outcome.cell)]
                    work.append((outcome, pool.submit(_checked, path, outcome, first, pin_args)))
                outcomes.append(outcome)
        say(f"checking {len(work)} measured result cells with pin, run and serve")
        for n, (outcome, future) in enumerate(work, start=1):
            future.result()
            detail = f"{outcome.stage}: {outcome.reason}" if outcome.stage else ""
            say(f"  [{n}/{len(work)}] {outcome.notebook} #{outcome.cell} {outcome.status} "
                f"{sum(outcome.seconds.values()):.1f} s {detail[:120]}")  # fmt: skip
    return Report(outcomes, time.perf_counter() - started, reference_seconds, jobs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fidelity.corpus",
        description="Measure how many result cells of the notebook corpus checkpoint2svc "
        "reproduces with its default flags (pin, run and serve).",
    )
    parser.add_argument(
        "notebooks",
        nargs="*",
        type=Path,
        metavar="NOTEBOOK",
        help="notebooks to measure (default: tests/fidelity/notebooks/*.ipynb)",
    )
    parser.add_argument(
        "--jobs", type=int, default=2, metavar="N", help="cells checked at once (default 2)"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    parser.add_argument(
        "--fail-under",
        type=float,
        metavar="PERCENT",
        help="exit 1 if fewer than PERCENT%% of the measured cells reproduce",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    # Diagnosis only: an extra argument for every `pin` (e.g. --pin-arg=--inputs=).
    parser.add_argument("--pin-arg", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report = measure(args.notebooks or None, args.jobs, args.pin_arg,
                     None if args.quiet else progress)  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_json(), indent=1) + "\n", encoding="utf-8")
    print(report.table())
    if args.fail_under is not None and 100 * report.fraction < args.fail_under:
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
