"""Shared fixtures: example notebooks pinned once per test session (per xdist worker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from checkpoint2svc.checkpoint import Checkpoint, pin_notebook

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# notebook, cell selector, mode
EXAMPLE_PINS: dict[str, tuple[str, str, str]] = {
    "classifier": ("classifier.ipynb", "predict", "isolated"),
    "image": ("image.ipynb", "normalize", "isolated"),
    "table": ("table.ipynb", "convert", "isolated"),
    "greeter": ("greeter.ipynb", "greet", "isolated"),
    "counter": ("counter.ipynb", "count", "isolated"),
    "text": ("text.ipynb", "keywords", "isolated"),
    "counter-shared": ("counter.ipynb", "count", "shared"),
}


@pytest.fixture(scope="session")
def pinned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Checkpoint]:
    """Every example notebook pinned once; tests must not modify these directories."""
    root = tmp_path_factory.mktemp("pinned")
    checkpoints = {}
    for key, (notebook, cell, mode) in EXAMPLE_PINS.items():
        checkpoints[key] = pin_notebook(
            EXAMPLES / notebook,
            cell,
            root / f"{key}.ckpt",
            mode=mode,  # type: ignore[arg-type]
            progress=lambda _: None,
            warn=lambda _: None,
        )
    return checkpoints
