"""The controller's commands: ``up``, ``down``, ``status``, ``node ...``, ``alias ...`` and
``client`` (thin: parse, call the controller's API, print)."""

from __future__ import annotations

import argparse
import json
import shlex
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from checkpoint2svc.control.home import DEFAULT_API_PORT, DEFAULT_GATEWAY_PORT, Home, default_home
from checkpoint2svc.control.models import NodeSpec, NodeStatus
from checkpoint2svc.control.views import (
    AliasCreate,
    AliasPatch,
    AliasView,
    Endpoint,
    NodePatch,
    NodeView,
    View,
)
from checkpoint2svc.errors import Checkpoint2SvcError

if TYPE_CHECKING:
    from checkpoint2svc.control.api_client import ControllerClient


def home_of(args: argparse.Namespace) -> Home:
    """The controller's home a command names with ``--home`` (see ``home_option``)."""
    return Home(Path(args.home) if args.home else default_home())


def home_option() -> argparse.ArgumentParser:
    """The ``--home`` option, as a parent parser for every command that talks to a controller."""
    home = argparse.ArgumentParser(add_help=False)
    home.add_argument("--home", metavar="DIR",
                      help="the controller's directory (default $CHECKPOINT2SVC_HOME or "
                      "~/.checkpoint2svc)")  # fmt: skip
    return home


def _client(args: argparse.Namespace) -> ControllerClient:
    from checkpoint2svc.control.api_client import ControllerClient

    return ControllerClient(home_of(args))


def cmd_up(args: argparse.Namespace) -> int:
    from checkpoint2svc.control.api_client import start_controller

    info = start_controller(home_of(args), args.port, args.gateway_port)
    print(f"controller {info.controller_id} running (pid {info.pid})")
    print(f"  API:     {info.api_url} (token in {home_of(args).token_file})")
    print(f"  gateway: http://127.0.0.1:{info.gateway_port} (REST and gRPC)")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from checkpoint2svc.control.api_client import stop_controller

    stopped = stop_controller(home_of(args), everything=args.all)
    if not stopped:
        print("the controller was not running")
    elif args.all:
        print("controller stopped; its nodes were deleted and the gateway stopped")
    else:
        print("controller stopped; its nodes and the gateway keep running until `up` adopts them")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    client = _client(args)
    status = client.status()
    nodes = client.nodes()
    print(f"controller {status.controller_id}: API {client.info.api_url}, "
          f"gateway {status.gateway}, {len(nodes)} node(s)")  # fmt: skip
    for node in nodes:
        print(f"  {node.name}: {node.status} ({_healthy(node)} healthy)")
    return 0


def _healthy(node: NodeView) -> str:
    return f"{node.healthy_instances}/{len(node.instances)}"


def _given(**values: object) -> dict[str, object]:
    """The options given on the command line (argparse leaves the others None)."""
    return {name: value for name, value in values.items() if value is not None}


def _patch_from_args(args: argparse.Namespace) -> NodePatch:
    """The node settings given as options (``node create`` and ``node update``)."""
    changes = _given(
        checkpoint=args.checkpoint and str(Path(args.checkpoint).resolve()), image=args.image,
        backend=args.backend, port=args.port, grpc_port=args.grpc_port, protocol=args.protocol,
        request_timeout_s=args.request_timeout, idle_timeout_s=args.idle_timeout,
        min_instances=args.min, max_instances=args.max,
        maintenance_limit=args.maintenance_limit,
    )  # fmt: skip
    if args.no_grpc:
        changes["grpc_port"] = None
    nested = {
        "health": _given(
            kind="grpc" if args.health_grpc_service is not None else None,
            path=args.health_path, grpc_service=args.health_grpc_service,
            timeout_s=args.health_timeout, interval_s=args.health_interval,
            fail_threshold=args.health_fails, pass_threshold=args.health_passes,
            start_period_s=args.health_start_period, port=args.health_port,
        ),
        "telemetry": _given(path=args.metrics_path, port=args.metrics_port),
        "autoscaling": _given(
            target_in_flight=args.target_in_flight, up_window_s=args.scale_up_window,
            down_window_s=args.scale_down_window,
        ),
    }  # fmt: skip
    changes.update({name: values for name, values in nested.items() if values})
    if args.env:
        changes["env"] = dict(item.split("=", 1) for item in args.env)
    return NodePatch.model_validate(changes)


