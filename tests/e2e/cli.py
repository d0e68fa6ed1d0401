"""Run the real ``checkpoint2svc`` command in a subprocess, and write small notebooks for it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat

Cells = list[tuple[list[str], str]]

# A frame of the package's own code in stderr means it crashed instead of reporting an error.
PACKAGE_FRAME = re.compile(r'checkpoint2svc[/\\][\w/\\]+\.py", line \d+')


def write_notebook(path: Path, cells: Cells) -> Path:
    """A notebook of code cells, each given as (tags, source)."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(source, metadata={"tags": tags} if tags else {})
        for tags, source in cells
    ]
    nbformat.write(notebook, str(path))
    return path


def cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "checkpoint2svc", *(str(a) for a in args)],
        capture_output=True, text=True, timeout=300, check=False, cwd=cwd,
    )  # fmt: skip


def assert_clean_failure(done: subprocess.CompletedProcess[str]) -> str:
    """Non-zero exit, one `error:` line, no crash of the package itself; returns stderr."""
    assert done.returncode != 0, f"expected a failure\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "error: " in done.stderr, done.stderr
    assert not PACKAGE_FRAME.search(done.stderr), f"the package crashed:\n{done.stderr}"
    return done.stderr
