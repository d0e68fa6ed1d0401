"""`checkpoint2svc generate`: golden files for one checkpoint, and determinism.

Regenerate the golden files after an intended change with
``UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/e2e/test_generate.py`` and review the diff.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from checkpoint2svc.checkpoint import Checkpoint
from checkpoint2svc.codegen.service_context import generate

pytestmark = pytest.mark.slow

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "greet"
# protoc's output and the copied checkpoint are not ours to review, and the client's _wire/ is a
# copy of checkpoint2svc's modules (tests/unit/test_client_wire_copies.py); the rest is.
NOT_GOLDEN = ("gen", "checkpoint", "_proto", "_wire")


# The client requires at least the grpcio and protobuf its stubs were compiled for: the versions
# of this machine's grpcio-tools, not ours to review either.
TOOLCHAIN_BOUND = re.compile(rb"\b(grpcio|protobuf)>=[0-9.]+")


def reviewed_files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): TOOLCHAIN_BOUND.sub(rb"\1>=TOOLCHAIN", path.read_bytes())
        for path in sorted(root.rglob("*"))
        if path.is_file()
        and not set(path.relative_to(root).parts) & set(NOT_GOLDEN)
        and "__pycache__" not in path.parts
    }


def all_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_files_match_the_golden_files(
    pinned: dict[str, Checkpoint], tmp_path: Path
) -> None:
    generate(pinned["greeter"], tmp_path / "svc")
    produced = reviewed_files(tmp_path / "svc")
    if os.environ.get("UPDATE_GOLDEN"):
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for name, data in produced.items():
            (GOLDEN / name).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / name).write_bytes(data)
    expected = reviewed_files(GOLDEN)
    assert sorted(produced) == sorted(expected)
    for name, data in produced.items():
        assert data.decode() == expected[name].decode(), f"{name} differs from tests/golden"


def test_generation_is_deterministic(pinned: dict[str, Checkpoint], tmp_path: Path) -> None:
    generate(pinned["image"], tmp_path / "one")
    generate(pinned["image"], tmp_path / "two")
    one, two = all_files(tmp_path / "one"), all_files(tmp_path / "two")
    assert one.keys() == two.keys()
    assert [name for name in one if one[name] != two[name]] == []


def test_generated_python_passes_ruff(pinned: dict[str, Checkpoint], tmp_path: Path) -> None:
    generate(pinned["table"], tmp_path / "svc")
    ours = [str(p) for p in (tmp_path / "svc").rglob("*.py") if not p.name.endswith(("_pb2.py",
            "_pb2_grpc.py"))]  # fmt: skip
    config = Path(__file__).resolve().parents[2] / "pyproject.toml"
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--config", str(config), "--no-cache", *ours],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_generate_cli_refuses_to_overwrite_and_names_the_fix(
    pinned: dict[str, Checkpoint], tmp_path: Path
) -> None:
    out = tmp_path / "svc"
    out.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "checkpoint2svc", "generate", str(pinned["greeter"].path),
         "-o", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "already exists; pass --force" in done.stderr
    assert list(tmp_path.iterdir()) == [out]
