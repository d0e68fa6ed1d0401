"""The README's newcomer path, run as written: every ``sh`` block of "Get started" in order in one
shell, in a copy of the repository (a new virtual environment, the default ports, a real
engine), and every ``ipython`` block of "From a notebook" as the cells of a real notebook.
A ``text`` block after a block is its expected output: its lines must appear in that order,
``…`` standing for any text within a line (or, alone on a line, for any lines)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.test_magic import errors_of, run_notebook, text_of
from tests.e2e.test_nodes import remove_node_images

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("docker-images")]

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PORTS = (7070, 8090)  # the defaults the README's commands use
MARKER = "@@checkpoint2svc-readme-block-{}@@"


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    expected: str | None
    """The ``text`` block that follows it, if any."""


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def blocks(text: str, language: str) -> list[Block]:
    found = re.findall(r"^```(\w*)\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
    result = []
    for n, (lang, code) in enumerate(found):
        if lang != language:
            continue
        follows = found[n + 1] if n + 1 < len(found) else None
        expected = follows[1] if follows is not None and follows[0] == "text" else None
        result.append(Block(lang, code, expected))
    return result


def assert_shows(expected: str, actual: str, what: str) -> None:
    """Each expected line is found after the previous one (``…``: anything within a line)."""
    position = 0
    for line in expected.splitlines():
        if not line.strip() or line.strip() == "…":
            continue
        pattern = ".*?".join(re.escape(part) for part in line.split("…"))
        match = re.compile(pattern).search(actual, position)
        assert match is not None, f"{what}: expected the line\n  {line}\nin:\n{actual[position:]}"
        position = match.end()


def copy_of_repository(target: Path) -> Path:
    """The files a clone would have, uncommitted ones too (no virtual environment, no caches)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=False,
    )  # fmt: skip
    if listed.returncode == 0 and listed.stdout:
        for name in listed.stdout.decode().split("\0"):
            if name and (REPO / name).is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, target / name)
    else:
        ignore = shutil.ignore_patterns(".venv", "build", ".git", "*_cache", "__pycache__")
        shutil.copytree(REPO, target, ignore=ignore, dirs_exist_ok=True)
    return target


def ports_free() -> None:
    for port in PORTS:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                pytest.fail(
                    f"port {port} is in use; the README's commands use the default ports 7070 "
                    "and 8090 (stop your controller with `checkpoint2svc down` to run this test)"
                )


def test_readme_has_the_newcomer_path() -> None:
    text = README.read_text(encoding="utf-8")
    commands = "\n".join(b.code for b in blocks(section(text, "Get started"), "sh"))
    steps = ("pip install", "checkpoint2svc up", "checkpoint2svc deploy", "curl ",
             "checkpoint2svc grpc", "checkpoint2svc client", "undeploy", "down")  # fmt: skip
    for step in steps:
        assert step in commands, f"the README's path lacks `{step}`"
    assert blocks(section(text, "From a notebook"), "ipython")


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    try:
        yield home
    finally:
        subprocess.run(
            [sys.executable, "-m", "checkpoint2svc", "down", "--all", "--home", str(home)],
            capture_output=True, timeout=300, check=False,
        )  # fmt: skip
        remove_node_images("iris-", "words")


def test_every_command_of_the_readme_path_works_as_shown(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports_free()
    steps = blocks(section(README.read_text(encoding="utf-8"), "Get started"), "sh")
    script = ["exec 2>&1", "set -euo pipefail"]
    for n, block in enumerate(steps):
        script += [f"printf '\\n{MARKER.format(n)}\\n'", block.code]
    repo = copy_of_repository(tmp_path / "repo")
    environment = {**os.environ, "CHECKPOINT2SVC_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    environment.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)], cwd=repo, env=environment, capture_output=True,
        text=True, timeout=1800, check=False,
    )  # fmt: skip
    parts = re.split(r"\n@@checkpoint2svc-readme-block-(\d+)@@\n", done.stdout)
    outputs = {int(parts[i]): parts[i + 1] for i in range(1, len(parts) - 1, 2)}
    last = max(outputs, default=-1)
    assert done.returncode == 0, (
        f"README block {last} failed (exit {done.returncode}):\n{steps[last].code}\n"
        f"--- its output:\n{outputs.get(last, done.stdout)}"
    )
    assert last == len(steps) - 1
    for n, block in enumerate(steps):
        if block.expected is not None:
            assert_shows(block.expected, outputs[n], f"README block {n} ({block.code.strip()})")

    cells = blocks(section(README.read_text(encoding="utf-8"), "From a notebook"), "ipython")
    monkeypatch.setenv("CHECKPOINT2SVC_HOME", str(home))  # the kernel's default home
    executed = run_notebook([cell.code.rstrip("\n") for cell in cells], repo)
    for cell, block in zip(executed, cells, strict=True):
        assert not errors_of(cell), (block.code, errors_of(cell))
        if block.expected is not None:
            assert_shows(block.expected, text_of(cell), f"notebook cell `{block.code.strip()}`")
