"""The gateway's model: which nodes and aliases the one public port serves, and every decision
about how HAProxy serves them.

``GatewayConfig`` is what the controller hands over (validated on construction). ``plan_haproxy``
turns it into an ``HaproxyPlan``: the backends, servers, weights, timeouts and the replies that
HAProxy makes itself. ``templates/haproxy.cfg.j2`` renders that plan and decides nothing.

The template's frontend sets three transaction variables that the conditions built here read:
``txn.proto`` (``grpc`` or ``http``), ``txn.kind`` (``node`` or ``alias``) and ``txn.target``
(the node's or alias's name, from the path or the ``x-node-id`` / ``x-node-alias`` header).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from checkpoint2svc.codegen.resources import template_environment
from checkpoint2svc.errors import GatewayError

NAME_CHARS = re.compile(r"[a-z0-9-]+")
MAX_NAME, MAX_SERVER_ID = 63, 128
HOSTNAME = re.compile(r"[A-Za-z0-9.-]{1,253}")
EXECUTE_PATH = re.compile(r"/[A-Za-z0-9._~/:-]*")
MAX_WEIGHT = 256  # HAProxy's largest server weight
STATS_SOCKET = "haproxy.sock"  # the worker's runtime API, in the runtime directory
# gRPC status codes of the replies HAProxy makes itself
GRPC_INVALID_ARGUMENT, GRPC_NOT_FOUND, GRPC_RESOURCE_EXHAUSTED = 3, 5, 8
GRPC_UNIMPLEMENTED, GRPC_UNAVAILABLE = 12, 14
IS_GRPC = "{ var(txn.proto) -m str grpc }"
# nbsrv is 0 in an old worker that finishes its connections after a reload: it still routes them
NO_USABLE_SERVER = "{ nbsrv eq 0 } !{ stopping }"
# A body over the limit is read and dropped after the 413 (reply.lua says why) when it is
# declared at most DRAIN_FACTOR times the limit, so what a client makes HAProxy read is bounded
# by that and by `timeout client`; an instance drains as much (runtime/rest.py).
DRAIN_FACTOR = 4
REPLY_SCRIPT = Path(__file__).resolve().with_name("reply.lua")


# --- the model the controller builds ------------------------------------------------------------
@dataclass(frozen=True)
class GatewayServer:
    """One instance of a node; only healthy ones get new requests."""

    id: str
    host: str
    http_port: int
    grpc_port: int | None
    healthy: bool
    http_socket: str = ""
    """A unix socket the instance also serves HTTP on: the gateway prefers it to the port (on
    this machine, a request through it costs both processes less CPU than TCP over loopback)."""

    def __post_init__(self) -> None:
        _check_name("instance id", self.id, MAX_SERVER_ID)
        _check_host(self.id, self.host)
        _check_port(f"instance {self.id}'s http_port", self.http_port)
        if self.grpc_port is not None:
            _check_port(f"instance {self.id}'s grpc_port", self.grpc_port)
        if self.http_socket and (
            not os.path.isabs(self.http_socket) or any(c in self.http_socket for c in " \t\n'\"#")
        ):
            raise GatewayError(
                f"instance {self.id}: http_socket {self.http_socket!r} must be an absolute path "
                "without spaces or quotes"
            )

    @property
    def http_address(self) -> str:
        return (
            f"unix@{self.http_socket}" if self.http_socket else _address(self.host, self.http_port)
        )


@dataclass(frozen=True)
class GatewayNode:
    """A node: its instances, its timeouts, and what its ``:execute`` path is rewritten to."""

    name: str
    servers: tuple[GatewayServer, ...]
    request_timeout_s: float = 60
    idle_timeout_s: float = 300
    execute_path: str = "/execute"
    grpc: bool = True

    def __post_init__(self) -> None:
        _check_name("node name", self.name, MAX_NAME)
        for label, value in (("request_timeout_s", self.request_timeout_s),
                             ("idle_timeout_s", self.idle_timeout_s)):  # fmt: skip
            if not value > 0:
                raise GatewayError(f"node {self.name}: {label} is {value}; give a positive number")
        if not EXECUTE_PATH.fullmatch(self.execute_path):
            raise GatewayError(
                f"node {self.name}: execute_path {self.execute_path!r} is not a plain absolute "
                f"path; use letters, digits and ._~/:- after a leading /, e.g. /execute"
            )


STICKY_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def alias_balance(alias: GatewayAlias) -> str:
    """Round robin for an exact weighted split; with a sticky key, a consistent hash of it
    (weights still hold across keys, and a key stays on its instance while that one is up)."""
    if alias.sticky_header:
        return f"hash req.hdr({alias.sticky_header})"
    if alias.sticky_cookie:
        return f"hash req.cook({alias.sticky_cookie})"
    return "roundrobin"


@dataclass(frozen=True)
class GatewayAlias:
    """A stable name over nodes: each (node, weight) target gets weight/sum of the requests."""

    name: str
    targets: tuple[tuple[str, int], ...]
    sticky_header: str = ""
    """Requests with the same value of this header go to the same instance (shared mode)."""
    sticky_cookie: str = ""
    """The same, by a cookie's value."""

    def __post_init__(self) -> None:
        _check_name("alias name", self.name, MAX_NAME)
        for what, value in (("header", self.sticky_header), ("cookie", self.sticky_cookie)):
            if value and not STICKY_KEY.match(value):
                raise GatewayError(
                    f"alias {self.name}: sticky {what} {value!r} is not a valid name "
                    "(letters, digits, - and _)"
                )
        if self.sticky_header and self.sticky_cookie:
            raise GatewayError(f"alias {self.name}: give a sticky header or a cookie, not both")
        if not self.targets:
            raise GatewayError(f"alias {self.name} has no target nodes; give at least one")
        nodes = [node for node, _ in self.targets]
        for node, weight in self.targets:
            if nodes.count(node) > 1:
                raise GatewayError(f"alias {self.name} names node {node} twice; list it once")
            if weight < 0:
                raise GatewayError(
                    f"alias {self.name}: node {node} has weight {weight}; weights are >= 0"
                )


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway serves on its one public port (and the optional stats port)."""

    port: int
    nodes: tuple[GatewayNode, ...]
    max_body_bytes: int = 16 * 1024 * 1024
    stats_port: int | None = None
    aliases: tuple[GatewayAlias, ...] = ()

    def __post_init__(self) -> None:
        _check_port("the gateway port", self.port)
        if self.stats_port is not None:
            _check_port("the stats port", self.stats_port)
            if self.stats_port == self.port:
                raise GatewayError(
                    f"the stats port and the gateway port are both {self.port}; pick another one"
                )
        if self.max_body_bytes < 1:
            raise GatewayError(f"max_body_bytes is {self.max_body_bytes}; give a positive size")
        _check_unique("node", [n.name for n in self.nodes])
        _check_unique("alias", [a.name for a in self.aliases])
        _check_unique("instance id", [s.id for n in self.nodes for s in n.servers])
        nodes = {n.name: n for n in self.nodes}
        for alias in self.aliases:
            for node, _ in alias.targets:
                if node not in nodes:
                    raise GatewayError(
                        f"alias {alias.name} targets node {node}, which the gateway does not "
                        f"serve; create the node first or drop it from the alias"
                    )
            paths = {nodes[node].execute_path for node, _ in alias.targets}
            if len(paths) > 1:
                raise GatewayError(
                    f"alias {alias.name} targets nodes with different execute paths "
                    f"({', '.join(sorted(paths))}); an alias needs one execute path"
                )

    def node(self, name: str) -> GatewayNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise GatewayError(f"the gateway serves no node named {name}")


def _check_name(what: str, value: str, max_length: int) -> None:
    if len(value) > max_length or not NAME_CHARS.fullmatch(value):
        raise GatewayError(
            f"{what} {value!r} is not valid: use 1 to {max_length} lowercase letters, "
            f"digits and '-'"
        )


def _check_host(server: str, host: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not HOSTNAME.fullmatch(host):
            raise GatewayError(
                f"instance {server}: host {host!r} is neither an IP address nor a host name; "
                f"use e.g. 127.0.0.1"
            ) from None


def _check_port(what: str, port: int) -> None:
    if not 0 < port < 65536:
        raise GatewayError(f"{what} is {port}; give a TCP port between 1 and 65535")


def _check_unique(what: str, names: list[str]) -> None:
    for name in names:
        if names.count(name) > 1:
            raise GatewayError(f"{what} {name} appears twice in the gateway config; keep one")


# --- the plan the template renders ---------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    """A response HAProxy makes itself (``http-request return``) when ``condition`` holds.

    ``body`` and header values are HAProxy log-format strings: ``%[...]`` is evaluated.
    """

    status: int
    condition: str = ""  # HAProxy ACL expression; empty: always
    content_type: str = ""
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    drains_body: bool = False
    """Sent by a Lua service (``reply.lua``), after which HAProxy reads and drops the rest of the
    request's body and keeps the connection; ``http-request return`` closes with it unread, and
    a client still writing the body gets a reset instead of the reply. No ``headers`` then."""

    def __post_init__(self) -> None:
        if "'" in self.body or any('"' in v for _, v in self.headers):
            raise ValueError(f"a reply cannot quote {self.body!r} / {self.headers!r}")
        if self.drains_body and self.headers:
            raise ValueError("a reply that drains the body sends no extra headers")


@dataclass(frozen=True)
class ProxyServer:
    """One ``server`` line; ``enabled`` and ``weight`` can change at runtime without a reload."""

    name: str
    address: str
    weight: int
    enabled: bool


@dataclass(frozen=True)
class ProxyBackend:
    name: str
    balance: str  # leastconn for a node's instances, roundrobin for an alias's exact split
    timeout_server: str
    h2: bool  # talk HTTP/2 (gRPC) to the servers
    set_path: str  # the path that the :execute form is rewritten to; "" keeps the path
    replies: tuple[Reply, ...]  # tried in order before a server is chosen
    servers: tuple[ProxyServer, ...]
    hash_type: str = ""  # "consistent" with a hash balance (sticky aliases)
    alias_header: str = ""
    """Sent to the instances as ``x-node-alias`` (their alias_* metrics); "" removes the header
    so that a client cannot make node traffic count as an alias's."""


