"""Build contexts: digests, atomic writes, and which consumer gets which files."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import checkpoint2svc
from checkpoint2svc.codegen.build_context import BuildContext, BuildContextError
from checkpoint2svc.codegen.client_package import render_client
from checkpoint2svc.codegen.proto import service_stubs
from checkpoint2svc.codegen.service_context import instance_context, render_service
from checkpoint2svc.errors import Checkpoint2SvcError
from tests.unit.test_client_codegen import EVERY_KIND

PACKAGE = Path(checkpoint2svc.__file__).parent


def test_the_digest_depends_on_paths_and_bytes_not_on_order() -> None:
    one = BuildContext({"b.txt": b"2", "a/x.py": b"1"})
    two = BuildContext({"a/x.py": b"1", "b.txt": b"2"})
    assert one == two
    assert one.digest == two.digest
    assert list(one.files) == ["a/x.py", "b.txt"]
    assert one.digest != BuildContext({"a/x.py": b"1", "b.txt": b"3"}).digest
    assert one.digest != BuildContext({"a/y.py": b"1", "b.txt": b"2"}).digest
    # a byte moved from a name to its content is another context
    assert BuildContext({"ab": b"c"}).digest != BuildContext({"a": b"bc"}).digest
    assert BuildContext().digest == BuildContext({}).digest


def test_a_context_is_immutable() -> None:
    context = BuildContext({"a": b"1"})
    with pytest.raises(TypeError):
        context.files["a"] = b"2"  # type: ignore[index]


@pytest.mark.parametrize("path", ["", "/etc/passwd", "../up", "a/../b", "./a", "a//b", "a\\b"])
def test_paths_must_be_relative_and_normalized(path: str) -> None:
    with pytest.raises(BuildContextError):
        BuildContext({path: b""})


def test_a_path_cannot_be_a_file_and_a_folder() -> None:
    with pytest.raises(BuildContextError, match="both a file and a folder"):
        BuildContext({"gen": b"", "gen/x_pb2.py": b""})


def test_under_and_merged() -> None:
    service = BuildContext({"server.py": b"s"})
    stubs = BuildContext({"x_pb2.py": b"p"})
    merged = service.merged(stubs.under("gen"), BuildContext({"server.py": b"s"}))
    assert dict(merged.files) == {"gen/x_pb2.py": b"p", "server.py": b"s"}
    with pytest.raises(BuildContextError, match=r"disagree on server\.py"):
        service.merged(BuildContext({"server.py": b"other"}))


def test_write_to_writes_exactly_the_files(tmp_path: Path) -> None:
    context = BuildContext({"a/b.txt": b"1", "c.txt": b"2"})
    context.write_to(tmp_path / "out")
    written = {
        p.relative_to(tmp_path / "out").as_posix(): p.read_bytes()
        for p in (tmp_path / "out").rglob("*")
        if p.is_file()
    }
    assert written == dict(context.files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_write_to_replaces_only_with_force(tmp_path: Path) -> None:
    out = tmp_path / "out"
    BuildContext({"old.txt": b"old"}).write_to(out)
    with pytest.raises(Checkpoint2SvcError, match="already exists; pass --force"):
        BuildContext({"new.txt": b"new"}).write_to(out)
    BuildContext({"new.txt": b"new"}).write_to(out, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]


def test_a_failed_write_leaves_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    BuildContext({"kept.txt": b"kept"}).write_to(out)
    written: list[Path] = []
    real_write = Path.write_bytes

    def failing_write(path: Path, data: bytes) -> int:
        if written:
            raise OSError("disk full")
        written.append(path)
        return real_write(path, data)

    monkeypatch.setattr(Path, "write_bytes", failing_write)
    with pytest.raises(OSError, match="disk full"):
        BuildContext({"a.txt": b"1", "b.txt": b"2"}).write_to(out, force=True)
    assert written  # the first file was written, into the staging directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging left
    assert [p.name for p in out.iterdir()] == ["kept.txt"]  # the old directory untouched
    with pytest.raises(OSError, match="disk full"):
        BuildContext({"a.txt": b"1", "b.txt": b"2"}).write_to(tmp_path / "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_the_service_context_has_no_client_and_no_checkpoint() -> None:
    service = render_service(EVERY_KIND)
    assert sorted(service.files) == [
        "client_every_kind.proto", "context.json", "openapi.json", "server.py",
    ]  # fmt: skip
    assert render_service(EVERY_KIND).digest == service.digest


def test_protoc_runs_once_for_the_service_and_its_client() -> None:
    stubs = service_stubs(EVERY_KIND)
    assert {"client_every_kind_pb2.py", "client_every_kind_pb2_grpc.py"} <= set(stubs.files)
    assert "checkpoint2svc_protos/v1/values_pb2.py" in stubs.files
    instance = instance_context(EVERY_KIND, stubs)
    assert set(instance.files) == set(render_service(EVERY_KIND).files) | {
        f"gen/{path}" for path in stubs.files
    }
    client = render_client(EVERY_KIND, stubs)
    assert {f"client_every_kind_client/_proto/{path}" for path in stubs.files} <= set(client.files)
    assert not any(path.startswith("client") for path in instance.files if "/" in path)


def _codegen_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
        found += [
            f"{path.name}:{node.lineno}" for n in names if n.startswith("checkpoint2svc.codegen")
        ]
    return found


def test_the_runtime_never_imports_codegen() -> None:
    """An instance serves what the caller rendered: not even a lazy import of the generator."""
    found = [
        hit
        for path in sorted((PACKAGE / "runtime").rglob("*.py"))
        for hit in _codegen_imports(path)
    ]
    assert found == []
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, checkpoint2svc.runtime.server; "
         "print(sorted(m for m in sys.modules if m.startswith('checkpoint2svc.codegen')))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert loaded.stdout.strip() == "[]"