def cmd_node_create(args: argparse.Namespace) -> int:
    from checkpoint2svc.backends.base import default_backend_name

    patch = _patch_from_args(args)
    spec = patch.applied_to(NodeSpec(name=args.name))
    if patch.backend is None:
        spec = replace(spec, backend=default_backend_name())
    if patch.min_instances is not None and patch.max_instances is None:
        spec = replace(spec, max_instances=max(patch.min_instances, 1))
    node = _client(args).create_node(spec)
    print(f"node {node.name} created ({node.spec.backend} backend); "
          f"`checkpoint2svc node get {node.name}` shows its status")  # fmt: skip
    if args.wait:
        return _wait_healthy(args, args.name)
    return 0


def _wait_healthy(args: argparse.Namespace, name: str, timeout: float = 600) -> int:
    client = _client(args)
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        node = client.node(name)
        line = f"{node.status}: {_healthy(node)} healthy"
        if node.build:
            line = f"building the image: {node.build}"
        if line != last:
            print(f"  {line}", flush=True)
            last = line
        if node.status == NodeStatus.HEALTHY:
            _print_endpoint(node.endpoint)
            return 0
        if node.status == NodeStatus.UNHEALTHY:
            for event in node.events[-5:]:
                print(f"  event: {event.message}")
        time.sleep(0.5)
    print(f"node {name} was not Healthy within {timeout:.0f} s")
    return 1


def cmd_node_list(args: argparse.Namespace) -> int:
    nodes = _client(args).nodes()
    if args.json:
        _print_json(nodes)
        return 0
    print(f"{'NAME':24} {'STATUS':10} {'INSTANCES':10} {'BACKEND':8} SOURCE")
    for n in nodes:
        source = n.spec.checkpoint or n.spec.image
        print(f"{n.name:24} {n.status:10} {_healthy(n):10} {n.spec.backend:8} {source}")
    return 0


def _print_json(views: View | Sequence[View]) -> None:
    """What ``--json`` prints: the API's answer as it came."""
    data = (
        views.model_dump(mode="json")
        if isinstance(views, View)
        else [view.model_dump(mode="json") for view in views]
    )
    print(json.dumps(data, indent=2))


def _print_endpoint(endpoint: Endpoint) -> None:
    print(f"  REST: {endpoint.rest}\n  gRPC: {endpoint.grpc}")


def cmd_node_get(args: argparse.Namespace) -> int:
    node = _client(args).node(args.name)
    if args.json:
        _print_json(node)
        return 0
    spec = node.spec
    bounds = f"min {spec.min_instances}, max {spec.max_instances}, {spec.backend}"
    print(f"node {node.name}: {node.status}  ({node.healthy_instances} healthy, {bounds})")
    _print_endpoint(node.endpoint)
    if node.build:
        print(f"  building the image: {node.build}")
    print("  instances:")
    for i in node.instances:
        error = f"  ({i.last_error})" if i.last_error else ""
        print(f"    {i.id}: {i.status}  {i.host}:{i.http_port}{error}")
    print("  recent events:")
    for e in node.events:
        stamp = time.strftime("%H:%M:%S", time.localtime(e.time))
        who = f" [{e.instance}]" if e.instance else ""
        print(f"    {stamp}{who} {e.message}")
    return 0


def cmd_node_update(args: argparse.Namespace) -> int:
    patch = _patch_from_args(args)
    node = _client(args).update_node(args.name, patch)
    print(f"node {node.name} updated: {', '.join(patch.changed()) or 'nothing'}")
    return 0


