"""`checkpoint2svc client NAME -o DIR` end to end: the client package of a node and of an alias
(local backend) calls them through the real HAProxy gateway, as the command's printed example
says; unknown names, existing directories and image nodes are refused."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from checkpoint2svc.checkpoint import Checkpoint, pin_notebook
from checkpoint2svc.cli import controller_commands, main
from checkpoint2svc.codegen.service_context import generate, write_client_package
from checkpoint2svc.control.api_client import ControllerError, stop_controller
from checkpoint2svc.control.home import ControllerInfo
from checkpoint2svc.control.models import NodeSpec
from checkpoint2svc.control.views import AliasNode, AliasView, NodeView
from checkpoint2svc.errors import Checkpoint2SvcError
from tests.e2e.cli import assert_clean_failure
from tests.e2e.test_generated_clients import as_pinned, example_inputs
from tests.e2e.test_nodes import Controller, healthy_with
from tests.generated_client import imported_package

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("docker-images")]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PACKAGE = "greet_client"
"""The greeter example pinned at its cell tagged ``greet`` is the service ``greet``."""


@pytest.fixture(scope="module")
def greeter(tmp_path_factory: pytest.TempPathFactory) -> Checkpoint:
    return pin_notebook(
        EXAMPLES / "greeter.ipynb", "greet", tmp_path_factory.mktemp("pinned") / "greeter.ckpt",
        progress=lambda _: None, warn=lambda _: None,
    )  # fmt: skip


@pytest.fixture(scope="module")
def controller(
    greeter: Checkpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Controller]:
    """A controller with the node ``greeter`` (local backend) and the alias ``greet`` over it."""
    running = Controller(tmp_path_factory.mktemp("client-command") / "home")
    try:
        done = running.cli(
            "node", "create", "greeter", "--checkpoint", greeter.path, "--backend", "local"
        )
        assert done.returncode == 0, done.stderr
        running.wait("greeter", healthy_with(1))
        done = running.cli("alias", "create", "greet", "--node", "greeter=100")
        assert done.returncode == 0, done.stderr
        yield running
    finally:
        stop_controller(running.home, everything=True)


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), bytecode caches left out."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def printed_program(stdout: str) -> str:
    """The example program the command prints, indented after its `through the gateway` line."""
    lines = stdout.split("through the gateway", 1)[1].splitlines()[1:]
    return textwrap.dedent("\n".join(lines))


@pytest.mark.parametrize(("name", "routing"), [("greeter", "node_id"), ("greet", "alias")])
def test_the_client_of_a_node_or_alias_calls_it_through_the_gateway(
    controller: Controller, greeter: Checkpoint, tmp_path: Path, name: str, routing: str
) -> None:
    out = tmp_path / "client"
    done = controller.cli("client", name, "-o", out)
    assert done.returncode == 0, done.stderr
    kind = "node greeter" if routing == "node_id" else "alias greet (its node greeter)"
    assert f"wrote {PACKAGE} (distribution greet-client), the typed client of {kind}" in done.stdout
    assert f"pip install {out}\n" in done.stdout
    generate(greeter, tmp_path / "svc")  # the same package as `generate` writes into client/
    assert files(out) == files(tmp_path / "svc" / "client")

    manifest = greeter.manifest
    pinned = {v.name: v.example for v in manifest.outputs}
    outputs = []
    with imported_package(out, PACKAGE) as package:
        for client_class, address in (
            ("RestClient", controller.gateway),
            ("GrpcClient", controller.grpc_target),
        ):
            with getattr(package, client_class)(address, **{routing: name}) as client:
                output = client.execute(**example_inputs(manifest))
            assert as_pinned(manifest, output) == pinned, client_class
            outputs.append(repr(output))

    # the printed example runs as printed, with only the package's folder on the import path
    program = printed_program(done.stdout)
    assert f'RestClient("{controller.gateway}", {routing}="{name}")' in program
    assert f'GrpcClient("{controller.grpc_target}", {routing}="{name}")' in program
    run = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False,
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(out)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == outputs


def test_an_unknown_name_is_refused(controller: Controller, tmp_path: Path) -> None:
    out = tmp_path / "client"
    stderr = assert_clean_failure(controller.cli("client", "nope", "-o", out))
    assert "'nope'" in stderr
    assert "checkpoint2svc node list" in stderr and "checkpoint2svc alias list" in stderr
    assert not out.exists()


def test_an_existing_directory_is_replaced_only_with_force(
    controller: Controller, tmp_path: Path
) -> None:
    out = tmp_path / "client"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    stderr = assert_clean_failure(controller.cli("client", "greeter", "-o", out))
    assert "--force" in stderr
    assert (out / "mine.txt").read_text() == "keep me"

    done = controller.cli("client", "greeter", "-o", out, "--force")
    assert done.returncode == 0, done.stderr
    assert not (out / "mine.txt").exists()
    assert (out / "pyproject.toml").is_file() and (out / PACKAGE / "__init__.py").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["client"]  # no staging left behind


def test_force_never_replaces_the_current_directory(
    greeter: Checkpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path / "work")
    for out in (Path("."), Path("..")):
        with pytest.raises(Checkpoint2SvcError, match="holds the current directory"):
            write_client_package(greeter, out, force=True)
    assert (tmp_path / "work" / "notes.txt").read_text() == "mine"


class ImageNodeApi:
    """A controller's API as `client` sees it, with a node from an image and an alias over it."""

    info = ControllerInfo(pid=1, api_port=1, gateway_port=8090, controller_id="fake")
    web = NodeView.model_construct(name="web", spec=NodeSpec(name="web", image="nginx:1.25"))
    front = AliasView.model_construct(name="front", nodes=(AliasNode(node="web", weight=100),))

    def find_node(self, name: str) -> NodeView | None:
        return self.web if name == "web" else None

    def node(self, name: str) -> NodeView:
        if name != "web":
            raise ControllerError(404, f"no node {name}")
        return self.web

    def find_alias(self, name: str) -> AliasView | None:
        return self.front if name == "front" else None


@pytest.mark.parametrize(
    ("name", "what"), [("web", "node web"), ("front", "alias front (its node web)")]
)
def test_an_image_node_is_refused(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    name: str,
    what: str,
) -> None:
    monkeypatch.setattr(controller_commands, "controller_client", lambda args: ImageNodeApi())
    assert main(["client", name, "-o", str(tmp_path / "client")]) == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith(f"error: {what} runs the image nginx:1.25, not a checkpoint"), stderr
    assert "`checkpoint2svc generate CKPT -o DIR` writes it to DIR/client" in stderr
    assert not (tmp_path / "client").exists()
