"""The rules behind the controller's routes, without HTTP: nodes leaving aliases, the alias
compatibility guard, patches; and the API's contract (its /openapi.json)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checkpoint2svc.control import operations
from checkpoint2svc.control.controller import Controller
from checkpoint2svc.control.models import AliasSpec, HealthCheck, NodeSpec, NodeSpecError
from checkpoint2svc.control.operations import ConflictError
from checkpoint2svc.control.store import Store
from checkpoint2svc.control.views import AliasCreate, AliasNode, AliasPatch, NodePatch
from checkpoint2svc.gateway.haproxy import Gateway
from tests.inprocess.fakes import write_checkpoint


@pytest.fixture
def controller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Controller]:
    store = Store(tmp_path / "c.db")
    running = Controller(tmp_path, store, "c", Gateway(tmp_path / "gw"), 8090, lambda s, p: "")
    monkeypatch.setattr(running, "apply_gateway", lambda: None)
    yield running
    store.close()


def node(controller: Controller, tmp_path: Path, name: str, inputs: dict[str, str]) -> None:
    checkpoint = write_checkpoint(tmp_path / name, inputs, {"greeting": "str"})
    operations.create_node(controller, NodeSpec(name, checkpoint=checkpoint, backend="local"))


def alias(name: str, *weights: tuple[str, int]) -> AliasCreate:
    return AliasCreate(name=name, nodes=tuple(AliasNode(node=n, weight=w) for n, w in weights))


def test_a_forced_delete_gives_the_nodes_share_to_the_others_by_largest_remainder(
    controller: Controller, tmp_path: Path
) -> None:
    for name in ("a", "b", "c"):
        node(controller, tmp_path, name, {"name": "str"})
    operations.create_alias(controller, alias("greet", ("a", 70), ("b", 20), ("c", 10)))
    operations.create_alias(controller, alias("solo", ("a", 100)))
    with pytest.raises(ConflictError, match="alias greet, solo still points at node a"):
        operations.delete_node(controller, "a")
    operations.delete_node(controller, "a", force=True)
    assert controller.store.alias("greet").nodes == (("b", 67), ("c", 33))
    assert [a.name for a in controller.store.aliases()] == ["greet"]  # solo had only a
    assert controller.store.node("a").deleting


def test_the_guard_compares_types_and_names_each_difference(
    controller: Controller, tmp_path: Path
) -> None:
    node(controller, tmp_path, "v1", {"name": "str"})
    node(controller, tmp_path, "v2", {"name": "int", "extra": "str"})
    operations.create_alias(controller, alias("greet", ("v1", 100)))
    switch = AliasPatch(nodes=(AliasNode(node="v2", weight=100),))
    with pytest.raises(ConflictError) as refused:
        operations.update_alias(controller, "greet", switch)
    assert str(refused.value).splitlines() == [
        "node v2 is not compatible with alias greet (served by v1):",
        "+ new input extra: str (clients do not send it)",
        "~ input name: str -> int",
        "pass --allow-incompatible to point the alias at it anyway",
    ]
    allowed = switch.model_copy(update={"allow_incompatible": True})
    assert operations.update_alias(controller, "greet", allowed).nodes == (("v2", 100),)


def test_a_patch_changes_only_what_it_names(controller: Controller, tmp_path: Path) -> None:
    node(controller, tmp_path, "a", {"name": "str"})
    patch = NodePatch(max_instances=3, health=HealthCheck(path="/up"))
    row = operations.update_node(controller, "a", patch)
    assert (row.spec.max_instances, row.spec.health.path, row.spec.port) == (3, "/up", 8080)
    assert controller.store.events("a")[-1].message == "node updated: health, max_instances"
    with pytest.raises(NodeSpecError, match="--min 5 is greater than --max 3"):
        operations.update_node(controller, "a", NodePatch(min_instances=5))


def test_every_node_setting_can_be_patched() -> None:
    settings = {f.name for f in dataclasses.fields(NodeSpec)} - {"name"}
    assert set(NodePatch.model_fields) == settings, "a NodeSpec field is missing in NodePatch"


def test_an_alias_patch_keeps_what_it_leaves_out() -> None:
    current = AliasSpec("greet", (("a", 100),), {"team": "x"}, sticky_header="user")
    changed = AliasPatch(sticky_header="").applied_to(current)
    assert changed == dataclasses.replace(current, sticky_header="")


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if schema.get("type") == "array":
        return _resolve(spec, schema["items"])
    return schema


def test_the_openapi_document_is_valid_and_names_every_field(controller: Controller) -> None:
    from openapi_spec_validator import validate

    from checkpoint2svc.control.api import create_api

    spec = create_api(controller, "token").openapi()
    validate(spec)
    bodies = 0
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            content = operation.get("requestBody", {}).get("content", {})
            if content:
                bodies += 1
                assert _resolve(spec, content["application/json"]["schema"])["properties"], where
            for status, answer in operation["responses"].items():
                for media, described in answer.get("content", {}).items():
                    schema = _resolve(spec, described["schema"])
                    if media == "application/json":
                        assert schema.get("properties"), (where, status)
                    else:
                        assert schema == {"type": "string"}, (where, status)
            refusals = {s for s in operation["responses"] if s.startswith("4")}
            assert "401" in refusals, where
    assert bodies == 4  # create and update, of nodes and of aliases
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # 422 is an ErrorView
    node_view = spec["components"]["schemas"]["NodeView"]["properties"]
    assert {"status", "spec", "instances", "events"} <= node_view.keys()


def test_a_body_of_the_wrong_shape_is_refused_naming_the_field(controller: Controller) -> None:
    from fastapi.testclient import TestClient

    from checkpoint2svc.control.api import create_api

    api = TestClient(create_api(controller, "t"), headers={"authorization": "Bearer t"})
    unknown = api.post("/v1/nodes", json={"name": "x", "checkpoint": "/x", "colour": "red"})
    assert (unknown.status_code, unknown.json()) == (
        422, {"detail": "invalid node settings: colour: Unexpected keyword argument"},
    )  # fmt: skip
    nested = api.patch("/v1/nodes/x", json={"health": {"paht": "/up"}})
    assert nested.json()["detail"].startswith("invalid node settings: health.paht: ")
    weight = api.post("/v1/aliases", json={"name": "a", "nodes": [{"node": "x", "weight": "?"}]})
    assert weight.json()["detail"].startswith("invalid alias settings: nodes.0.weight: ")