def cmd_node_action(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.action == "delete":
        client.delete_node(args.name, force=args.force)
        print(f"node {args.name} is being deleted")
    else:
        act = client.suspend_node if args.action == "suspend" else client.resume_node
        node = act(args.name)
        print(f"node {node.name}: {args.action} requested")
    return 0


def cmd_node_logs(args: argparse.Namespace) -> int:
    client = _client(args)
    if not args.follow:
        print(client.node_logs(args.name, args.instance or "", args.tail), end="")
        return 0
    for line in client.follow_node_logs(args.name, args.instance or "", args.tail):
        print(line, flush=True)
    return 0


def _alias_changes(args: argparse.Namespace) -> dict[str, object]:
    """The alias settings given as options (``alias create`` and ``alias update``)."""
    changes = _given(
        sticky_header=args.sticky_header, sticky_cookie=args.sticky_cookie,
        allow_incompatible=args.allow_incompatible or None,
    )  # fmt: skip
    if args.node:
        nodes = []
        for item in args.node:
            node, _, weight = item.partition("=")
            if not weight.strip().isdigit():
                raise Checkpoint2SvcError(f"--node {item}: write NODE=WEIGHT, e.g. --node v1=90")
            nodes.append({"node": node, "weight": int(weight)})
        changes["nodes"] = nodes
    if args.metadata:
        changes["metadata"] = dict(item.split("=", 1) for item in args.metadata)
    return changes


def _print_alias(alias: AliasView) -> None:
    split = ", ".join(f"{n}={w}% ({alias.node_status[n]})" for n, w in alias.weights)
    print(f"alias {alias.name}: {split}")
    _print_endpoint(alias.endpoint)
    sticky = alias.sticky_header or alias.sticky_cookie
    if sticky:
        kind = "header" if alias.sticky_header else "cookie"
        print(f"  sticky by {kind} {sticky}")
    if alias.metadata:
        print("  metadata: " + ", ".join(f"{k}={v}" for k, v in alias.metadata.items()))


def cmd_alias(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.verb == "list":
        for alias in client.aliases():
            _print_alias(alias)
        return 0
    if args.verb == "delete":
        client.delete_alias(args.name)
        print(f"alias {args.name} deleted")
        return 0
    if args.verb == "get":
        alias = client.alias(args.name)
    elif args.verb == "create":
        if not args.node:
            raise Checkpoint2SvcError("give the alias its nodes: --node NODE=WEIGHT (repeatable)")
        body = AliasCreate.model_validate({"name": args.name, **_alias_changes(args)})
        alias = client.create_alias(body)
    else:
        alias = client.update_alias(args.name, AliasPatch.model_validate(_alias_changes(args)))
    if args.json:
        _print_json(alias)
    else:
        _print_alias(alias)
    return 0


def _client_node(api: ControllerClient, name: str) -> tuple[str, NodeView]:
    """Whether ``name`` is a ``"node"`` or an ``"alias"``, and the view of the node whose
    checkpoint types its client: an alias's first node (the nodes of an alias share inputs and
    outputs)."""
    node = api.find_node(name)
    if node is not None:
        return "node", node
    alias = api.find_alias(name)
    if alias is None:
        raise Checkpoint2SvcError(
            f"no node or alias named {name!r}; `checkpoint2svc node list` and "
            "`checkpoint2svc alias list` show them"
        )
    return "alias", api.node(alias.nodes[0].node)


def _pip_path(path: Path) -> str:
    """``path`` for ``pip install``: a relative one starts with ``./`` (else pip may take it for
    a project's name on the index)."""
    text = str(path)
    return shlex.quote(text if path.is_absolute() or text.startswith(".") else f"./{text}")


def cmd_client(args: argparse.Namespace) -> int:
    from checkpoint2svc.checkpoint import Checkpoint
    from checkpoint2svc.codegen.client_package import example_program
    from checkpoint2svc.codegen.service_context import write_client_package
    from checkpoint2svc.errors import CheckpointError

    api = _client(args)
    kind, node = _client_node(api, args.name)
    what = f"{kind} {args.name}" + (f" (its node {node.name})" if kind == "alias" else "")
    checkpoint = node.spec.checkpoint
    if checkpoint is None:
        raise Checkpoint2SvcError(
            f"{what} runs the image {node.spec.image}, not a checkpoint: its client can "
            "only be generated from the checkpoint that image was built from "
            "(`checkpoint2svc generate CKPT -o DIR` writes it to DIR/client)"
        )
    try:
        source = Checkpoint.open(checkpoint)
    except CheckpointError as exc:
        raise CheckpointError(f"{what}: {exc}") from exc
    out = Path(args.output)
    package = write_client_package(source, out, force=args.force)
    port = api.info.gateway_port
    routing = {"node_id" if kind == "node" else "alias": args.name}
    program = example_program(package, f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", **routing)
    print(f"wrote {package.package} (distribution {package.distribution}), the typed client of "
          f"{what}, into {out}")  # fmt: skip
    print(f"  install it: pip install {_pip_path(out)}")
    print(f"  call {kind} {args.name} through the gateway (REST and gRPC on port {port}):\n")
    print("\n".join(f"    {line}" if line else "" for line in program))
    return 0


def _node_settings(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--checkpoint", metavar="CKPT", help="serve this checkpoint (its image is built)")
    a("--image", metavar="IMAGE", help="run any local image (DataSphere's docker node)")
    a(
        "--backend",
        choices=["docker", "local"],
        help="where instances run (default: docker when an engine answers, else local)",
    )
    a("--port", type=int, help="HTTP port the instance serves (default 8080)")
    a("--grpc-port", type=int, help="gRPC port the instance serves (default 9090)")
    a("--no-grpc", action="store_true", help="the image serves no gRPC")
    a("--protocol", choices=["http", "grpc"], help="what --port speaks (default http)")
    a("--request-timeout", type=float, metavar="S", help="per request (default 60)")
    a("--idle-timeout", type=float, metavar="S", help="idle connections (default 300)")
    a("--health-path", help="HTTP health check path (default /readyz)")
    a("--health-grpc-service", metavar="SERVICE", help="use a gRPC health check of SERVICE")
    a("--health-timeout", type=float, metavar="S")
    a("--health-interval", type=float, metavar="S")
    a("--health-fails", type=int, metavar="N", help="failures before Unhealthy (default 3)")
    a("--health-passes", type=int, metavar="N", help="passes before Healthy (default 1)")
    a("--health-port", type=int, help="container port the check probes, for an --image node "
      "(default: --port; the gRPC port for a gRPC check)")  # fmt: skip
    a(
        "--health-start-period",
        type=float,
        metavar="S",
        help="failures while starting count only after this long (default 60)",
    )
    a("--metrics-path", help="Prometheus path of the instance (default /metrics)")
    a("--metrics-port", type=int, help="Prometheus port of an --image node (default: --port)")
    a("--env", action="append", metavar="K=V", help="environment variable (repeatable)")
    a("--min", type=int, help="minimum instances (default 1)")
    a("--max", type=int, help="maximum instances (default: --min)")
    a("--maintenance-limit", type=int, metavar="N")
    a(
        "--target-in-flight",
        type=float,
        metavar="N",
        help="autoscaling target: in-flight requests per instance (default 4)",
    )
    a("--scale-up-window", type=float, metavar="S")
    a("--scale-down-window", type=float, metavar="S")


def add_control_commands(commands: Any) -> None:
    home = home_option()
    up = commands.add_parser("up", parents=[home], help="start the controller and its gateway")
    up.add_argument("--port", type=int, default=DEFAULT_API_PORT, help="API port (127.0.0.1)")
    up.add_argument("--gateway-port", type=int, default=DEFAULT_GATEWAY_PORT,
                    help="the gateway's port (127.0.0.1), REST and gRPC")  # fmt: skip
    up.set_defaults(func=cmd_up)
    down = commands.add_parser("down", parents=[home],
                               help="stop the controller (nodes keep running)")  # fmt: skip
    down.add_argument("--all", action="store_true",
                      help="delete every node and stop the gateway too")  # fmt: skip
    down.set_defaults(func=cmd_down)
    commands.add_parser("status", parents=[home], help="the controller and its nodes"
                        ).set_defaults(func=cmd_status)  # fmt: skip
    client = commands.add_parser(
        "client", parents=[home],
        help="write the typed Python client package of a node or an alias",
        description="Write the generated Python client package (REST and gRPC, typed by the "
        "checkpoint's inputs and outputs) of a node, or of an alias's nodes, into DIR; "
        "`pip install DIR` installs it.",
    )  # fmt: skip
    client.add_argument("name", metavar="NAME", help="a node or an alias")
    client.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    client.add_argument("--force", action="store_true", help="replace an existing directory")
    client.set_defaults(func=cmd_client)

    node = commands.add_parser("node", help="create and manage nodes (groups of instances)")
    verbs = node.add_subparsers(dest="verb", required=True, metavar="VERB")
    create = verbs.add_parser("create", parents=[home], help="create a node")
    create.add_argument("name")
    _node_settings(create)
    create.add_argument("--wait", action="store_true", help="wait until the node is Healthy")
    create.set_defaults(func=cmd_node_create)
    update = verbs.add_parser("update", parents=[home], help="change a node's settings")
    update.add_argument("name")
    _node_settings(update)
    update.set_defaults(func=cmd_node_update)
    listing = verbs.add_parser("list", parents=[home], help="the nodes and their statuses")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_node_list)
    get = verbs.add_parser("get", parents=[home], help="a node's status, instances and events")
    get.add_argument("name")
    get.add_argument("--json", action="store_true")
    get.set_defaults(func=cmd_node_get)
    for action, text in (("suspend", "stop all instances, keep the node"),
                         ("resume", "start a suspended node's instances again"),
                         ("delete", "delete the node and everything it created")):  # fmt: skip
        verb = verbs.add_parser(action, parents=[home], help=text)
        verb.add_argument("name")
        verb.set_defaults(func=cmd_node_action, action=action, force=False)
        if action == "delete":
            verb.add_argument(
                "--force", action="store_true", help="first take it out of the aliases using it"
            )
    aliases = commands.add_parser("alias", help="stable endpoints over nodes, with weights")
    alias_verbs = aliases.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, text in (("create", "create an alias over nodes"),
                       ("update", "change an alias's nodes, weights or metadata"),
                       ("get", "an alias's nodes, weights and endpoint"),
                       ("delete", "delete an alias (its nodes stay)")):  # fmt: skip
        parser = alias_verbs.add_parser(verb, parents=[home], help=text)
        parser.add_argument("name")
        parser.add_argument("--json", action="store_true")
        if verb in ("create", "update"):
            parser.add_argument("--node", action="append", metavar="NODE=WEIGHT",
                                help="a node and its percentage of the requests (repeatable; "
                                "the weights add up to 100)")  # fmt: skip
            parser.add_argument("--metadata", action="append", metavar="K=V")
            parser.add_argument("--sticky-header", metavar="NAME",
                                help="keep a client on one instance by this header's value "
                                "(for shared-mode nodes); '' turns it off")  # fmt: skip
            parser.add_argument("--sticky-cookie", metavar="NAME",
                                help="the same, by a cookie's value")  # fmt: skip
            parser.add_argument("--allow-incompatible", action="store_true",
                                help="accept a node whose inputs or outputs differ")  # fmt: skip
        parser.set_defaults(func=cmd_alias, verb=verb)
    alias_list = alias_verbs.add_parser("list", parents=[home], help="the aliases")
    alias_list.set_defaults(func=cmd_alias, verb="list")

    logs = verbs.add_parser("logs", parents=[home], help="the instances' logs")
    logs.add_argument("name")
    logs.add_argument("--instance", metavar="ID")
    logs.add_argument("--tail", type=int, default=100)
    logs.add_argument("-f", "--follow", action="store_true",
                      help="keep printing new lines (needs --instance)")  # fmt: skip
    logs.set_defaults(func=cmd_node_logs)
