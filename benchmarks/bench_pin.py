"""Benchmark: ``pin_notebook`` versus plain nbclient running the same cells.

Each side starts a fresh kernel on this interpreter (``sys.executable -m ipykernel_launcher``)
and runs every cell up to and including the target cell; pin also captures the state and
writes the checkpoint. The wall time of each call is measured, kernel shutdown included on both
sides (pin stops its kernel; the nbclient side stops the kernel it handed in with ``km=``).
The sides alternate (pin, nbclient, pin, ...) so that load drift hits both alike. Exits 1 when
pin's median exceeds ``--target`` times nbclient's median for
any notebook, unless ``--no-check``.

    .venv/bin/python benchmarks/bench_pin.py [--rounds 7] [--no-check] [NOTEBOOK:CELL ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient

from checkpoint2svc.checkpoint import pin_notebook
from checkpoint2svc.checkpoint.kernel import THIS_PYTHON, _SpecsWithThisPython
from checkpoint2svc.checkpoint.notebook import read_notebook, select_cell

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEFAULT_CASES = [f"{EXAMPLES / 'classifier.ipynb'}:predict", f"{EXAMPLES / 'greeter.ipynb'}:greet"]


def run_pin(notebook: Path, cell: str, out_root: Path) -> None:
    pin_notebook(
        notebook, cell, out_root / "bench.ckpt",
        force=True, progress=lambda m: None, warn=lambda m: None,
    )  # fmt: skip


def run_nbclient(notebook: Path, cell: str) -> None:
    nb, _ = read_notebook(notebook)
    nb.cells = nb.cells[: select_cell(nb, cell).index + 1]
    specs = _SpecsWithThisPython()
    manager = AsyncKernelManager(kernel_name=THIS_PYTHON, kernel_spec_manager=specs)
    NotebookClient(
        nb, km=manager, kernel_name=THIS_PYTHON, timeout=600, startup_timeout=120,
        resources={"metadata": {"path": str(notebook.parent)}},
    ).execute()  # fmt: skip
    run_sync(manager.shutdown_kernel)(now=True)


def reap_kernels() -> None:
    """Stop any kernel a failed run left behind (a safety net; both sides stop their own)."""
    kernels = [
        child for child in psutil.Process().children()
        if "ipykernel_launcher" in " ".join(child.cmdline())
    ]  # fmt: skip
    for kernel in kernels:
        kernel.terminate()
    psutil.wait_procs(kernels, timeout=10)


def timed(action: Callable[[], None]) -> float:
    """Wall time of ``action``; a kernel left behind is stopped after the clock stops."""
    started = time.perf_counter()
    action()
    elapsed = time.perf_counter() - started
    reap_kernels()
    return elapsed


def bench(notebook: Path, cell: str, rounds: int, warmup: int) -> tuple[list[float], list[float]]:
    """Wall times of ``rounds`` alternating pin and nbclient runs, after ``warmup`` unmeasured."""
    pin_times: list[float] = []
    nbclient_times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-pin-") as tmp:
        for n in range(warmup + rounds):
            pin_s = timed(lambda: run_pin(notebook, cell, Path(tmp)))
            nbclient_s = timed(lambda: run_nbclient(notebook, cell))
            label = f"round {n + 1 - warmup}" if n >= warmup else "warm-up"
            print(f"  {notebook.name}:{cell} {label}: pin {pin_s:.2f} s, "
                  f"nbclient {nbclient_s:.2f} s", file=sys.stderr, flush=True)  # fmt: skip
            if n >= warmup:
                pin_times.append(pin_s)
                nbclient_times.append(nbclient_s)
    return pin_times, nbclient_times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", default=DEFAULT_CASES, metavar="NOTEBOOK:CELL")
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds (default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (1)")
    parser.add_argument("--target", type=float, default=1.3, help="max pin/nbclient (1.3)")
    parser.add_argument("--no-check", action="store_true", help="exit 0 whatever the ratio")
    args = parser.parse_args()

    rows = [
        "| notebook | cell | pin median | pin min | nbclient median | nbclient min | ratio |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    worst = 0.0
    for case in args.cases:
        path, _, cell = case.rpartition(":")
        notebook = Path(path)
        pin_times, nbclient_times = bench(notebook, cell, args.rounds, args.warmup)
        pin_med, nbc_med = statistics.median(pin_times), statistics.median(nbclient_times)
        ratio = pin_med / nbc_med
        worst = max(worst, ratio)
        rows.append(
            f"| {notebook.name} | {cell} | {pin_med:.2f} s | {min(pin_times):.2f} s "
            f"| {nbc_med:.2f} s | {min(nbclient_times):.2f} s | {ratio:.2f} |"
        )
    print("\n".join(rows))
    print(f"\n{args.rounds} rounds, {args.warmup} warm-up; ratio = pin median / nbclient median; "
          f"target <= {args.target}")  # fmt: skip
    if worst > args.target and not args.no_check:
        print(f"FAIL: ratio {worst:.2f} exceeds {args.target}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
