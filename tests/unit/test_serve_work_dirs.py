"""`serve CHECKPOINT` renders into a temp dir; a killed instance's dir is removed by the next."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from checkpoint2svc.runtime.server import (
    OWNER_FILE,
    WORK_DIR_PREFIX,
    remove_orphaned_work_dirs,
    work_dir,
)


def test_only_the_dirs_of_dead_owners_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen(["true"])  # a pid that no longer runs
    gone.wait()
    dirs = {}
    for name, owner in (("dead", str(gone.pid)), ("alive", str(os.getpid())), ("unknown", None)):
        directory = tmp_path / f"{WORK_DIR_PREFIX}{name}"
        (directory / "service").mkdir(parents=True)
        if owner is not None:
            (directory / OWNER_FILE).write_text(owner)
        dirs[name] = directory
    remove_orphaned_work_dirs()
    assert not dirs["dead"].exists()
    assert dirs["alive"].is_dir() and dirs["unknown"].is_dir()


def test_a_work_dir_is_owned_by_this_process_and_removed_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with work_dir() as directory:
        assert directory.parent == tmp_path and directory.name.startswith(WORK_DIR_PREFIX)
        assert (directory / OWNER_FILE).read_text() == str(os.getpid())
    assert list(tmp_path.iterdir()) == []
