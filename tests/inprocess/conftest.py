"""The in-process tier: the controller's loop and every route in seconds, no sockets."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.inprocess.fakes import write_checkpoint
from tests.inprocess.harness import Harness


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    # a short directory for the gateway: instances' unix sockets go below it (at most ~100 bytes)
    with tempfile.TemporaryDirectory(prefix="c2s-") as gateway_dir:
        running = Harness(tmp_path, Path(gateway_dir))
        yield running
        running.close()


@pytest.fixture
def checkpoint(tmp_path: Path) -> str:
    """A checkpoint (manifest only) of a cell ``greeting = greet(name)``."""
    return write_checkpoint(tmp_path / "greet.ckpt", {"name": "str"}, {"greeting": "str"})
