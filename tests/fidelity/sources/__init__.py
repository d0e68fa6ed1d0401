"""The fidelity corpus's notebooks as jupytext percent-format text, by notebook name."""

from __future__ import annotations

from tests.fidelity.sources import analysis, learning, statistics

NOTEBOOKS: dict[str, str] = {**statistics.NOTEBOOKS, **learning.NOTEBOOKS, **analysis.NOTEBOOKS}

__all__ = ["NOTEBOOKS"]
