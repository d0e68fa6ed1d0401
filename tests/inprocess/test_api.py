"""Every route of the controller's REST API, called as the CLI calls it (control/api_client.py and
the cli/ package build these bodies), against a controller whose loop runs in this process."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest

from tests.inprocess.fakes import write_checkpoint
from tests.inprocess.harness import CONTROLLER_ID, GATEWAY_PORT, Harness, Route, local_node

pytestmark = pytest.mark.inprocess


COVERED: dict[Route, str] = {
    ("GET", "/v1/status"): "test_status_names_the_controller_and_its_gateway",
    ("POST", "/v1/nodes"): "test_a_created_node_is_shown_with_its_settings_endpoints_and_events",
    ("GET", "/v1/nodes"): "test_list_shows_every_node_without_events",
    ("GET", "/v1/nodes/{name}"): "test_get_shows_as_many_events_as_asked",
    ("PATCH", "/v1/nodes/{name}"): "test_update_changes_only_the_settings_sent",
    ("POST", "/v1/nodes/{name}:suspend"): "test_suspend_stops_the_instances_and_resume_starts_them",
    ("POST", "/v1/nodes/{name}:resume"): "test_suspend_stops_the_instances_and_resume_starts_them",
    ("DELETE", "/v1/nodes/{name}"): "test_delete_removes_the_node_its_instances_and_its_route",
    ("GET", "/v1/nodes/{name}/logs"): "test_logs_show_each_instance_under_its_name",
    ("POST", "/v1/aliases"): "test_alias_routes_create_get_list_update_delete",
    ("GET", "/v1/aliases"): "test_alias_routes_create_get_list_update_delete",
    ("GET", "/v1/aliases/{name}"): "test_alias_routes_create_get_list_update_delete",
    ("PATCH", "/v1/aliases/{name}"): "test_alias_routes_create_get_list_update_delete",
    ("DELETE", "/v1/aliases/{name}"): "test_alias_routes_create_get_list_update_delete",
    ("POST", "/v1/shutdown"): "test_shutdown_asks_the_process_to_stop",
    ("GET", "/metrics"): "test_metrics_merge_the_instances_and_the_gateway_counters",
}
"""Every route of the API -> the test of what it does. A new route needs a test and a row here;
each test checks after it runs that it called its routes (so each row holds under pytest-xdist,
whichever worker runs which test)."""


@pytest.fixture(autouse=True)
def calls_its_routes(request: pytest.FixtureRequest, harness: Harness) -> Iterator[None]:
    yield
    test = request.node.originalname
    missed = sorted(
        route for route, by in COVERED.items() if by == test and route not in harness.called
    )
    assert not missed, f"{test} is the test of {missed} in COVERED but did not call them"


def test_every_route_has_a_behaviour_test(harness: Harness) -> None:
    paths = harness.call("GET", "/openapi.json")["paths"]
    documented = {
        (method.upper(), path) for path, operations in paths.items() for method in operations
    }
    assert sorted(documented - set(COVERED)) == [], "routes with no test: add one and a COVERED row"
    assert sorted(set(COVERED) - documented) == [], "COVERED names routes the API no longer has"
    tests = {
        name for name, value in globals().items() if name.startswith("test_") and callable(value)
    }
    assert sorted(set(COVERED.values()) - tests) == [], "COVERED names tests this module lacks"


def test_every_route_refuses_a_missing_or_wrong_token(harness: Harness) -> None:
    routes = [(method, re.sub(r"\{[^}]*\}", "x", path)) for method, path in sorted(COVERED)]
    for client in (harness.client(None), harness.client("not-the-token")):
        for method, path in routes:
            response = client.request(method, path)
            assert response.status_code == 401, (method, path, response.text)
            assert "bearer token" in response.json()["detail"]
    assert harness.shutdowns == 0
    assert harness.store.nodes() == []


def test_status_names_the_controller_and_its_gateway(harness: Harness, checkpoint: str) -> None:
    harness.create_node("greeter", **local_node(checkpoint))
    status = harness.call("GET", "/v1/status")
    assert status["controller_id"] == CONTROLLER_ID
    assert status["gateway"] == f"127.0.0.1:{GATEWAY_PORT}"
    assert status["nodes"] == 1
    assert abs(status["time"] - time.time()) < 60


def test_a_created_node_is_shown_with_its_settings_endpoints_and_events(
    harness: Harness, checkpoint: str
) -> None:
    created = harness.create_node("greeter", **local_node(checkpoint, min_instances=2,
                                                          max_instances=3))  # fmt: skip
    assert created["name"] == "greeter"
    assert created["status"] == "Created"
    assert created["spec"]["checkpoint"] == checkpoint
    assert (created["spec"]["min_instances"], created["spec"]["max_instances"]) == (2, 3)
    assert created["spec"]["health"]["path"] == "/readyz"  # defaults filled in
    assert created["instances"] == [] and created["healthy_instances"] == 0
    assert created["endpoint"]["rest"] == (
        f"http://127.0.0.1:{GATEWAY_PORT}/datasphere/v1/nodes/greeter:execute"
    )
    assert "x-node-id: greeter" in created["endpoint"]["grpc"]
    assert [e["message"] for e in created["events"]] == ["node created"]

    harness.reconcile(2)
    node = harness.node("greeter")
    assert node["status"] == "Healthy"
    assert node["healthy_instances"] == 2
    assert {i["status"] for i in node["instances"]} == {"Healthy"}
    assert all(
        i["id"].startswith("greeter-") and i["backend"] == "local" for i in node["instances"]
    )
    assert node["events"][-1]["message"] == "node Healthy (2 healthy, minimum 2)"


def test_a_second_node_of_the_same_name_is_refused(harness: Harness, checkpoint: str) -> None:
    harness.create_node("greeter", **local_node(checkpoint))
    response = harness.api.post("/v1/nodes", json={"name": "greeter", **local_node(checkpoint)})
    assert response.status_code == 409
    assert "a node named 'greeter' already exists" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"name": "Greeter"}, "node name 'Greeter' is invalid"),
        ({"name": "g", "min_instances": 3, "max_instances": 2}, "--min 3 is greater than --max 2"),
        ({"name": "g", "port": 70000}, "--port 70000 is not a port"),
        ({"name": "g", "image": "web:1"}, "either --checkpoint CKPT or --image IMAGE"),
        ({"name": "g", "colour": "red"}, "colour"),
    ],
)
def test_invalid_settings_are_refused_naming_the_setting(
    harness: Harness, checkpoint: str, body: dict[str, object], says: str
) -> None:
    response = harness.api.post("/v1/nodes", json={**local_node(checkpoint), **body})
    assert response.status_code == 422, response.text
    assert says in response.text
    assert harness.call("GET", "/v1/nodes") == []


def test_unknown_nodes_are_404_on_every_node_route(harness: Harness) -> None:
    for method, path in [
        ("GET", "/v1/nodes/nope"), ("PATCH", "/v1/nodes/nope"), ("DELETE", "/v1/nodes/nope"),
        ("POST", "/v1/nodes/nope:suspend"), ("POST", "/v1/nodes/nope:resume"),
        ("GET", "/v1/nodes/nope/logs"),
    ]:  # fmt: skip
        response = harness.api.request(method, path, json={} if method == "PATCH" else None)
        assert response.status_code == 404, (method, path, response.text)
        assert "no node named 'nope'" in response.json()["detail"]


def test_list_shows_every_node_without_events(harness: Harness, checkpoint: str) -> None:
    harness.create_node("beta", **local_node(checkpoint))
    harness.create_node("alpha", **local_node(checkpoint, min_instances=0))
    harness.reconcile(2)
    nodes = harness.call("GET", "/v1/nodes")
    assert [n["name"] for n in nodes] == ["alpha", "beta"]
    assert [len(n["instances"]) for n in nodes] == [0, 1]
    assert all(n["events"] == [] for n in nodes)


def test_get_shows_as_many_events_as_asked(harness: Harness, checkpoint: str) -> None:
    harness.create_node("greeter", **local_node(checkpoint))
    harness.reconcile(2)
    assert len(harness.node("greeter", events=50)["events"]) >= 3
    assert [e["message"] for e in harness.node("greeter", events=1)["events"]] == [
        "node Healthy (1 healthy, minimum 1)"
    ]


def test_update_changes_only_the_settings_sent(harness: Harness, checkpoint: str) -> None:
    harness.create_node("greeter", **local_node(checkpoint, env={"A": "1"}))
    updated = harness.call(
        "PATCH", "/v1/nodes/greeter", json={"min_instances": 2, "max_instances": 4}
    )
    spec = updated["spec"]
    assert (spec["min_instances"], spec["max_instances"]) == (2, 4)
    assert spec["env"] == {"A": "1"} and spec["checkpoint"] == checkpoint
    assert updated["events"][-1]["message"] == "node updated: max_instances, min_instances"

    refused = harness.api.patch("/v1/nodes/greeter", json={"min_instances": 9})
    assert refused.status_code == 422
    assert "--min 9 is greater than --max 4" in refused.json()["detail"]
    assert harness.node("greeter")["spec"]["min_instances"] == 2


def test_suspend_stops_the_instances_and_resume_starts_them(
    harness: Harness, checkpoint: str
) -> None:
    harness.create_node("greeter", **local_node(checkpoint, min_instances=2, max_instances=2))
    harness.reconcile(2)
    suspended = harness.call("POST", "/v1/nodes/greeter:suspend")
    assert suspended["suspended"] is True
    harness.reconcile()
    node = harness.node("greeter")
    assert node["status"] == "Suspended" and node["instances"] == []
    assert harness.machine.instances("greeter") == []
    assert harness.gateway.servers("greeter") == {}

    resumed = harness.call("POST", "/v1/nodes/greeter:resume")
    assert resumed["suspended"] is False
    harness.reconcile(2)
    node = harness.node("greeter")
    assert node["status"] == "Healthy" and node["healthy_instances"] == 2


def test_delete_removes_the_node_its_instances_and_its_route(
    harness: Harness, checkpoint: str
) -> None:
    harness.create_node("greeter", **local_node(checkpoint, min_instances=2, max_instances=2))
    harness.create_node("other", **local_node(checkpoint))
    harness.reconcile(2)
    ids = {i["id"] for i in harness.node("greeter")["instances"]}
    assert harness.call("DELETE", "/v1/nodes/greeter", 202) == {
        "name": "greeter",
        "status": "Deleting",
    }
    harness.reconcile()
    assert harness.api.get("/v1/nodes/greeter").status_code == 404
    assert [n["name"] for n in harness.call("GET", "/v1/nodes")] == ["other"]
    assert ids <= set(harness.machine.stopped)
    assert harness.machine.instances("greeter") == []
    assert [n.name for n in harness.gateway.config.nodes] == ["other"]


def test_logs_show_each_instance_under_its_name(harness: Harness, checkpoint: str) -> None:
    harness.create_node("greeter", **local_node(checkpoint, min_instances=2, max_instances=2))
    harness.reconcile()
    first, second = (i.handle.instance_id for i in harness.machine.instances("greeter"))
    harness.machine.write_log(first, "GET /execute 200", "GET /execute 422")
    text = harness.call(
        "GET", "/v1/nodes/greeter/logs", params={"instance": "", "tail": 2, "follow": False}
    )
    assert f"==> {first} <==\n" in text and f"==> {second} <==\n" in text
    assert "GET /execute 200\nGET /execute 422" in text
    assert "serving HTTP" not in text.split(f"==> {second}")[0]  # only the last 2 lines

    one = harness.call("GET", "/v1/nodes/greeter/logs", params={"instance": second})
    assert one.startswith(f"==> {second} <==\n") and first not in one


def test_log_errors_name_the_instances(harness: Harness, checkpoint: str) -> None:
    harness.create_node("greeter", **local_node(checkpoint, min_instances=2, max_instances=2))
    harness.reconcile()
    ids = [i.handle.instance_id for i in harness.machine.instances("greeter")]
    missing = harness.api.get("/v1/nodes/greeter/logs", params={"instance": "greeter-zzz"})
    assert missing.status_code == 404
    assert "node greeter has no instance 'greeter-zzz'" in missing.json()["detail"]
    ambiguous = harness.api.get("/v1/nodes/greeter/logs", params={"follow": True})
    assert ambiguous.status_code == 422
    assert "--follow needs one instance: pass --instance" in ambiguous.json()["detail"]
    assert all(i in ambiguous.json()["detail"] for i in ids)


def test_follow_streams_new_lines_until_the_instance_exits(
    harness: Harness, checkpoint: str
) -> None:
    harness.create_node("greeter", **local_node(checkpoint))
    harness.reconcile()
    (instance,) = (i.handle.instance_id for i in harness.machine.instances("greeter"))

    def later() -> None:
        time.sleep(0.2)
        harness.machine.write_log(instance, "request 1")
        time.sleep(0.1)
        harness.machine.exit(instance, 0, "shutting down")

    writer = threading.Thread(target=later)
    writer.start()
    params = {"instance": instance, "tail": 10, "follow": True}
    lines = harness.call("GET", "/v1/nodes/greeter/logs", params=params).splitlines()
    writer.join()
    assert lines[0].startswith("greeter: serving HTTP")
    assert lines[1:] == ["request 1", "shutting down"]


def test_metrics_merge_the_instances_and_the_gateway_counters(
    harness: Harness, checkpoint: str
) -> None:
    harness.create_node("greeter", **local_node(checkpoint, min_instances=2, max_instances=2))
    harness.reconcile(2)
    family = "# HELP node_requests Requests.\n# TYPE node_requests counter\n"
    for n, instance in enumerate(harness.machine.instances("greeter")):
        harness.machine.set_metrics(
            instance.handle.instance_id, f'{family}node_requests_total{{node_id="greeter"}} {n}\n'
        )
    harness.gateway.stats[("node.greeter.http", "BACKEND")] = {"hrsp_2xx": 7, "hrsp_5xx": 1}
    harness.reconcile()  # the gateway's counters are read once per pass

    response = harness.api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert text.count("# TYPE node_requests counter") == 1
    for n, instance in enumerate(harness.machine.instances("greeter")):
        labels = f'node_id="greeter",instance="{instance.handle.instance_id}"'
        assert f"node_requests_total{{{labels}}} {n}" in text
    base = 'gateway_node_responses_total{node_id="greeter",protocol="http"'
    assert f'{base},code="2xx"}} 7' in text
    assert f'{base},code="5xx"}} 1' in text


def test_shutdown_asks_the_process_to_stop(harness: Harness) -> None:
    assert harness.call("POST", "/v1/shutdown", 202) == {"status": "stopping"}
    assert harness.shutdowns == 1


# --- aliases ------------------------------------------------------------------------------
def two_nodes(harness: Harness, checkpoint: str) -> None:
    harness.create_node("v1", **local_node(checkpoint))
    harness.create_node("v2", **local_node(checkpoint))
    harness.reconcile(2)


def test_alias_routes_create_get_list_update_delete(harness: Harness, checkpoint: str) -> None:
    two_nodes(harness, checkpoint)
    body = {"name": "greet", "nodes": [{"node": "v1", "weight": 90}, {"node": "v2", "weight": 10}],
            "metadata": {"team": "ml"}}  # fmt: skip
    alias = harness.call("POST", "/v1/aliases", 201, json=body)
    assert alias["nodes"] == body["nodes"]
    assert alias["metadata"] == {"team": "ml"}
    assert alias["node_status"] == {"v1": "Healthy", "v2": "Healthy"}
    assert alias["endpoint"]["rest"] == (
        f"http://127.0.0.1:{GATEWAY_PORT}/datasphere/v1/aliases/greet:execute"
    )
    assert "x-node-alias: greet" in alias["endpoint"]["grpc"]
    assert harness.call("GET", "/v1/aliases/greet")["nodes"] == body["nodes"]
    assert [a["name"] for a in harness.call("GET", "/v1/aliases")] == ["greet"]

    split = [{"node": "v1", "weight": 50}, {"node": "v2", "weight": 50}]
    updated = harness.call("PATCH", "/v1/aliases/greet", json={"nodes": split})
    assert updated["nodes"] == split and updated["metadata"] == {"team": "ml"}
    sticky = harness.call("PATCH", "/v1/aliases/greet", json={"sticky_header": "x-session"})
    assert sticky["sticky_header"] == "x-session" and sticky["nodes"] == split

    assert harness.call("DELETE", "/v1/aliases/greet") == {"name": "greet", "deleted": True}
    assert harness.call("GET", "/v1/aliases") == []
    assert harness.gateway.config.aliases == ()


def test_alias_errors_say_what_is_wrong(harness: Harness, checkpoint: str) -> None:
    two_nodes(harness, checkpoint)
    ok = {"name": "greet", "nodes": [{"node": "v1", "weight": 100}]}
    harness.call("POST", "/v1/aliases", 201, json=ok)
    cases = [
        ("POST", "/v1/aliases", ok, 409, "an alias named 'greet' already exists"),
        ("POST", "/v1/aliases",
         {"name": "other", "nodes": [{"node": "v1", "weight": 60}, {"node": "v2", "weight": 30}]},
         422, "alias weights must add up to 100, not 90 (v1=60, v2=30)"),
        ("POST", "/v1/aliases", {"name": "other", "nodes": [{"node": "v9", "weight": 100}]},
         404, "no node named 'v9'"),
        ("POST", "/v1/aliases", {"name": "other", "nodes": []}, 422, "at least one --node"),
        ("GET", "/v1/aliases/nope", None, 404, "no alias named 'nope'"),
        ("PATCH", "/v1/aliases/nope", {}, 404, "no alias named 'nope'"),
        ("DELETE", "/v1/aliases/nope", None, 404, "no alias named 'nope'"),
    ]  # fmt: skip
    for method, path, body, status, says in cases:
        response = harness.api.request(method, path, json=body)
        assert response.status_code == status, (method, path, response.text)
        assert says in response.text
    assert [a["name"] for a in harness.call("GET", "/v1/aliases")] == ["greet"]


def test_an_incompatible_node_is_refused_with_the_difference(
    harness: Harness, checkpoint: str
) -> None:
    other = write_checkpoint(harness.root / "v2.ckpt", {"name": "int"}, {"greeting": "str"})
    harness.create_node("v1", **local_node(checkpoint))
    harness.create_node("v2", **local_node(other))
    body = {"name": "greet", "nodes": [{"node": "v1", "weight": 50}, {"node": "v2", "weight": 50}]}
    refused = harness.api.post("/v1/aliases", json=body)
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert "node v2 is not compatible with alias greet (served by v1)" in detail
    assert "~ input name: str -> int" in detail
    assert "--allow-incompatible" in detail
    allowed = harness.call("POST", "/v1/aliases", 201, json={**body, "allow_incompatible": True})
    assert [n["node"] for n in allowed["nodes"]] == ["v1", "v2"]


def test_deleting_a_node_an_alias_uses_is_refused_unless_forced(
    harness: Harness, checkpoint: str
) -> None:
    harness.create_node("v3", **local_node(checkpoint))
    two_nodes(harness, checkpoint)
    split = [
        {"node": "v1", "weight": 50},
        {"node": "v2", "weight": 30},
        {"node": "v3", "weight": 20},
    ]
    harness.call("POST", "/v1/aliases", 201, json={"name": "greet", "nodes": split})
    harness.call("POST", "/v1/aliases", 201,
                 json={"name": "solo", "nodes": [{"node": "v1", "weight": 100}]})  # fmt: skip

    refused = harness.api.delete("/v1/nodes/v1", params={"force": False})
    assert refused.status_code == 409
    assert "alias greet, solo still points at node v1" in refused.json()["detail"]
    assert "--force" in refused.json()["detail"]
    assert harness.node("v1")["status"] == "Healthy"

    harness.call("DELETE", "/v1/nodes/v1", 202, params={"force": True})
    # v1's share goes to the others in proportion; an alias of v1 alone goes with it
    assert harness.call("GET", "/v1/aliases/greet")["nodes"] == [
        {"node": "v2", "weight": 60},
        {"node": "v3", "weight": 40},
    ]
    assert harness.api.get("/v1/aliases/solo").status_code == 404
    harness.reconcile()
    assert [a.name for a in harness.gateway.config.aliases] == ["greet"]
    assert harness.gateway.config.aliases[0].targets == (("v2", 60), ("v3", 40))
