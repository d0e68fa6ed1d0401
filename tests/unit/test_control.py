"""The controller's pure logic: node settings, the autoscaler, the store, merged metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from checkpoint2svc.control.autoscaler import ScaleState, next_desired, wanted
from checkpoint2svc.control.metrics import merge_metrics, with_instance_label
from checkpoint2svc.control.models import (
    Autoscaling,
    Event,
    HealthCheck,
    NodeSpec,
    NodeSpecError,
    NodeStatus,
    Telemetry,
)
from checkpoint2svc.control.store import NodeExistsError, NodeNotFoundError, Store


def spec(**changes: object) -> NodeSpec:
    base = NodeSpec(name="greeter", checkpoint="/ckpt", backend="local")
    return base.updated(**changes)


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"name": "Greeter"}, "node name 'Greeter' is invalid"),
        ({"name": "-x"}, "is invalid"),
        ({"min_instances": 3, "max_instances": 2}, "--min 3 is greater than --max 2"),
        ({"image": "x:1"}, "either --checkpoint CKPT or --image IMAGE"),
        ({"checkpoint": None, "image": "x:1"}, "needs --checkpoint"),
        ({"port": 70000}, "--port 70000 is not a port"),
        ({"grpc_port": None, "health": HealthCheck(kind="grpc")}, "needs --grpc-port"),
        ({"health": HealthCheck(port=9000)}, "--health-port is for --image nodes"),
        ({"telemetry": Telemetry(port=9100)}, "--metrics-port is for --image nodes"),
        (
            {
                "checkpoint": None,
                "image": "x:1",
                "backend": "docker",
                "telemetry": Telemetry(port=0),
            },
            "--metrics-port 0 is not a port",
        ),
    ],
)
def test_invalid_settings_name_the_setting(changes: dict[str, object], says: str) -> None:
    with pytest.raises(NodeSpecError, match=says):
        spec(**changes)


def test_an_image_node_may_check_grpc_health_on_a_port_of_its_own() -> None:
    checked = spec(
        checkpoint=None, image="x:1", backend="docker", grpc_port=None,
        health=HealthCheck(kind="grpc", port=9000),
    )  # fmt: skip
    assert NodeSpec.from_json(checked.to_json()).health.port == 9000


def test_spec_round_trips_through_json_form() -> None:
    original = spec(min_instances=2, max_instances=4, env={"A": "1"})
    assert NodeSpec.from_json(original.to_json()) == original


def test_unknown_setting_is_named() -> None:
    with pytest.raises(NodeSpecError, match="colour"):
        NodeSpec.from_json('{"name": "x", "colour": "red"}')


def test_wanted_divides_in_flight_by_the_target_within_bounds() -> None:
    node = spec(min_instances=1, max_instances=3, autoscaling=Autoscaling(target_in_flight=2))
    assert [wanted(n, node) for n in (0, 1, 2, 3, 5, 100)] == [1, 1, 1, 2, 3, 3]


def test_scaling_waits_for_its_window_in_each_direction() -> None:
    node = spec(
        min_instances=1, max_instances=3,
        autoscaling=Autoscaling(target_in_flight=1, up_window_s=2, down_window_s=10),
    )  # fmt: skip
    state = ScaleState(desired=1)
    assert next_desired(state, 3, node, now=0) == 1
    assert next_desired(state, 3, node, now=1.9) == 1
    assert next_desired(state, 3, node, now=2.0) == 3
    assert next_desired(state, 0, node, now=3) == 3
    assert next_desired(state, 2, node, now=5) == 3  # demand came back: the window restarts
    assert next_desired(state, 3, node, now=6) == 3
    assert next_desired(state, 0, node, now=7) == 3
    assert next_desired(state, 0, node, now=17) == 1


def test_store_keeps_nodes_and_refuses_duplicates(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    store.add_node(spec())
    with pytest.raises(NodeExistsError, match="already exists"):
        store.add_node(spec())
    store.update_node("greeter", status=NodeStatus.HEALTHY, suspended=True)
    reopened = Store(tmp_path / "c.db")
    row = reopened.node("greeter")
    assert (row.status, row.suspended, row.spec) == (NodeStatus.HEALTHY, True, spec())
    reopened.remove_node("greeter")
    with pytest.raises(NodeNotFoundError, match="node list"):
        reopened.node("greeter")


def test_events_are_kept_in_order_and_bounded(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    for i in range(250):
        store.add_event(Event(float(i), "n", f"e{i}"))
    events = store.events("n", limit=1000)
    assert len(events) == 200
    assert [e.message for e in events[-2:]] == ["e248", "e249"]


def test_merged_metrics_label_instances_and_keep_families_together() -> None:
    text = (
        "# HELP node_requests Requests served.\n# TYPE node_requests counter\n"
        'node_requests_total{node_id="g"} 3\n'
    )
    merged = merge_metrics([("g-1", text), ("g-2", text.replace(" 3", " 5"))])
    assert merged.count("# TYPE node_requests counter") == 1
    assert 'node_requests_total{node_id="g",instance="g-1"} 3' in merged
    assert 'node_requests_total{node_id="g",instance="g-2"} 5' in merged
    assert with_instance_label("up 1", "a") == 'up{instance="a"} 1'


@pytest.mark.parametrize(
    ("nodes", "says"),
    [
        ((("a", 60), ("b", 30)), "add up to 100, not 90"),
        ((("a", 50), ("a", 50)), "names a node twice"),
        ((("a", 101), ("b", -1)), "percentages from 0 to 100"),
        ((), "at least one --node"),
    ],
)
def test_alias_weights_are_checked(nodes: tuple[tuple[str, int], ...], says: str) -> None:
    from checkpoint2svc.control.models import AliasSpec

    with pytest.raises(NodeSpecError, match=says):
        AliasSpec("greet", nodes).validate()


def test_signature_differences_name_removed_added_and_retyped_fields() -> None:
    from checkpoint2svc.control.compat import signature_differences
    from checkpoint2svc.wire.signature import Signature
    from checkpoint2svc.wire.type_ir import Scalar

    current = Signature.of((("a", Scalar("int")), ("b", Scalar("str"))), (("y", Scalar("int")),))
    same = signature_differences(current, current)
    changed = signature_differences(
        current, Signature.of((("a", Scalar("float")), ("c", Scalar("str"))), ())
    )
    assert same == []
    assert "- input b is gone (clients that send it are refused)" in changed
    assert "+ new input c: str (clients do not send it)" in changed
    assert "~ input a: int -> float" in changed
    assert "- output y is gone (clients that read it break)" in changed


def test_an_image_label_carries_the_signature_the_guard_compares(tmp_path: Path) -> None:
    import json

    from checkpoint2svc.image.labels import labels_for
    from checkpoint2svc.wire.signature import Signature
    from tests.unit.test_json_schema import make_manifest

    manifest = make_manifest()
    manifest.write(tmp_path)
    labels = labels_for(manifest, tmp_path)
    assert Signature.from_dict(json.loads(labels.signature)) == manifest.typed_signature()


def test_images_the_controller_built_are_removed_once_unused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from checkpoint2svc.control import controller as controller_module
    from checkpoint2svc.control.controller import IMAGE_RETRY_S, Controller
    from checkpoint2svc.gateway.haproxy import Gateway

    in_use = {"node/a:1"}  # what the fake engine refuses to remove (a container uses it)
    removed: list[str] = []
    engine_down = [False]

    def remove(tag: str) -> bool:
        if engine_down[0]:
            raise OSError("the engine is restarting")
        if tag in in_use:
            return False
        removed.append(tag)
        return True

    store = Store(tmp_path / "c.db")
    controller = Controller(
        tmp_path, store, "c", Gateway(tmp_path / "gw"), 0, lambda s, p: "", remove_image=remove
    )
    clock = [1000.0]
    monkeypatch.setattr(controller_module.time, "monotonic", lambda: clock[0])
    built = spec(name="a", backend="docker")
    store.add_node(built)
    store.update_node("a", image="node/a:1")
    controller.retire_image(store.node("a"))
    store.remove_node("a")
    store.add_node(spec(name="u", image="user/web:1", checkpoint=None, backend="docker"))
    store.update_node("u", image="user/web:1")
    controller.retire_image(store.node("u"))

    controller._remove_unused_images()  # still in use: tried again later, not forced
    assert removed == []
    in_use.clear()
    clock[0] += IMAGE_RETRY_S / 2
    controller._remove_unused_images()
    assert removed == []
    clock[0] += IMAGE_RETRY_S
    controller._remove_unused_images()
    assert removed == ["node/a:1"]  # never the user's image

    store.add_node(spec(name="b", backend="docker"))
    store.update_node("b", image="node/b:1")
    controller.retire_image(store.node("b"))
    controller._remove_unused_images()  # node b still names it (rebuilt to the same tag)
    controller._remove_unused_images()
    assert removed == ["node/a:1"]

    deleted = store.node("b")
    store.remove_node("b")
    controller.retire_image(deleted)  # as deleting a node does
    engine_down[0] = True  # an error is not a removal: the image is tried again later
    controller._remove_unused_images()
    engine_down[0] = False
    clock[0] += IMAGE_RETRY_S * 6
    controller._remove_unused_images()
    assert removed == ["node/a:1", "node/b:1"]

    # a controller restarted before it could remove an image still removes it
    store.add_node(spec(name="c", backend="docker"))
    store.update_node("c", image="node/c:1")
    deleted = store.node("c")
    store.remove_node("c")
    in_use.add("node/c:1")
    controller.retire_image(deleted)
    controller._remove_unused_images()
    assert store.unused_images() == ["node/c:1"]
    in_use.clear()
    restarted = Controller(
        tmp_path, store, "c", Gateway(tmp_path / "gw"), 0, lambda s, p: "", remove_image=remove
    )
    restarted._remove_unused_images()
    assert removed[-1] == "node/c:1" and store.unused_images() == []


def test_settings_whose_json_form_would_not_read_back_are_refused() -> None:
    with pytest.raises(NodeSpecError, match="invalid node settings: request_timeout_s: "):
        spec(request_timeout_s=float("nan"))  # stored, it would read as null
    with pytest.raises(NodeSpecError, match="invalid node settings: telemetry: "):
        spec(telemetry=None)


def test_an_alias_is_stored_in_its_json_form_and_read_back(tmp_path: Path) -> None:
    import json

    from checkpoint2svc.control.models import AliasSpec

    alias = AliasSpec("greet", (("a", 60), ("b", 40)), {"team": "x"}, sticky_cookie="c")
    assert json.loads(alias.to_json()) == {
        "name": "greet", "nodes": [{"node": "a", "weight": 60}, {"node": "b", "weight": 40}],
        "metadata": {"team": "x"}, "sticky_header": "", "sticky_cookie": "c",
    }  # fmt: skip
    store = Store(tmp_path / "c.db")
    store.add_alias(alias)
    assert Store(tmp_path / "c.db").aliases() == [alias]
    older = '{"name": "greet", "nodes": [{"node": "a", "weight": 100}]}'  # before sticky routing
    assert AliasSpec.from_json(older) == AliasSpec("greet", (("a", 100),))
    with pytest.raises(NodeSpecError, match=r"invalid alias settings: nodes\.0\.weight: "):
        AliasSpec.from_json('{"name": "greet", "nodes": [{"node": "a", "weight": "most"}]}')
