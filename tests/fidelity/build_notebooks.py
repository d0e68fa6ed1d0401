"""Write the fidelity corpus: tests/fidelity/notebooks/*.ipynb and the CSV one of them reads.

The notebooks are kept as jupytext percent-format text in ``tests/fidelity/sources`` (``# %%``
starts a code cell, ``# %% [markdown]`` a markdown cell whose lines start with ``# ``). This script
turns each into an nbformat v4 notebook with stable cell ids and no outputs; the .ipynb files are
committed and are what the harness reads.

    python -m tests.fidelity.build_notebooks           # write them
    python -m tests.fidelity.build_notebooks --check   # exit 1 if a committed file is stale
"""

from __future__ import annotations

import argparse
import io
import random
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import nbformat

from tests.fidelity.sources import NOTEBOOKS

NOTEBOOK_DIR = Path(__file__).resolve().parent / "notebooks"
CSV_NAME = "data/coffee_sales.csv"

_METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def parse_percent(text: str) -> list[tuple[str, str]]:
    """``(cell_type, source)`` for every cell of a percent-format script."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            kind = "markdown" if "[markdown]" in line else "code"
            cells.append((kind, []))
        elif cells:
            kind, lines = cells[-1]
            if kind == "markdown" and line.startswith("#"):
                line = line[2:] if line.startswith("# ") else line[1:]
            lines.append(line)
        elif line.strip():
            raise ValueError(f"text before the first `# %%` marker: {line!r}")
    return [(kind, "\n".join(lines).strip("\n")) for kind, lines in cells]


def build_notebook(text: str) -> Any:
    notebook = nbformat.v4.new_notebook(metadata=_METADATA)
    for i, (kind, source) in enumerate(parse_percent(text)):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        notebook.cells.append(make(source, id=f"cell-{i:02d}"))
    nbformat.validate(notebook)
    return notebook


def notebook_text(text: str) -> str:
    stream = io.StringIO()
    nbformat.write(build_notebook(text), stream)
    return stream.getvalue()


def coffee_sales_csv() -> str:
    """Four weeks of made-up sales: three stores, three products, prices that move a little."""
    rand = random.Random(11)
    base = {"espresso": (2.4, 60), "latte": (3.6, 45), "tea": (2.1, 25)}
    store_size = {"Harbour": 1.0, "Market St": 1.4, "Station": 0.8}
    lines = ["date,store,product,cups,price"]
    for day in range(28):
        when = date(2024, 3, 1) + timedelta(days=day)
        weekend = when.weekday() >= 5
        for store, size in store_size.items():
            for product, (price0, cups0) in base.items():
                price = round(price0 * rand.uniform(0.85, 1.15), 2)
                demand = cups0 * size * (price0 / price) ** 1.3 * (0.8 if weekend else 1.0)
                cups = max(1, round(demand * rand.uniform(0.8, 1.2)))
                lines.append(f"{when.isoformat()},{store},{product},{cups},{price:.2f}")
    return "\n".join(lines) + "\n"


def expected_files() -> dict[Path, str]:
    files = {
        NOTEBOOK_DIR / f"{name}.ipynb": notebook_text(text) for name, text in NOTEBOOKS.items()
    }
    files[NOTEBOOK_DIR / CSV_NAME] = coffee_sales_csv()
    return files


def stale_files() -> list[Path]:
    """Committed files that differ from what the sources produce (or are missing)."""
    return [
        path
        for path, text in expected_files().items()
        if not path.is_file() or path.read_text(encoding="utf-8") != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the committed files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path}", file=sys.stderr)
        return 1 if stale else 0
    for path, text in expected_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
