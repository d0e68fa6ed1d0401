"""The reconcile loop, one pass at a time: instances started, checked, replaced, scaled, rolled
and removed; what the gateway is told; adoption after a restart; image builds."""

from __future__ import annotations

import time

import pytest

from checkpoint2svc.backends.base import RunState
from checkpoint2svc.control.controller import RESTART_BACKOFF_S
from checkpoint2svc.errors import BackendError, ImageError
from tests.inprocess.harness import EVERY_PASS, Harness, local_node

pytestmark = pytest.mark.inprocess


def running(harness: Harness, node: str) -> list[str]:
    """The ids of the node's instances the backend runs, oldest first."""
    return [
        i.handle.instance_id for i in harness.machine.instances(node) if i.state == RunState.RUNNING
    ]


def statuses(harness: Harness, node: str) -> dict[str, str]:
    return {i["id"]: i["status"] for i in harness.node(node)["instances"]}


def test_a_node_starts_its_minimum_and_turns_healthy_once_they_pass_checks(
    harness: Harness, checkpoint: str
) -> None:
    harness.create_node("greeter", **local_node(checkpoint, min_instances=2, max_instances=4))
    harness.reconcile()
    ids = running(harness, "greeter")
    assert len(ids) == 2
    assert set(statuses(harness, "greeter").values()) == {"Started"}
    assert harness.gateway.servers("greeter") == dict.fromkeys(ids, False)  # no traffic yet
    assert harness.node("greeter")["status"] == "Created"

    harness.reconcile()
    assert statuses(harness, "greeter") == dict.fromkeys(ids, "Healthy")
    assert harness.gateway.servers("greeter") == dict.fromkeys(ids, True)
    assert harness.node("greeter")["status"] == "Healthy"
    assert harness.events("greeter").count("instance started on local") == 2
    harness.reconcile(3)
    assert running(harness, "greeter") == ids  # nothing more is started


def test_an_instance_that_never_answers_keeps_the_node_from_healthy(
    harness: Harness, checkpoint: str
) -> None:
    harness.machine.healthy_at_start = False
    harness.create_node("slow", **local_node(checkpoint))
    at_once = {**EVERY_PASS, "start_period_s": 0}
    harness.create_node("broken", **local_node(checkpoint, health=at_once))
    harness.reconcile(4)
    (slow,) = harness.node("slow")["instances"]
    assert slow["status"] == "Preparing"  # failures count only after the start period
    assert harness.node("slow")["status"] == "Created"
    (broken,) = harness.node("broken")["instances"]
    assert broken["status"] == "Unhealthy"
    assert broken["last_error"] == "GET /readyz answered 503: not ready"
    assert harness.node("broken")["status"] == "Unhealthy"
    assert harness.gateway.servers("broken") == {broken["id"]: False}

    harness.machine.set_healthy(slow["id"], True)
    harness.reconcile()
    assert harness.node("slow")["status"] == "Healthy"


def test_a_healthy_instance_that_fails_its_checks_is_taken_out_of_the_gateway(
    harness: Harness, checkpoint: str
) -> None:
    harness.create_node("greeter", **local_node(checkpoint, min_instances=2, max_instances=2))
    harness.reconcile(2)
    sick, well = running(harness, "greeter")
    harness.machine.set_healthy(sick, False, "model not loaded")
    harness.reconcile(2)  # fewer failures than the threshold (3): still Healthy
    assert statuses(harness, "greeter")[sick] == "Healthy"
    harness.reconcile()
    node = harness.node("greeter")
    assert statuses(harness, "greeter") == {sick: "Unhealthy", well: "Healthy"}
    assert node["status"] == "Unhealthy"  # fewer healthy instances than the minimum
    assert harness.gateway.servers("greeter") == {sick: False, well: True}
    assert "instance Unhealthy: GET /readyz answered 503: model not loaded" in harness.events(
        "greeter"
    )
    assert running(harness, "greeter") == [sick, well]  # kept: it may recover

    harness.machine.set_healthy(sick, True)
    harness.reconcile()
    assert harness.node("greeter")["status"] == "Healthy"
    assert harness.gateway.servers("greeter") == {sick: True, well: True}