@dataclass(frozen=True)
class HaproxyPlan:
    port: int
    stats_port: int | None
    stats_socket: str
    hard_stop_after: str
    timeout_client: str
    timeout_keep_alive: str
    max_body_bytes: int
    target_pattern: str  # what a routable node or alias name from the request looks like
    body_too_large: str  # the condition that sends a request to the body-limit replies
    body_too_large_replies: tuple[Reply, ...]  # before routing to a node or alias
    no_route_replies: tuple[Reply, ...]  # the request named no node or alias that is served
    error_bodies: tuple[tuple[int, str], ...]  # HAProxy's own 502/503/504 as JSON
    backends: tuple[ProxyBackend, ...]
    threads: int = 1
    lua_script: str = str(REPLY_SCRIPT)


# HAProxy's own errors (no instance reachable, none answered in time) in the instances' JSON form
ERROR_BODIES = (
    (502, "BadGateway", "the instance closed the connection or answered garbage"),
    (503, "Unavailable", "no instance could take the request; retry later"),
    (504, "GatewayTimeout", "the instance did not answer within the request timeout"),
)


def render_haproxy_config(config: GatewayConfig, runtime_dir: Path) -> str:
    """The haproxy.cfg text for ``config``; its runtime socket lives in ``runtime_dir``."""
    return render_plan(plan_haproxy(config, runtime_dir))


