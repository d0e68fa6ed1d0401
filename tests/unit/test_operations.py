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


def api(controller: Controller) -> Any:
    from fastapi.testclient import TestClient

    from checkpoint2svc.control.api import create_api

    return TestClient(create_api(controller, "t"), headers={"authorization": "Bearer t"})


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"request_timeout_s": None}, "request_timeout_s: needs a value"),
        ({"health": None}, "health: needs a value"),
        ({"env": None, "port": 9000}, "env: needs a value"),
    ],
)
def test_null_for_a_setting_that_needs_a_value_is_refused_and_the_node_still_reads(
    controller: Controller, tmp_path: Path, changes: dict[str, object], says: str
) -> None:
    node(controller, tmp_path, "a", {"name": "str"})
    refused = api(controller).patch("/v1/nodes/a", json=changes)
    assert refused.status_code == 422
    assert refused.json()["detail"] == (
        f"invalid node settings: {says} (only checkpoint, grpc_port, image may be null); leave "
        "it out to keep the current one"
    )
    assert api(controller).get("/v1/nodes/a").status_code == 200
    assert controller.store.node("a").spec.port == 8080


def test_a_node_may_go_without_a_checkpoint_or_grpc_port() -> None:
    patch = NodePatch.model_validate({"checkpoint": None, "image": "x:1", "grpc_port": None})
    assert patch.changed() == ["checkpoint", "grpc_port", "image"]


def test_nothing_unreadable_is_stored_even_past_the_patchs_own_checks(
    controller: Controller, tmp_path: Path
) -> None:
    node(controller, tmp_path, "a", {"name": "str"})
    unchecked = NodePatch.model_construct(health=None)  # as if a body escaped validation
    with pytest.raises(NodeSpecError, match="invalid node settings: health: "):
        operations.update_node(controller, "a", unchecked)
    not_a_number = api(controller).patch(
        "/v1/nodes/a",
        content='{"idle_timeout_s": NaN}',
        headers={"content-type": "application/json"},
    )
    assert not_a_number.status_code == 422, not_a_number.text  # stored, it would read as null
    assert not_a_number.json()["detail"].startswith("invalid node settings: idle_timeout_s: ")
    assert controller.store.node("a").spec == operations.get_node(controller, "a").spec
    assert controller.store.node("a").spec.idle_timeout_s == 300.0


def test_a_bad_parameter_is_not_called_a_setting(controller: Controller, tmp_path: Path) -> None:
    node(controller, tmp_path, "a", {"name": "str"})
    answer = api(controller).get("/v1/nodes/a", params={"events": "abc"})
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("invalid parameter: events: ")
    both = api(controller).patch("/v1/nodes/a?x=1", json={"port": "x"})
    assert both.json()["detail"].startswith("invalid node settings: port: ")


@pytest.mark.parametrize(
    ("weights", "rest"),
    [
        ((("a", 50), ("b", 50), ("c", 0)), (("b", 100), ("c", 0))),
        ((("a", 100), ("b", 0), ("c", 0)), (("b", 50), ("c", 50))),
    ],
)
def test_a_forced_delete_keeps_nodes_at_zero_and_splits_equally_when_all_are(
    controller: Controller,
    tmp_path: Path,
    weights: tuple[tuple[str, int], ...],
    rest: tuple[tuple[str, int], ...],
) -> None:
    for name, _ in weights:
        node(controller, tmp_path, name, {"name": "str"})
    operations.create_alias(controller, alias("greet", *weights))
    operations.delete_node(controller, "a", force=True)
    assert operations.get_alias(controller, "greet").nodes == rest


def test_the_guard_reads_image_nodes_through_one_engine_client_and_closes_it(
    controller: Controller, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import docker
    import requests

    from checkpoint2svc.control.compat import node_signatures
    from checkpoint2svc.image import engine

    opened: list[FakeEngine] = []

    class FakeImages:
        def get(self, image: str) -> object:
            if image == "down:1":
                raise requests.ConnectionError("connection reset")
            raise docker.errors.APIError("500 Server Error: engine hiccup")

    class FakeEngine:
        images = FakeImages()
        closed = False

        def close(self) -> None:
            self.closed = True

    def docker_client(timeout: float = 300) -> FakeEngine:
        opened.append(FakeEngine())
        return opened[-1]

    monkeypatch.setattr(engine, "docker_client", docker_client)
    checkpoint = write_checkpoint(tmp_path / "ckpt", {"name": "str"}, {"greeting": "str"})
    specs = [
        NodeSpec("i1", image="x:1"),
        NodeSpec("ck", checkpoint=checkpoint, backend="local"),
        NodeSpec("i2", image="down:1"),
    ]
    first, from_checkpoint, second = node_signatures(specs)
    assert (first, second) == (None, None)  # the engine erred: unknown, not a 500
    assert from_checkpoint is not None
    assert len(opened) == 1 and opened[0].closed
    for spec in specs:
        operations.create_node(controller, spec)
    operations.create_alias(controller, alias("mixed", ("ck", 50), ("i1", 25), ("i2", 25)))
    assert len(opened) == 2 and opened[1].closed


@pytest.mark.parametrize(
    ("call", "path", "answer"),
    [
        (lambda client: client.status(), "/v1/status", {"controller": "of another version"}),
        (lambda client: client.nodes(), "/v1/nodes", [{"name": "a"}]),
        (lambda client: client.aliases(), "/v1/aliases", {"aliases": []}),
        (lambda client: client.node("a"), "/v1/nodes/a", []),
    ],
)
def test_an_answer_the_client_cannot_read_says_to_restart_the_controller(
    tmp_path: Path, call: Any, path: str, answer: object
) -> None:
    import httpx

    from checkpoint2svc.control.api_client import ControllerClient, ControllerError
    from checkpoint2svc.control.home import ControllerInfo, Home

    home = Home(tmp_path)
    home.write_info(ControllerInfo(pid=1, api_port=7070, gateway_port=8090, controller_id="c"))
    asked: list[str] = []

    def controller(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(200, json=answer)

    client = ControllerClient(home, transport=httpx.MockTransport(controller))
    with pytest.raises(ControllerError) as refused:
        call(client)
    assert asked == [path]
    message = str(refused.value)
    assert (
        f"the controller answered GET {path} in a form this checkpoint2svc version does not "
        "read (" in message
    )
    assert message.endswith("restart it: `checkpoint2svc down && checkpoint2svc up`")