def test_an_instance_that_exits_is_replaced_with_its_last_lines_in_the_events(
    harness: Harness, checkpoint: str
) -> None:
    harness.create_node("greeter", **local_node(checkpoint))
    harness.reconcile(2)
    (dead,) = running(harness, "greeter")
    harness.machine.exit(dead, 3, "Traceback (most recent call last):", "MemoryError")
    harness.reconcile()
    (new,) = running(harness, "greeter")
    assert new != dead
    assert dead in harness.machine.stopped
    exited = next(e for e in harness.events("greeter") if e.startswith("instance exited"))
    assert exited.startswith("instance exited with code 3; last lines:\n")
    assert exited.endswith("Traceback (most recent call last):\nMemoryError")
    assert dead not in harness.gateway.servers("greeter")
    harness.reconcile()
    assert harness.node("greeter")["status"] == "Healthy"


def test_a_vanished_instance_is_replaced(harness: Harness, checkpoint: str) -> None:
    harness.create_node("greeter", **local_node(checkpoint, min_instances=2, max_instances=2))
    harness.reconcile(2)
    gone, kept = running(harness, "greeter")
    harness.machine.vanish(gone)
    harness.reconcile()
    after = running(harness, "greeter")
    assert kept in after and gone not in after and len(after) == 2
    assert "instance exited; last lines:\n" in harness.events("greeter")


def test_a_crash_loop_waits_before_each_replacement(harness: Harness, checkpoint: str) -> None:
    harness.machine.healthy_at_start = False
    harness.create_node("crashy", **local_node(checkpoint))
    harness.reconcile()
    (first,) = running(harness, "crashy")
    harness.machine.exit(first, 1, "ImportError: no module named torch")
    harness.reconcile()
    assert running(harness, "crashy") == []  # never healthy: it backs off
    assert harness.node("crashy")["status"] == "Unhealthy"
    time.sleep(RESTART_BACKOFF_S[0] + 0.05)
    harness.reconcile()
    assert len(running(harness, "crashy")) == 1


def test_a_grpc_health_check_probes_the_grpc_port(harness: Harness, checkpoint: str) -> None:
    health = {**EVERY_PASS, "kind": "grpc", "grpc_service": "greet"}
    harness.create_node("greeter", **local_node(checkpoint, health=health))
    harness.reconcile(2)
    assert harness.node("greeter")["status"] == "Healthy"  # the HTTP port answers no gRPC
    (instance,) = running(harness, "greeter")
    harness.machine.set_healthy(instance, False)
    harness.reconcile(3)
    (view,) = harness.node("greeter")["instances"]
    assert view["last_error"] == "gRPC health 'greet': NOT_SERVING"


def test_an_image_node_is_checked_on_its_health_port(harness: Harness) -> None:
    harness.create_node(
        "web", image="nginx:1", backend="docker", grpc_port=None,
        health={**EVERY_PASS, "port": 9000, "path": "/healthz"},
    )  # fmt: skip
    harness.reconcile(2)
    (instance,) = harness.node("web")["instances"]
    assert instance["backend"] == "docker" and instance["health_port"] > 0
    assert instance["status"] == "Healthy"
    (started,) = harness.machine.started
    assert (started.image, started.health_port) == ("nginx:1", 9000)


def test_in_flight_requests_scale_a_node_within_its_bounds(
    harness: Harness, checkpoint: str
) -> None:
    scaling = {"target_in_flight": 1, "up_window_s": 0, "down_window_s": 0}
    harness.create_node(
        "greeter", **local_node(checkpoint, min_instances=1, max_instances=3, autoscaling=scaling)
    )
    harness.reconcile(2)
    assert len(running(harness, "greeter")) == 1
    harness.gateway.in_flight("greeter", 10)  # wants 10 instances: the maximum is 3
    harness.reconcile(2)
    assert len(running(harness, "greeter")) == 3
    assert harness.node("greeter")["healthy_instances"] == 3
    harness.gateway.in_flight("greeter", 2)
    harness.reconcile()
    assert len(running(harness, "greeter")) == 2
    harness.gateway.in_flight("greeter", 0)
    harness.reconcile()
    assert len(running(harness, "greeter")) == 1  # the minimum
    assert "stopping instance: scaled down" in harness.events("greeter")


def test_scaling_waits_for_its_window(harness: Harness, checkpoint: str) -> None:
    scaling = {"target_in_flight": 1, "up_window_s": 60}
    harness.create_node(
        "greeter", **local_node(checkpoint, min_instances=1, max_instances=3, autoscaling=scaling)
    )
    harness.reconcile(2)
    harness.gateway.in_flight("greeter", 10)
    harness.reconcile(3)
    assert len(running(harness, "greeter")) == 1  # a burst shorter than the window