CONFIG_MARK_PATH = "/.checkpoint2svc/gateway-config"
"""Answers the mark of the config a worker serves: a reload is over when new connections get
the new one (the old worker accepts connections until the master has told it to stop)."""
_CONFIG_MARK = re.compile(r'string "([0-9a-f]{16})" if \{ path ' + re.escape(CONFIG_MARK_PATH))


def render_plan(plan: HaproxyPlan) -> str:
    """The config text; it carries a mark derived from the rest of it (see CONFIG_MARK_PATH)."""
    template = template_environment().get_template("haproxy.cfg.j2")
    unmarked = template.render(plan=plan, config_mark="", config_mark_path=CONFIG_MARK_PATH)
    mark = hashlib.sha256(unmarked.encode()).hexdigest()[:16]
    return template.render(plan=plan, config_mark=mark, config_mark_path=CONFIG_MARK_PATH)


def config_mark(text: str) -> str | None:
    """The mark of a config text that ``render_plan`` made."""
    found = _CONFIG_MARK.search(text)
    return found.group(1) if found else None


def plan_haproxy(config: GatewayConfig, runtime_dir: Path) -> HaproxyPlan:
    request_timeouts = [n.request_timeout_s for n in config.nodes] or [60.0]
    idle = max([n.idle_timeout_s for n in config.nodes] or [300.0])
    backends: list[ProxyBackend] = []
    for node in config.nodes:
        backends += _node_backends(node)
    for alias in config.aliases:
        backends += _alias_backends(alias, config)
    return HaproxyPlan(
        port=config.port,
        stats_port=config.stats_port,
        stats_socket=str(runtime_dir.absolute() / STATS_SOCKET),
        # an old worker finishes its in-flight requests, but not for longer than the longest one
        hard_stop_after=_duration(max(request_timeouts) + 30),
        timeout_client=_duration(max(idle, *request_timeouts)),
        timeout_keep_alive=_duration(idle),
        max_body_bytes=config.max_body_bytes,
        target_pattern=f"^{NAME_CHARS.pattern[:-1]}{{1,{MAX_NAME}}}$",
        body_too_large=_declared_over(config.max_body_bytes),
        body_too_large_replies=_body_limit_replies(config.max_body_bytes),
        no_route_replies=_no_route_replies(),
        error_bodies=tuple((status, _json_body(name, why)) for status, name, why in ERROR_BODIES),
        backends=tuple(backends),
        threads=gateway_threads(),
    )


