"""Aliases end to end: two versions of a notebook as two nodes (local backend) behind one
alias, through the real controller and HAProxy gateway."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from checkpoint2svc.checkpoint import Checkpoint, pin_notebook
from checkpoint2svc.control.api_client import stop_controller
from checkpoint2svc.control.models import NodeStatus
from tests.e2e.cli import assert_clean_failure
from tests.e2e.test_nodes import Controller, call_until, healthy_with, node_service_call

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("docker-images")]
EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def pin_version(root: Path, name: str, before: str, after: str) -> Checkpoint:
    """The greeter example with its target cell edited."""
    folder = root / name
    folder.mkdir()
    text = (EXAMPLES / "greeter.ipynb").read_text()
    assert before in text
    (folder / "greeter.ipynb").write_text(text.replace(before, after))
    return pin_notebook(
        folder / "greeter.ipynb", "greet", folder / "ckpt", progress=lambda _: None,
        warn=lambda _: None,
    )  # fmt: skip


@pytest.fixture
def two_versions(tmp_path: Path) -> Iterator[tuple[Controller, dict[str, Checkpoint]]]:
    versions = {
        "v1": pin_version(tmp_path, "v1", "greeter.greet(name)", "greeter.greet(name)"),
        "v2": pin_version(tmp_path, "v2", "greeter.greet(name)", "greeter.greet(name).upper()"),
        "v3": pin_version(tmp_path, "v3", "scaled = [scale(v) for v in values]",
                          "scaled = ','.join(str(scale(v)) for v in values)"),
    }  # fmt: skip
    running = Controller(tmp_path / "home")
    try:
        for name in ("v1", "v2"):
            done = running.cli(
                "node", "create", name, "--checkpoint", versions[name].path, "--backend", "local"
            )
            assert done.returncode == 0, done.stderr
        for name in ("v1", "v2"):
            running.wait(name, healthy_with(1))
        yield running, versions
    finally:
        stop_controller(running.home, everything=True)


def count_versions(controller: Controller, alias: str, requests: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    url = f"{controller.gateway}/datasphere/v1/aliases/{alias}:execute"
    with httpx.Client(timeout=30) as client:
        for _ in range(requests):
            response = client.post(url, json={"input": {"name": "ada", "values": [1]}})
            assert response.status_code == 200, response.text
            message = response.json()["output"]["message"]
            seen["v2" if message == "HELLO, ADA!" else "v1"] += 1
    return seen


def test_alias_weights_split_the_traffic_and_switch_without_failures(
    two_versions: tuple[Controller, dict[str, Checkpoint]], tmp_path: Path
) -> None:
    controller, _ = two_versions
    done = controller.cli("alias", "create", "greet", "--node", "v1=100", "--node", "v2=0")
    assert done.returncode == 0, done.stderr
    assert "v1=100%" in done.stdout
    for v1, v2 in ((100, 0), (50, 50), (0, 100)):
        update = controller.cli(
            "alias", "update", "greet", "--node", f"v1={v1}", "--node", f"v2={v2}"
        )
        assert update.returncode == 0, update.stderr
        seen = count_versions(controller, "greet", 1000)
        assert abs(seen["v1"] / 10 - v1) <= 5, (v1, v2, seen)

    # switch back and forth while a concurrent load runs: no request fails
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            call_until(
                stop, failures,
                lambda: client.post(
                    f"{controller.gateway}/datasphere/v1/aliases/greet:execute",
                    json={"input": {"name": "x", "values": []}},
                    headers={"x-request-id": "load"},
                ),
            )  # fmt: skip

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        changes = [[f"v1={v1}", f"v2={100 - v1}"] for v1 in (100, 0, 50, 100)]  # runtime API
        changes += [["v2=100"], ["v1=100"], ["v1=100", "v2=0"]]  # other nodes: a hitless reload
        for nodes in changes:
            flags = [flag for node in nodes for flag in ("--node", node)]
            assert controller.cli("alias", "update", "greet", *flags).returncode == 0, nodes
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures, failures[:3]

    # by header too, in both of DataSphere's forms
    for value in ("greet", "datasphere.user.greet"):
        response = httpx.post(
            f"{controller.gateway}/execute", headers={"x-node-alias": value},
            json={"input": {"name": "ada", "values": []}}, timeout=30,
        )  # fmt: skip
        assert response.json()["output"]["message"] == "Hello, ada!", value
    # and over gRPC, by metadata
    reply = node_service_call(
        controller.grpc_target, "greet", {"name": "Bo", "values": []}, tmp_path,
        metadata_key="x-node-alias",
    )  # fmt: skip
    assert reply["message"].lower() == "hello, bo!"
    # the instances count what came through the alias (the gateway tells them which alias), and
    # the gateway its own (they start again when it reloads, as it did above)
    metrics = controller.metrics(
        r'alias_grpc_codes_total\{alias_id="greet",code="OK",instance=',
        r'alias_http_codes_total\{alias_id="greet",code="200",instance=',
        r'alias_request_durations_bucket\{alias_id="greet",le="\+Inf"',
        r'gateway_alias_requests_total\{alias_id="greet"\} [1-9]',
    )
    served = re.findall(r'alias_requests_total\{alias_id="greet",instance="[^"]+"\} (\d+)', metrics)
    assert sum(map(int, served)) >= 3003, metrics


def test_an_incompatible_node_is_refused_with_the_difference(
    two_versions: tuple[Controller, dict[str, Checkpoint]],
) -> None:
    controller, versions = two_versions
    done = controller.cli(
        "node", "create", "v3", "--checkpoint", versions["v3"].path, "--backend", "local"
    )
    assert done.returncode == 0, done.stderr
    assert controller.cli("alias", "create", "greet", "--node", "v1=100").returncode == 0
    stderr = assert_clean_failure(
        controller.cli("alias", "update", "greet", "--node", "v1=50", "--node", "v3=50")
    )
    assert "node v3 is not compatible with alias greet" in stderr
    assert "~ output scaled: list[int] -> str" in stderr
    assert "--allow-incompatible" in stderr
    forced = controller.cli(
        "alias", "update", "greet", "--node", "v1=50", "--node", "v3=50", "--allow-incompatible"
    )
    assert forced.returncode == 0, forced.stderr


def test_deleting_a_node_an_alias_uses_is_refused_unless_forced(
    two_versions: tuple[Controller, dict[str, Checkpoint]],
) -> None:
    controller, _ = two_versions
    assert (
        controller.cli("alias", "create", "greet", "--node", "v1=70", "--node", "v2=30").returncode
        == 0
    )
    # a node without a healthy instance gives its share to the others
    assert controller.cli("node", "suspend", "v2").returncode == 0
    controller.wait("v2", lambda n: n.status == NodeStatus.SUSPENDED and not n.instances)
    assert count_versions(controller, "greet", 100) == {"v1": 100}
    assert controller.cli("node", "resume", "v2").returncode == 0
    controller.wait("v2", healthy_with(1))
    assert set(count_versions(controller, "greet", 100)) == {"v1", "v2"}

    stderr = assert_clean_failure(controller.cli("node", "delete", "v2"))
    assert "alias greet still points at node v2" in stderr
    assert controller.cli("node", "delete", "v2", "--force").returncode == 0
    alias = controller.api.alias("greet")
    assert alias.weights == (("v1", 100),)
    stderr = assert_clean_failure(
        controller.cli("alias", "create", "bad", "--node", "v1=60", "--node", "v2=30")
    )
    assert "no node named 'v2'" in stderr or "add up to 100" in stderr


def test_sticky_routing_keeps_a_client_on_one_instance_of_a_shared_node(
    tmp_path: Path,
) -> None:
    counter = pin_notebook(
        EXAMPLES / "counter.ipynb", "count", tmp_path / "counter.ckpt", mode="shared",
        progress=lambda _: None, warn=lambda _: None,
    )  # fmt: skip
    controller = Controller(tmp_path / "home")
    try:
        done = controller.cli(
            "node", "create", "counter", "--checkpoint", counter.path, "--backend", "local",
            "--min", "2", "--max", "2",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        controller.wait("counter", healthy_with(2))
        done = controller.cli(
            "alias", "create", "count", "--node", "counter=100", "--sticky-header", "x-session"
        )
        assert done.returncode == 0, done.stderr
        assert "sticky by header x-session" in done.stdout
        url = f"{controller.gateway}/datasphere/v1/aliases/count:execute"
        instances = {}
        for session in ("alice", "bob", "carol", "dave"):
            totals, answered = [], set()
            for _ in range(3):
                response = httpx.post(
                    url, json={"input": {"step": 1}}, headers={"x-session": session}, timeout=30
                )
                totals.append(response.json()["output"]["total"])
                answered.add(response.headers["x-node-instance"])
            assert len(answered) == 1, (session, answered)
            assert totals[1] == totals[0] + 1 and totals[2] == totals[0] + 2, (session, totals)
            instances[session] = answered.pop()
        for i in range(12):  # and different sessions spread over both instances
            response = httpx.post(
                url, json={"input": {"step": 1}}, headers={"x-session": f"s{i}"}, timeout=30
            )
            instances[f"s{i}"] = response.headers["x-node-instance"]
        assert len(set(instances.values())) == 2, instances
    finally:
        stop_controller(controller.home, everything=True)
