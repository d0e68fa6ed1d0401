"""The gateway's model and rendered HAProxy config; every rendered config is checked by the real
``haproxy -c`` (skipped where haproxy is not installed, required where scripts/setup-engine ran)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from checkpoint2svc.errors import GatewayError
from checkpoint2svc.gateway import (
    Gateway,
    GatewayAlias,
    GatewayConfig,
    GatewayNode,
    GatewayServer,
    render_haproxy_config,
)
from checkpoint2svc.gateway.config import (
    DRAIN_FACTOR,
    REPLY_SCRIPT,
    plan_haproxy,
    runtime_commands,
    split_weights,
)

RUNTIME = Path("gw-runtime")  # for plans that are only compared


def haproxy_binary() -> str:
    try:
        return Gateway(Path("unused"))._binary()
    except GatewayError as exc:
        if os.environ.get("CHECKPOINT2SVC_REQUIRE_DOCKER") == "1":
            pytest.fail(str(exc))
        pytest.skip(f"{exc}; skipped here")


def checked(config: GatewayConfig, tmp_path: Path) -> str:
    """The rendered config, after the real haproxy found it valid and without warnings."""
    text = render_haproxy_config(config, tmp_path)
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    result = subprocess.run(
        [haproxy_binary(), "-c", "-f", str(path)], capture_output=True, text=True, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output and "ALERT" not in output, output
    return text


def server(sid: str, port: int, healthy: bool = True, grpc: bool = True) -> GatewayServer:
    return GatewayServer(sid, "127.0.0.1", port, port + 1 if grpc else None, healthy)


def greeter(*servers: GatewayServer, **options: object) -> GatewayNode:
    return GatewayNode("greeter", servers or (server("greeter-a", 9000),), **options)  # type: ignore[arg-type]


def lines_of(text: str, section: str) -> list[str]:
    """The stripped lines of one ``backend``/``frontend`` section."""
    lines = text.splitlines()
    start = lines.index(section)
    body = []
    for line in lines[start + 1 :]:
        if not line.startswith(" "):
            break
        body.append(line.strip())
    return body


def test_routes_for_rest_path_header_and_grpc(tmp_path: Path) -> None:
    text = checked(GatewayConfig(8090, (greeter(),)), tmp_path)
    frontend = lines_of(text, "frontend gateway")
    assert "bind 127.0.0.1:8090" in frontend
    assert any("path_reg ^/datasphere/v1/nodes/[^/:]+:execute$" in line for line in frontend)
    assert any("req.hdr(x-node-id)" in line for line in frontend)
    assert any(
        line.startswith("use_backend %[var(txn.kind)].%[var(txn.target)]") for line in frontend
    )
    http = lines_of(text, "backend node.greeter.http")
    assert "http-request set-path /execute if { var(txn.execute) -m bool }" in http
    assert "http-response set-header x-node-instance %s" in http
    assert "server greeter-a 127.0.0.1:9000 weight 1" in http
    grpc = lines_of(text, "backend node.greeter.grpc")
    assert "server greeter-a 127.0.0.1:9001 weight 1 proto h2" in grpc
    assert not any("set-path" in line for line in grpc)


def test_keep_alive_redispatch_and_retries(tmp_path: Path) -> None:
    defaults = lines_of(checked(GatewayConfig(8090, (greeter(),)), tmp_path), "defaults")
    for line in ("option http-keep-alive", "option redispatch", "retries 2"):
        assert line in defaults


def test_unhealthy_servers_are_disabled_not_removed(tmp_path: Path) -> None:
    node = greeter(server("greeter-a", 9000), server("greeter-b", 9010, healthy=False))
    text = checked(GatewayConfig(8090, (node,)), tmp_path)
    http = lines_of(text, "backend node.greeter.http")
    assert "server greeter-a 127.0.0.1:9000 weight 1" in http
    assert "server greeter-b 127.0.0.1:9010 weight 1 disabled" in http
    assert "server greeter-b 127.0.0.1:9011 weight 1 disabled proto h2" in lines_of(
        text, "backend node.greeter.grpc"
    )


def test_no_healthy_server_answers_503_json_and_grpc_unavailable(tmp_path: Path) -> None:
    text = checked(GatewayConfig(8090, (greeter(server("greeter-a", 9000, False)),)), tmp_path)
    http = " ".join(lines_of(text, "backend node.greeter.http"))
    assert "return status 503" in http and "NoHealthyInstance" in http
    assert 'grpc-status "14"' in " ".join(lines_of(text, "backend node.greeter.grpc"))


def test_http_only_node_refuses_grpc_and_custom_execute_path(tmp_path: Path) -> None:
    node = GatewayNode(
        "image", (server("image-a", 9000, grpc=False),), execute_path="/predict", grpc=False
    )
    text = checked(GatewayConfig(8090, (node,)), tmp_path)
    assert "http-request set-path /predict if { var(txn.execute) -m bool }" in lines_of(
        text, "backend node.image.http"
    )
    grpc = lines_of(text, "backend node.image.grpc")
    assert not any(line.startswith("server") for line in grpc)
    assert any('grpc-status "12"' in line and "serves HTTP only" in line for line in grpc)


def test_servers_without_grpc_port_stay_out_of_the_grpc_backend(tmp_path: Path) -> None:
    node = greeter(server("greeter-a", 9000), server("greeter-b", 9010, grpc=False))
    grpc = lines_of(checked(GatewayConfig(8090, (node,)), tmp_path), "backend node.greeter.grpc")
    assert [line.split()[1] for line in grpc if line.startswith("server")] == ["greeter-a"]


def test_timeouts_are_rendered(tmp_path: Path) -> None:
    node = greeter(request_timeout_s=2.5, idle_timeout_s=30)
    text = checked(GatewayConfig(8090, (node,)), tmp_path)
    assert "timeout server 2500ms" in lines_of(text, "backend node.greeter.http")
    assert "timeout http-keep-alive 30000ms" in lines_of(text, "defaults")


@pytest.mark.parametrize(("limit", "shown"), [(16 * 1024 * 1024, "16 MiB"), (1000, "1000 bytes")])
def test_body_limit(tmp_path: Path, limit: int, shown: str) -> None:
    text = checked(GatewayConfig(8090, (greeter(),), max_body_bytes=limit), tmp_path)
    frontend = lines_of(text, "frontend gateway")
    too_large = (
        f"use_backend gateway.body-too-large if {{ req.hdr_val(content-length) gt {limit} }}"
    )
    # the limit is checked before a node is chosen
    assert frontend.index(too_large) < next(
        i for i, line in enumerate(frontend) if line.startswith("use_backend %[var(txn.kind)]")
    )
    replies = lines_of(text, "backend gateway.body-too-large")
    assert all(f"gateway limit of {shown}" in line for line in replies if "return" in line)
    grpc, waiting, huge, *drained = replies
    assert 'grpc-status "8"' in grpc and grpc.endswith("if { var(txn.proto) -m str grpc }")
    # a client that waits for "100 Continue" has sent no body: the answer goes at once
    assert "return status 413" in waiting and "100-continue" in waiting
    # a body declared more than worth reading: at once too (the connection closes unread)
    assert huge.startswith("http-request return status 413")
    assert huge.endswith(f"if {{ req.hdr_val(content-length) gt {limit * DRAIN_FACTOR} }}")
    # any other: from the Lua service, after which HAProxy reads and drops the body
    assert drained[0] == "http-request set-var(txn.reply_status) int(413)"
    assert any(line.startswith("http-request set-var-fmt(txn.reply_body)") and
               f"gateway limit of {shown}" in line for line in drained)  # fmt: skip
    assert drained[-1] == "http-request use-service lua.reply"
    assert f'lua-load-per-thread "{REPLY_SCRIPT}"' in lines_of(text, "global")


def test_stats_port_serves_prometheus(tmp_path: Path) -> None:
    text = checked(GatewayConfig(8090, (greeter(),), stats_port=8091), tmp_path)
    stats = lines_of(text, "frontend gateway.stats")
    assert "bind 127.0.0.1:8091" in stats
    assert "http-request use-service prometheus-exporter if { path /metrics }" in stats
    assert "frontend gateway.stats" not in render_haproxy_config(
        GatewayConfig(8090, (greeter(),)), RUNTIME
    )


def test_an_empty_gateway_is_valid(tmp_path: Path) -> None:
    text = checked(GatewayConfig(8090, ()), tmp_path)
    assert "backend gateway.no-route" in text
    assert f"stats socket {tmp_path / 'haproxy.sock'} mode 600 level admin" in text


@pytest.mark.parametrize(
    ("make", "culprit"),
    [
        (lambda: GatewayNode("Greeter", ()), "'Greeter'"),
        (lambda: GatewayNode("a" * 64, ()), "a" * 64),
        (lambda: GatewayNode("greet er", ()), "'greet er'"),
        (lambda: GatewayNode("x.http", ()), "'x.http'"),
        (lambda: GatewayAlias("Main", (("greeter", 1),)), "'Main'"),
        (lambda: GatewayServer("Inst_1", "127.0.0.1", 9000, None, True), "'Inst_1'"),
        (lambda: GatewayServer("a", "127.0.0.1 x", 9000, None, True), "'127.0.0.1 x'"),
        (lambda: GatewayServer("a", "127.0.0.1", 70000, None, True), "70000"),
        (lambda: GatewayNode("greeter", (), execute_path="execute"), "'execute'"),
        (lambda: GatewayNode("greeter", (), execute_path="/a b"), "'/a b'"),
        (lambda: GatewayNode("greeter", (), request_timeout_s=0), "request_timeout_s"),
        (lambda: GatewayConfig(8090, (greeter(), greeter())), "node greeter"),
        (lambda: GatewayConfig(8090, (), stats_port=8090), "8090"),
        (lambda: GatewayConfig(8090, (), max_body_bytes=0), "max_body_bytes"),
        (
            lambda: GatewayConfig(8090, (greeter(), replace(greeter(), name="other"))),
            "instance id greeter-a",
        ),
        (lambda: GatewayConfig(8090, (), aliases=(GatewayAlias("main", (("x", 1),)),)), "node x"),
        (lambda: GatewayAlias("main", (("a", 1), ("a", 2))), "node a twice"),
        (lambda: GatewayAlias("main", (("a", -1),)), "weight -1"),
        (lambda: GatewayAlias("main", ()), "no target"),
    ],
)
def test_invalid_model_names_the_culprit(make: object, culprit: str) -> None:
    with pytest.raises(GatewayError) as caught:
        make()  # type: ignore[operator]
    assert culprit in str(caught.value)


def test_alias_with_different_execute_paths_is_refused() -> None:
    other = GatewayNode("other", (server("other-a", 9100),), execute_path="/predict")
    with pytest.raises(GatewayError, match="different execute paths"):
        GatewayConfig(8090, (greeter(), other), aliases=(
            GatewayAlias("main", (("greeter", 50), ("other", 50))),
        ))  # fmt: skip


def test_alias_weights_give_each_node_its_share(tmp_path: Path) -> None:
    a = GatewayNode("a", (server("a-1", 9000), server("a-2", 9010), server("a-3", 9020, False)))
    b = GatewayNode("b", (server("b-1", 9100),))
    c = GatewayNode("c", (server("c-1", 9200, False),))
    config = GatewayConfig(
        8090, (a, b, c), aliases=(GatewayAlias("main", (("a", 80), ("b", 20), ("c", 50))),)
    )
    text = checked(config, tmp_path)
    weights = {
        line.split()[1]: int(line.split()[4])
        for line in lines_of(text, "backend alias.main.http")
        if line.startswith("server")
    }
    # a: 80 over its 2 healthy servers; b: 20 on its one; c has no healthy server: nothing
    assert weights["a-3"] == 0 and weights["c-1"] == 0
    share_a = (weights["a-1"] + weights["a-2"]) / sum(weights.values())
    assert share_a == pytest.approx(0.8, abs=0.01)
    assert weights["a-1"] == weights["a-2"]
    assert max(weights.values()) <= 256
    assert "balance roundrobin" in lines_of(text, "backend alias.main.http")
    frontend = lines_of(text, "frontend gateway")
    assert any("path_reg ^/datasphere/v1/aliases/[^/:]+:execute$" in line for line in frontend)
    assert any("req.hdr(x-node-alias)" in line for line in frontend)


def test_split_weights_edge_cases() -> None:
    healthy, sick = server("h", 1), server("s", 3, healthy=False)
    assert split_weights([]) == {}
    assert split_weights([(0, (healthy,))]) == {"h": 0}
    assert split_weights([(100, (sick,))]) == {"s": 0}
    tiny = split_weights([(99, (server("x", 5),)), (1, (healthy,))])
    assert tiny == {"x": 256, "h": 3}  # never rounded down to 0 while the node has weight


def test_health_and_weight_changes_need_no_reload() -> None:
    both = GatewayConfig(8090, (greeter(server("greeter-a", 9000), server("greeter-b", 9010)),))
    drained = GatewayConfig(
        8090, (greeter(server("greeter-a", 9000), server("greeter-b", 9010, healthy=False)),)
    )
    old, new = plan_haproxy(both, RUNTIME), plan_haproxy(drained, RUNTIME)
    assert runtime_commands(old, new) == (
        "set server node.greeter.http/greeter-b state maint",
        "set server node.greeter.grpc/greeter-b state maint",
    )
    assert runtime_commands(new, old) == (
        "set server node.greeter.http/greeter-b state ready",
        "set server node.greeter.grpc/greeter-b state ready",
    )
    assert runtime_commands(old, old) == ()


def test_other_changes_need_a_reload() -> None:
    base = GatewayConfig(8090, (greeter(),))
    plan = plan_haproxy(base, RUNTIME)
    for changed in (
        GatewayConfig(8090, (greeter(server("greeter-a", 9000), server("greeter-b", 9010)),)),
        GatewayConfig(8090, (greeter(server("greeter-a", 9005)),)),
        GatewayConfig(8090, (greeter(request_timeout_s=5),)),
        GatewayConfig(8090, (greeter(),), max_body_bytes=10),
    ):
        assert runtime_commands(plan, plan_haproxy(changed, RUNTIME)) is None


def test_missing_haproxy_says_how_to_install(tmp_path: Path) -> None:
    gateway = Gateway(tmp_path, haproxy="no-such-haproxy-binary")
    with pytest.raises(GatewayError, match="apt-get install haproxy"):
        gateway.start(GatewayConfig(8090, ()))
    assert not gateway.running()
    assert not gateway.adopt()


def test_a_config_haproxy_rejects_is_a_gateway_error_with_its_message(tmp_path: Path) -> None:
    gateway = Gateway(tmp_path)
    with pytest.raises(GatewayError, match="haproxy rejected the generated config") as caught:
        gateway._install(haproxy_binary(), "frontend x\n    no-such-keyword\n")
    assert "no-such-keyword" in str(caught.value)
    assert not (tmp_path / "haproxy.cfg").exists()  # the old config (none) stays


def test_a_weight_switch_adds_capacity_before_it_takes_it_away() -> None:
    """Applied one by one, the commands must never leave the alias without a usable server
    (HAProxy would answer 503 in between): the rising weight goes first."""
    v1 = GatewayNode("v1", (server("v1-a", 9000),))
    v2 = GatewayNode("v2", (server("v2-a", 9010),))

    def weights(a: int, b: int) -> GatewayConfig:
        return GatewayConfig(
            8090, (v1, v2), aliases=(GatewayAlias("greet", (("v1", a), ("v2", b))),)
        )

    commands = runtime_commands(
        plan_haproxy(weights(100, 0), RUNTIME), plan_haproxy(weights(0, 100), RUNTIME)
    )
    assert commands is not None
    http = [c for c in commands if "alias.greet.http" in c]
    assert http == [
        "set server alias.greet.http/v2-a weight 256",
        "set server alias.greet.http/v1-a weight 0",
    ]


def test_haproxy_leaves_cores_to_the_instances() -> None:
    from checkpoint2svc.gateway.config import gateway_threads

    assert [gateway_threads(n) for n in (1, 2, 3, 8)] == [1, 1, 1, 4]
    assert "nbthread " in render_haproxy_config(GatewayConfig(8090, (greeter(),)), RUNTIME)


def test_an_instance_with_a_unix_socket_is_reached_through_it_for_rest_only(
    tmp_path: Path,
) -> None:
    server = GatewayServer("greeter-0", "127.0.0.1", 8001, 9001, True, http_socket="/run/a.sock")
    text = checked(GatewayConfig(8090, (GatewayNode("greeter", (server,)),)), tmp_path)
    assert "server greeter-0 unix@/run/a.sock weight 1" in text
    assert "server greeter-0 127.0.0.1:9001 weight 1 proto h2" in text  # gRPC keeps the port
    for bad in ("relative.sock", "/with space.sock", "/quote'.sock"):
        with pytest.raises(GatewayError, match="absolute path"):
            GatewayServer("greeter-0", "127.0.0.1", 8001, 9001, True, http_socket=bad)