def test_an_update_rolls_the_instances_without_a_gap(harness: Harness, checkpoint: str) -> None:
    harness.create_node("greeter", **local_node(checkpoint, min_instances=2, max_instances=2))
    harness.reconcile(2)
    old = running(harness, "greeter")
    old_version = harness.node("greeter")["version"]
    harness.machine.healthy_at_start = False  # new instances need a test's word to be ready
    harness.call("PATCH", "/v1/nodes/greeter", json={"env": {"MODEL": "v2"}})
    assert harness.node("greeter")["version"] != old_version

    harness.reconcile()
    now = running(harness, "greeter")
    assert now[:2] == old and len(now) == 3  # one extra at a time (maintenance_limit 1)
    harness.reconcile(2)
    assert running(harness, "greeter")[:2] == old  # not ready yet: the old ones keep serving
    harness.machine.set_healthy(now[2], True)
    harness.machine.healthy_at_start = True
    harness.reconcile()
    after = running(harness, "greeter")
    assert len([i for i in after if i in old]) == 1  # one old one replaced
    harness.reconcile(3)
    final = running(harness, "greeter")
    assert len(final) == 2 and not set(final) & set(old)
    assert {i.spec.env["MODEL"] for i in harness.machine.instances("greeter")} == {"v2"}
    assert harness.node("greeter")["status"] == "Healthy"
    replaced = "stopping instance: replaced by the node's new version"
    assert harness.events("greeter").count(replaced) == 2


def test_the_gateway_gets_the_alias_weights_over_healthy_instances(
    harness: Harness, checkpoint: str
) -> None:
    harness.create_node("v1", **local_node(checkpoint))
    harness.create_node("v2", **local_node(checkpoint, min_instances=2, max_instances=2))
    harness.reconcile(2)
    split = [{"node": "v1", "weight": 90}, {"node": "v2", "weight": 10}]
    harness.call("POST", "/v1/aliases", 201, json={"name": "greet", "nodes": split})
    (alias,) = harness.gateway.config.aliases  # applied when the call returned
    assert alias.targets == (("v1", 90), ("v2", 10))
    weights = harness.gateway.weights("greet")
    (one,) = running(harness, "v1")
    two = running(harness, "v2")
    # 90 % to v1's one instance, 10 % shared by v2's two: HAProxy's weights keep the ratio
    assert weights[one] == 256
    assert weights[two[0]] == weights[two[1]] == round(5 * 256 / 90)

    harness.machine.exit(one, 1)  # v1 has no healthy instance: its share goes to v2
    harness.reconcile()
    weights = harness.gateway.weights("greet")
    assert weights[two[0]] == weights[two[1]] > 0
    assert [w for i, w in weights.items() if i not in two] == [0]

    harness.call("PATCH", "/v1/aliases/greet", json={"sticky_cookie": "session"})
    assert harness.gateway.config.aliases[0].sticky_cookie == "session"


def test_deleting_a_node_stops_its_instances_and_frees_their_sockets(
    harness: Harness, checkpoint: str
) -> None:
    harness.create_node("greeter", **local_node(checkpoint, min_instances=3, max_instances=3))
    harness.reconcile(2)
    sockets = harness.gateway.runtime_dir / "instances"
    assert len(list(sockets.iterdir())) == 3
    harness.call("DELETE", "/v1/nodes/greeter", 202)
    harness.reconcile()
    assert harness.machine.instances() == []
    assert list(sockets.iterdir()) == []
    assert harness.controller.node_instances("greeter") == []
    assert harness.gateway.config.nodes == ()


def test_a_restarted_controller_adopts_its_instances_and_the_gateway(
    harness: Harness, checkpoint: str
) -> None:
    harness.create_node("greeter", **local_node(checkpoint, min_instances=2, max_instances=2))
    harness.reconcile(2)
    ids = running(harness, "greeter")
    started = len(harness.machine.started)
    harness.gateway.left_running = True
    harness.restart()
    assert harness.gateway.starts == 1  # adopted, not started again
    node = harness.node("greeter")
    assert {i["id"] for i in node["instances"]} == set(ids)
    assert harness.events("greeter").count("adopted after a controller restart") == 2
    harness.reconcile(2)
    assert running(harness, "greeter") == ids
    assert len(harness.machine.started) == started  # nothing duplicated
    assert harness.node("greeter")["status"] == "Healthy"


