"""`checkpoint2svc deploy` / `undeploy` with the real CLI, a real controller and gateway: one
command from notebook to endpoint, idempotent reruns, rollouts behind an alias under load."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from checkpoint2svc.control.api_client import stop_controller
from tests.e2e.cli import assert_clean_failure, cli
from tests.e2e.test_nodes import Controller

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("docker-images")]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    running = Controller(tmp_path / "home")
    try:
        yield running
    finally:
        stop_controller(running.home, everything=True)


def greeter_copy(tmp_path: Path, scale: int = 3) -> Path:
    """examples/greeter.ipynb with its SCALE constant set to ``scale`` (an edit of the state)."""
    notebook = tmp_path / "greeter.ipynb"
    text = (EXAMPLES / "greeter.ipynb").read_text(encoding="utf-8")
    notebook.write_text(text.replace("SCALE = 3", f"SCALE = {scale}"), encoding="utf-8")
    return notebook


def deploy(controller: Controller, *args: object) -> str:
    done = controller.cli("deploy", *args, "--local")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return str(done.stdout)


def alias_nodes(controller: Controller, alias: str) -> dict[str, int]:
    view = controller.api.alias(alias)
    return {n.node: n.weight for n in view.nodes}


class Load:
    """Four threads calling an endpoint until stopped; every status code is counted."""

    def __init__(self, url: str, body: dict[str, Any]) -> None:
        self.codes: Counter[int | str] = Counter()
        self.outputs: Counter[str] = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(url, body)) for _ in range(4)]

    def _run(self, url: str, body: dict[str, Any]) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(url, json=body)
                except httpx.TransportError as exc:
                    self.codes[type(exc).__name__] += 1
                    continue
                self.codes[response.status_code] += 1
                if response.status_code == 200:
                    self.outputs[json.dumps(response.json()["output"]["scaled"])] += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def test_deploy_behind_an_alias_is_idempotent_and_rolls_out_without_failures(
    controller: Controller, tmp_path: Path
) -> None:
    notebook = greeter_copy(tmp_path)
    first = deploy(controller, notebook, "--cell", "greet", "--name", "greet", "--alias", "hi")
    node = re.search(r"created node (greet-[0-9a-f]{8})", first)
    assert node is not None and "created alias hi" in first, first
    url = f"{controller.gateway}/datasphere/v1/aliases/hi:execute"
    body = {"input": {"name": "Bo", "values": [1]}}
    assert httpx.post(url, json=body, timeout=30).json()["output"] == {
        "message": "Hello, Bo!",
        "scaled": [3],
    }
    instances = [i.id for i in controller.node(node.group(1)).instances]

    again = deploy(controller, notebook, "--cell", "greet", "--name", "greet", "--alias", "hi")
    assert "nothing changed" in again, again
    assert [i.id for i in controller.node(node.group(1)).instances] == instances

    greeter_copy(tmp_path, scale=5)
    with Load(url, body) as load:
        rolled = deploy(controller, notebook, "--cell", "greet", "--name", "greet", "--alias", "hi")
    new = re.search(r"created node (greet-[0-9a-f]{8})", rolled)
    assert new is not None and new.group(1) != node.group(1), rolled
    assert f"retired node {node.group(1)}" in rolled, rolled
    assert set(load.codes) == {200}, load.codes  # no request failed during the switch
    assert alias_nodes(controller, "hi") == {new.group(1): 100}
    assert [n.name for n in controller.api.nodes()] == [new.group(1)]
    assert httpx.post(url, json=body, timeout=30).json()["output"]["scaled"] == [5]
    assert len(list((controller.home.root / "checkpoints").iterdir())) == 1  # old one pruned

    greeter_copy(tmp_path, scale=7)  # a canary: 10 % to the new version, the rest stays
    canary = deploy(controller, notebook, "--cell", "greet", "--name", "greet", "--alias", "hi",
                    "--weight", "10")  # fmt: skip
    canary_node = re.search(r"created node (greet-[0-9a-f]{8})", canary)
    assert canary_node is not None, canary
    assert alias_nodes(controller, "hi") == {canary_node.group(1): 10, new.group(1): 90}
    seen = Counter(
        json.dumps(httpx.post(url, json=body, timeout=30).json()["output"]["scaled"])
        for _ in range(200)
    )
    assert seen.keys() == {"[7]", "[5]"} and 5 <= seen["[7]"] <= 40, seen
    promoted = deploy(controller, notebook, "--cell", "greet", "--name", "greet", "--alias", "hi")
    assert f"retired node {new.group(1)}" in promoted, promoted
    assert alias_nodes(controller, "hi") == {canary_node.group(1): 100}

    removed = controller.cli("undeploy", "greet")
    assert removed.returncode == 0, removed.stderr
    assert "deleted alias hi" in removed.stdout
    assert controller.api.nodes() == []
    assert list((controller.home.root / "checkpoints").iterdir()) == []


def test_deploy_without_alias_updates_the_node_in_place(
    controller: Controller, tmp_path: Path
) -> None:
    notebook = greeter_copy(tmp_path)
    deploy(controller, notebook, "--cell", "greet", "--name", "greeter")
    url = f"{controller.gateway}/datasphere/v1/nodes/greeter:execute"
    body = {"input": {"name": "Bo", "values": [2]}}
    greeter_copy(tmp_path, scale=10)
    with Load(url, body) as load:
        rolled = deploy(controller, notebook, "--cell", "greet", "--name", "greeter")
    assert "rolled out a new version to node greeter" in rolled, rolled
    assert set(load.codes) == {200}, load.codes
    assert httpx.post(url, json=body, timeout=30).json()["output"]["scaled"] == [20]
    rescaled = deploy(controller, notebook, "--cell", "greet", "--name", "greeter", "--min", "2")
    assert "rescaled node greeter to 2-2 instances" in rescaled, rescaled
    assert controller.node("greeter").healthy_instances == 2


def test_an_incompatible_version_is_refused_and_nothing_changes(
    controller: Controller, tmp_path: Path
) -> None:
    notebook = greeter_copy(tmp_path)
    deploy(controller, notebook, "--cell", "greet", "--name", "greet", "--alias", "hi")
    before = alias_nodes(controller, "hi")
    text = notebook.read_text(encoding="utf-8")
    notebook.write_text(text.replace("scaled = [scale(v) for v in values]",
                                     "scaled = str([scale(v) for v in values])"),
                        encoding="utf-8")  # fmt: skip
    refused = controller.cli(
        "deploy", notebook, "--cell", "greet", "--name", "greet", "--alias", "hi", "--local"
    )
    stderr = assert_clean_failure(refused)
    assert "~ output scaled: list[int] -> str" in stderr and "--allow-incompatible" in stderr
    assert alias_nodes(controller, "hi") == before
    assert [n.name for n in controller.api.nodes()] == list(before)


def test_deploy_reports_bad_input_clearly(controller: Controller, tmp_path: Path) -> None:
    notebook = greeter_copy(tmp_path)
    for args, expected in (
        (("--name", "Bad_Name"), "name 'Bad_Name' is invalid"),
        (("--name", "ok", "--weight", "0"), "--weight 0 is not a percentage"),
        (("--name", "ok", "--min", "3", "--max", "2"), "--min 3 is greater than --max 2"),
    ):
        done = controller.cli("deploy", notebook, "--cell", "greet", *args, "--local")
        assert expected in assert_clean_failure(done)
    missing = controller.cli("deploy", tmp_path / "nope.ipynb", "--cell", "x", "--name", "x")
    assert "nope.ipynb" in assert_clean_failure(missing)
    nothing = controller.cli("undeploy", "ghost")
    assert "nothing is deployed as 'ghost'" in assert_clean_failure(nothing)
    assert controller.api.nodes() == []
    stopped = cli("undeploy", "ghost", "--home", tmp_path / "no-controller")
    assert "checkpoint2svc up --home" in assert_clean_failure(stopped)
    fresh = tmp_path / "fresh-home"
    for args, expected in (
        ((tmp_path / "nope.ipynb", "--cell", "x"), "no such notebook or checkpoint directory"),
        ((notebook,), "--cell is required"),
        ((notebook, "--cell", "greet", "--inputs", "first-name"), "is not a Python variable"),
    ):
        done = cli("deploy", *args, "--name", "x", "--home", fresh)
        assert expected in assert_clean_failure(done)
    assert not fresh.exists(), "a controller was started for a deploy that could not happen"


def documented_commands() -> list[list[str]]:
    """The deploy commands of examples/README.md, as a newcomer would copy them."""
    text = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    return [
        shlex.split(line) for line in text.splitlines() if line.startswith("checkpoint2svc deploy ")
    ]


@pytest.mark.parametrize("command", documented_commands(), ids=lambda c: c[2])
def test_every_example_deploys_with_its_documented_command(
    controller: Controller, tmp_path: Path, command: list[str]
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES, repo / "examples")
    done = cli(*command[1:], "--local", "--home", controller.home.root, cwd=repo)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    name = command[command.index("--name") + 1]
    assert f"node {name}: Healthy" in done.stdout, done.stdout
    checkpoint = next((controller.home.root / "checkpoints").iterdir())
    example = json.loads((checkpoint / "manifest.json").read_text(encoding="utf-8"))
    inputs = {v["name"]: v["example"] for v in example["inputs"]}
    response = controller.execute(name, inputs)
    assert response.status_code == 200, response.text
    outputs = {v["name"] for v in example["outputs"]}
    assert set(response.json()["output"]) == outputs