def gateway_threads(cores: int | None = None) -> int:
    """HAProxy's threads: one per two cores. The instances behind it need the cores too; on the
    2-core machines here one thread served 0.90x where two served 0.80x (bench_gateway.py)."""
    return max(1, (cores or os.cpu_count() or 1) // 2)


def runtime_commands(old: HaproxyPlan, new: HaproxyPlan) -> tuple[str, ...] | None:
    """The runtime API commands that turn a worker running ``old`` into one running ``new``,
    or None when anything but servers' state and weight differs (then only a reload will do).

    Capacity is added before it is taken away (servers made ready and weights raised first,
    then weights lowered and servers put in maintenance): applied one by one, the commands never
    leave a backend without a usable server on the way, which would answer 503."""
    if _shape(old) != _shape(new):
        return None
    adds: list[str] = []
    removes: list[str] = []
    for old_backend, backend in zip(old.backends, new.backends, strict=True):
        for was, server in zip(old_backend.servers, backend.servers, strict=True):
            target = f"{backend.name}/{server.name}"
            if server.enabled and not was.enabled:
                adds.append(f"set server {target} state ready")
            if server.weight > was.weight:
                adds.append(f"set server {target} weight {server.weight}")
            elif server.weight < was.weight:
                removes.append(f"set server {target} weight {server.weight}")
            if was.enabled and not server.enabled:
                removes.append(f"set server {target} state maint")
    return (*adds, *removes)


def _shape(plan: HaproxyPlan) -> HaproxyPlan:
    return replace(plan, backends=tuple(
        replace(b, servers=tuple(replace(s, weight=0, enabled=True) for s in b.servers))
        for b in plan.backends
    ))  # fmt: skip


def backend_name(kind: str, name: str, proto: str) -> str:
    """``node.greeter.http``: what the frontend's ``use_backend`` builds from the request."""
    return f"{kind}.{name}.{proto}"


def _node_backends(node: GatewayNode) -> list[ProxyBackend]:
    timeout = _duration(node.request_timeout_s)
    http = ProxyBackend(
        name=backend_name("node", node.name, "http"),
        balance="leastconn",
        timeout_server=timeout,
        h2=False,
        set_path=node.execute_path,
        replies=(_no_healthy_json("node", node.name),),
        servers=tuple(ProxyServer(s.id, s.http_address, 1, s.healthy) for s in node.servers),
    )
    grpc_servers = tuple(
        ProxyServer(s.id, _address(s.host, s.grpc_port), 1, s.healthy)
        for s in node.servers
        if s.grpc_port is not None
    )
    replies = (
        (_no_healthy_grpc("node", node.name),) if node.grpc else (_http_only("node", node.name),)
    )
    grpc = ProxyBackend(
        name=backend_name("node", node.name, "grpc"),
        balance="leastconn",
        timeout_server=timeout,
        h2=True,
        set_path="",
        replies=replies,
        servers=grpc_servers if node.grpc else (),
    )
    return [http, grpc]


def _alias_backends(alias: GatewayAlias, config: GatewayConfig) -> list[ProxyBackend]:
    targets = [(config.node(name), weight) for name, weight in alias.targets]
    timeout = _duration(max(node.request_timeout_s for node, _ in targets))
    http_weights = split_weights([(weight, node.servers) for node, weight in targets])
    grpc_targets = [
        (weight, tuple(s for s in node.servers if s.grpc_port is not None))
        for node, weight in targets
        if node.grpc
    ]
    grpc_weights = split_weights(grpc_targets)
    http = ProxyBackend(
        name=backend_name("alias", alias.name, "http"),
        balance=alias_balance(alias),
        hash_type="consistent" if alias.sticky_header or alias.sticky_cookie else "",
        alias_header=alias.name,
        timeout_server=timeout,
        h2=False,
        set_path=targets[0][0].execute_path,
        replies=(_no_healthy_json("alias", alias.name),),
        servers=tuple(
            ProxyServer(s.id, s.http_address, http_weights[s.id], s.healthy)
            for node, _ in targets
            for s in node.servers
        ),
    )
    grpc = ProxyBackend(
        name=backend_name("alias", alias.name, "grpc"),
        balance=alias_balance(alias),
        hash_type="consistent" if alias.sticky_header or alias.sticky_cookie else "",
        alias_header=alias.name,
        timeout_server=timeout,
        h2=True,
        set_path="",
        replies=(
            (_no_healthy_grpc("alias", alias.name),)
            if grpc_targets
            else (_http_only("alias", alias.name),)
        ),
        servers=tuple(
            ProxyServer(s.id, _address(s.host, s.grpc_port), grpc_weights[s.id], s.healthy)
            for _, servers in grpc_targets
            for s in servers
            if s.grpc_port is not None
        ),
    )
    return [http, grpc]


def split_weights(targets: list[tuple[int, tuple[GatewayServer, ...]]]) -> dict[str, int]:
    """HAProxy server weights (0..256) such that each target (a node's weight and its servers)
    gets its weight's share of the requests, spread evenly over its healthy servers. A node
    without a healthy server gets nothing: its share goes to the others."""
    raw: dict[str, float] = {}
    for weight, servers in targets:
        healthy = sum(s.healthy for s in servers)
        for server in servers:
            raw[server.id] = weight / healthy if server.healthy and weight > 0 else 0.0
    top = max(raw.values(), default=0.0)
    return {
        sid: max(1, round(share * MAX_WEIGHT / top)) if share > 0 else 0
        for sid, share in raw.items()
    }


def _address(host: str, port: int | None) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def _size(n: int) -> str:
    mib = 1024 * 1024
    return f"{n // mib} MiB" if n % mib == 0 else f"{n} bytes"


def _json_body(error_name: str, message: str) -> str:
    """DataSphere-style error JSON, as the instances' own errors look (``runtime.rest``)."""
    return json.dumps({"error_name": error_name, "error_message": message, "traceback": []})


def _grpc(status: int, code: int, message: str, condition: str = "") -> Reply:
    """A trailers-only gRPC reply: HTTP 200 with grpc-status and grpc-message headers."""
    return Reply(status, condition, headers=(("grpc-status", str(code)), ("grpc-message", message)))


def _declared_over(size: int) -> str:
    return f"{{ req.hdr_val(content-length) gt {size} }}"


def _body_limit_replies(limit: int) -> tuple[Reply, ...]:
    """For a request whose declared body is over ``limit``. A chunked one is not known here:
    HAProxy streams it, and the instance's own limit answers it."""
    message = (
        f"the request body of %[req.hdr_val(content-length)] bytes exceeds the gateway limit of "
        f"{_size(limit)} ({limit} bytes); send a smaller request"
    )
    body = _json_body("PayloadTooLarge", message)
    return (
        # HTTP/2 ends just the stream: nothing to drain
        _grpc(200, GRPC_RESOURCE_EXHAUSTED, message, IS_GRPC),
        # the client waits for "100 Continue" before it sends the body: it sends nothing
        Reply(413, "{ req.hdr(expect) -m str -i 100-continue }", "application/json", body),
        # more than is worth reading: a client that is still writing may see a reset
        Reply(413, _declared_over(limit * DRAIN_FACTOR), "application/json", body),
        # the body is read and dropped: a client that writes all of it before it reads gets this
        Reply(413, "", "application/json", body, drains_body=True),
    )


def _no_route_replies() -> tuple[Reply, ...]:
    no_target = "!{ var(txn.target) -m found }"
    how = (
        "name a node: POST /datasphere/v1/nodes/NODE:execute, or send the header x-node-id "
        "(x-node-alias for an alias) with any path"
    )
    replies = [
        _grpc(200, GRPC_INVALID_ARGUMENT, f"{how} (gRPC: as metadata)", f"{IS_GRPC} {no_target}"),
        Reply(404, no_target, "application/json", _json_body("NoRoute", how)),
    ]
    for kind in ("node", "alias"):
        is_kind = f"{{ var(txn.kind) -m str {kind} }}"
        missing = (
            f"the gateway serves no {kind} named %[var(txn.target),{{escape}}]; check the name"
        )
        replies += [
            _grpc(200, GRPC_NOT_FOUND, missing.format(escape="url_enc"), f"{IS_GRPC} {is_kind}"),
            Reply(404, is_kind, "application/json",
                  _json_body(f"{kind.capitalize()}NotFound", missing.format(escape="json(utf8s)"))),
        ]  # fmt: skip
    return tuple(replies)


def _no_healthy_json(kind: str, name: str) -> Reply:
    message = f"{kind} {name} has no healthy instance right now; retry later"
    return Reply(
        503, NO_USABLE_SERVER, "application/json", _json_body("NoHealthyInstance", message)
    )


def _no_healthy_grpc(kind: str, name: str) -> Reply:
    message = f"{kind} {name} has no healthy instance right now; retry later"
    return _grpc(200, GRPC_UNAVAILABLE, message, NO_USABLE_SERVER)


def _http_only(kind: str, name: str) -> Reply:
    path = "nodes" if kind == "node" else "aliases"
    message = f"{kind} {name} serves HTTP only; call POST /datasphere/v1/{path}/{name}:execute"
    return _grpc(200, GRPC_UNIMPLEMENTED, message)
