"""Notebook fidelity: with its default flags, checkpoint2svc reproduces at least 95% of the
measured result cells of the corpus in tests/fidelity (pin, run and serve each give the values a
plain kernel computed). The whole corpus takes minutes: see tests/fidelity/corpus.py.
"""

from __future__ import annotations

import pytest

from tests.fidelity.corpus import measure

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fidelity")]

REQUIRED_FRACTION = 0.95
MAX_EXCLUDED_FRACTION = 0.15
"""Most result cells must be measurable: if many stop having a wire value (or the plain runs
fail), the fraction would be judged on too few cells."""


def test_the_corpus_is_reproduced_with_default_flags() -> None:
    report = measure(jobs=2)
    table = report.table()
    print(table)
    total = len(report.outcomes)
    assert total > 0, table
    assert report.measured >= (1 - MAX_EXCLUDED_FRACTION) * total, (
        f"only {report.measured} of {total} result cells could be measured\n{table}"
    )
    assert report.fraction >= REQUIRED_FRACTION, f"{report.summary_line()}\n{table}"