def test_adoption_stops_the_instances_of_nodes_that_are_gone(
    harness: Harness, checkpoint: str
) -> None:
    harness.create_node("kept", **local_node(checkpoint))
    harness.create_node("gone", **local_node(checkpoint))
    harness.reconcile(2)
    (orphan,) = running(harness, "gone")
    harness.store.remove_node("gone")  # deleted while no controller ran
    harness.restart()
    assert orphan in harness.machine.stopped
    assert running(harness, "gone") == []
    assert len(running(harness, "kept")) == 1


def test_a_checkpoint_node_on_docker_builds_its_image_first(
    harness: Harness, checkpoint: str
) -> None:
    harness.images.release.clear()
    harness.create_node("greeter", checkpoint=checkpoint, backend="docker", health=EVERY_PASS)
    harness.reconcile()
    assert harness.images.reported.wait(10)
    node = harness.node("greeter")
    assert node["build"] == "Step 2/4 : COPY checkpoint /srv"  # the build's last line
    assert node["version"] is None and node["instances"] == []

    harness.images.release.set()
    harness.wait_until(lambda: bool(harness.node("greeter")["image"]), "the build")
    assert harness.node("greeter")["build"] is None
    harness.reconcile(2)
    node = harness.node("greeter")
    assert node["image"] == "checkpoint2svc-node/greeter:1"
    assert node["status"] == "Healthy"
    assert [s.image for s in harness.machine.started] == ["checkpoint2svc-node/greeter:1"]
    assert "image checkpoint2svc-node/greeter:1 ready" in harness.events("greeter")

    harness.call("DELETE", "/v1/nodes/greeter", 202)
    harness.reconcile()
    assert harness.images.removed == ["checkpoint2svc-node/greeter:1"]  # it built it: removed


def test_a_failed_build_makes_the_node_unhealthy_until_it_changes(
    harness: Harness, checkpoint: str
) -> None:
    harness.images.error = ImageError("pip install failed: no matching distribution for torch==9")
    harness.create_node("greeter", checkpoint=checkpoint, backend="docker", health=EVERY_PASS)
    harness.reconcile()
    harness.wait_until(lambda: harness.node("greeter")["status"] == "Unhealthy", "the failure")
    assert "image build failed: pip install failed: no matching distribution for torch==9" in (
        harness.events("greeter")
    )
    harness.reconcile(3)
    assert harness.images.built == [] and harness.machine.started == []
    assert harness.events("greeter").count("building the image of " + checkpoint) == 1


def test_an_engine_error_is_reported_on_its_node_and_the_others_go_on(
    harness: Harness, checkpoint: str
) -> None:
    harness.machine.missing_images.add("web:404")
    harness.create_node("web", image="web:404", backend="docker", grpc_port=None)
    harness.create_node("greeter", **local_node(checkpoint))
    harness.reconcile(2)
    assert "error: image web:404 is not in the engine" in harness.events("web")
    assert running(harness, "web") == []
    assert harness.node("greeter")["status"] == "Healthy"

    harness.machine.missing_images.clear()  # pulled by hand
    harness.machine.start_error = BackendError("the Docker engine does not answer")
    harness.reconcile()
    assert harness.events("web")[-1] == "error: the Docker engine does not answer"
    harness.machine.start_error = None
    harness.reconcile(2)
    assert harness.node("web")["status"] == "Healthy"


def test_a_built_image_removed_from_the_engine_is_built_again(
    harness: Harness, checkpoint: str
) -> None:
    harness.create_node("greeter", checkpoint=checkpoint, backend="docker", health=EVERY_PASS)
    harness.reconcile()
    harness.wait_until(lambda: bool(harness.node("greeter")["image"]), "the first build")
    harness.reconcile(2)
    (instance,) = running(harness, "greeter")
    harness.machine.missing_images.add("checkpoint2svc-node/greeter:1")  # `docker rmi` by hand
    harness.machine.exit(instance, 137)
    harness.reconcile()
    assert (
        "image checkpoint2svc-node/greeter:1 is gone from the Docker engine; building it again"
        in harness.events("greeter")
    )
    harness.reconcile()
    harness.wait_until(lambda: bool(harness.node("greeter")["image"]), "the second build")
    harness.reconcile(2)
    assert harness.node("greeter")["image"] == "checkpoint2svc-node/greeter:2"
    assert harness.node("greeter")["status"] == "Healthy"
