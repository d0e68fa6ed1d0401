"""Pure logic of deploying: weights, version names, fingerprints, and the magic's default inputs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from checkpoint2svc.checkpoint.live import default_inputs, kernel_annotations
from checkpoint2svc.checkpoint.manifest import Manifest, TargetCell
from checkpoint2svc.control.deployer import (
    DeployError,
    DeploySettings,
    fingerprint,
    is_version_of,
    version_node_name,
)
from checkpoint2svc.control.models import rebalance, without_nodes
from checkpoint2svc.errors import SignatureError
from tests.unit.test_json_schema import make_manifest


@pytest.mark.parametrize(
    ("others", "share", "expected"),
    [
        ([("a", 100)], 90, [("a", 90)]),
        ([("a", 50), ("b", 50)], 90, [("a", 45), ("b", 45)]),
        ([("a", 70), ("b", 30)], 25, [("a", 18), ("b", 7)]),  # 17.5 / 7.5: one gets the rest
        ([("a", 1), ("b", 99)], 10, [("b", 10)]),  # a would get 0: left out
        ([("a", 0), ("b", 0)], 100, [("a", 50), ("b", 50)]),
        ([("a", 100)], 0, []),
    ],
)
def test_rebalance_keeps_proportions_and_adds_up(
    others: list[tuple[str, int]], share: int, expected: list[tuple[str, int]]
) -> None:
    result = list(rebalance(others, share))
    assert result == expected
    assert sum(w for _, w in result) == (share if result else 0)


@pytest.mark.parametrize(
    ("weights", "leaving", "expected"),
    [
        ((("a", 70), ("b", 20), ("c", 10)), {"a"}, (("b", 67), ("c", 33))),
        ((("a", 50), ("b", 50), ("c", 0)), {"a"}, (("b", 100), ("c", 0))),  # c stays, at 0
        ((("a", 100), ("b", 0), ("c", 0)), {"a"}, (("b", 50), ("c", 50))),  # all 0: equal
        ((("a", 100), ("b", 0), ("c", 0), ("d", 0)), {"a"}, (("b", 34), ("c", 33), ("d", 33))),
        ((("a", 60), ("b", 40)), {"a", "b"}, ()),
    ],
)
def test_nodes_leaving_an_alias_give_their_share_to_the_others(
    weights: tuple[tuple[str, int], ...], leaving: set[str], expected: tuple[tuple[str, int], ...]
) -> None:
    assert without_nodes(weights, leaving) == expected


@pytest.mark.parametrize(
    ("alias", "summary"),
    [
        (None, ["node greet: Healthy (created node greet)",
                "  REST: http://127.0.0.1:8090/datasphere/v1/nodes/greet:execute",
                "  gRPC: 127.0.0.1:8090 (metadata x-node-id: greet)"]),
        ("hi", ["alias hi -> node greet: Healthy (created node greet)",
                "  REST: http://127.0.0.1:8090/datasphere/v1/aliases/hi:execute",
                "  gRPC: 127.0.0.1:8090 (metadata x-node-alias: hi)"]),
    ],
)  # fmt: skip
def test_a_deployment_says_where_it_answers_as_the_api_does(
    alias: str | None, summary: list[str]
) -> None:
    from checkpoint2svc.control.deployer import Deployment
    from checkpoint2svc.control.models import NodeStatus
    from checkpoint2svc.control.views import Endpoint

    deployment = Deployment("greet", "greet", alias, manifest(), 8090, NodeStatus.HEALTHY)
    deployment.actions.append("created node greet")
    assert deployment.summary() == summary
    kind, name = ("alias", alias) if alias else ("node", "greet")
    assert deployment.endpoint == Endpoint.of(kind, name, 8090)
    assert deployment.rest_url == summary[1].removeprefix("  REST: ")
    assert deployment.grpc_target == "127.0.0.1:8090"
    assert deployment.grpc_metadata == (("x-node-alias", "hi") if alias else ("x-node-id", "greet"))


def manifest() -> Manifest:
    return make_manifest("greet")


def test_fingerprint_ignores_when_and_where_but_not_what() -> None:
    base = manifest()
    moved = replace(base, created="2030-01-01T00:00:00+00:00", notebook="other.ipynb",
                    notebook_sha256="0" * 64,
                    cell=replace(base.cell, id="x", index=42))  # fmt: skip
    assert fingerprint(moved) == fingerprint(base)
    edited = replace(base, cell=TargetCell("", 0, "y = 2", "y = 2"))
    assert fingerprint(edited) != fingerprint(base)
    assert fingerprint(replace(base, mode="shared")) != fingerprint(base)


def test_version_nodes_are_named_after_the_deploy_and_the_backend() -> None:
    node = version_node_name("greet", manifest(), "docker")
    assert is_version_of(node, "greet") and not is_version_of(node, "gree")
    assert version_node_name("greet", manifest(), "local") != node
    assert not is_version_of("greet-v2", "greet") and not is_version_of("greet", "greet")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (DeploySettings("Greet"), "name 'Greet' is invalid"),
        (DeploySettings("g" * 60, alias="a"), "1-54 lowercase"),
        (DeploySettings("g", alias="A B"), "alias 'A B' is invalid"),
        (DeploySettings("g", weight=101), "--weight 101"),
        (DeploySettings("g", min_instances=3, max_instances=2), "--min 3 is greater"),
    ],
)
def test_settings_name_what_is_wrong(settings: DeploySettings, message: str) -> None:
    with pytest.raises(DeployError, match=message):
        settings.validate()


def test_kernel_annotations_take_the_latest_of_each_name() -> None:
    history = ["x: int = 1\nimport re", "%matplotlib inline", "x: float = 2.0\ny: list[str] = []"]
    assert kernel_annotations(history) == "x: float\ny: list[str]\n"


def test_default_inputs_prefer_annotated_data_then_plain_data() -> None:
    namespace = {"text": "a b", "STOP": {"a"}, "model": object(), "count": 0, "n": 3}
    cell = "words = [w for w in text.split() if w not in STOP][:n]\ncount += 1"
    assert default_inputs(cell, namespace, {"text"}) == ["text"]
    # nothing annotated: data it reads, without CONSTANTS and names the cell updates itself
    assert default_inputs(cell, namespace, set()) == ["text", "n"]
    with pytest.raises(SignatureError, match="--inputs"):
        default_inputs("y = model", namespace, set())


def test_the_magic_line_names_a_bad_variable_as_a_usage_error() -> None:
    from IPython.core.error import UsageError

    from checkpoint2svc.magic import _deploy_parser

    parsed = _deploy_parser().parse_args(["words", "--inputs", "text, limit"])
    assert parsed.inputs == ["text", "limit"]
    with pytest.raises(UsageError, match="first-name is not a Python variable name"):
        _deploy_parser().parse_args(["words", "--inputs", "first-name"])
    with pytest.raises(UsageError, match="class is not a Python variable name"):
        _deploy_parser().parse_args(["words", "--outputs", "class"])
