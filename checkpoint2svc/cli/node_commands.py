"""``node create|update|list|get|suspend|resume|delete|logs``: nodes, through the controller's
API."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from checkpoint2svc.cli.arguments import (
    given,
    healthy_text,
    home_option,
    key_values,
    print_endpoint,
    print_json,
)
from checkpoint2svc.cli.controller_commands import controller_client
from checkpoint2svc.control.models import NodeSpec, NodeStatus
from checkpoint2svc.control.views import NodePatch

if TYPE_CHECKING:
    from checkpoint2svc.cli.arguments import Commands


def _patch_from_args(args: argparse.Namespace) -> NodePatch:
    """The node settings given as options (``node create`` and ``node update``)."""
    changes = given(
        checkpoint=args.checkpoint and str(Path(args.checkpoint).resolve()), image=args.image,
        backend=args.backend, port=args.port, grpc_port=args.grpc_port, protocol=args.protocol,
        request_timeout_s=args.request_timeout, idle_timeout_s=args.idle_timeout,
        min_instances=args.min, max_instances=args.max,
        maintenance_limit=args.maintenance_limit,
    )  # fmt: skip
    if args.no_grpc:
        changes["grpc_port"] = None
    nested = {
        "health": given(
            kind="grpc" if args.health_grpc_service is not None else None,
            path=args.health_path, grpc_service=args.health_grpc_service,
            timeout_s=args.health_timeout, interval_s=args.health_interval,
            fail_threshold=args.health_fails, pass_threshold=args.health_passes,
            start_period_s=args.health_start_period, port=args.health_port,
        ),
        "telemetry": given(path=args.metrics_path, port=args.metrics_port),
        "autoscaling": given(
            target_in_flight=args.target_in_flight, up_window_s=args.scale_up_window,
            down_window_s=args.scale_down_window,
        ),
    }  # fmt: skip
    changes.update({name: values for name, values in nested.items() if values})
    if args.env:
        changes["env"] = key_values(args.env)
    return NodePatch.model_validate(changes)


def cmd_node_create(args: argparse.Namespace) -> int:
    from checkpoint2svc.backends.base import default_backend_name

    patch = _patch_from_args(args)
    spec = patch.applied_to(NodeSpec(name=args.name))
    if patch.backend is None:
        spec = replace(spec, backend=default_backend_name())
    if patch.min_instances is not None and patch.max_instances is None:
        spec = replace(spec, max_instances=max(patch.min_instances, 1))
    node = controller_client(args).create_node(spec)
    print(f"node {node.name} created ({node.spec.backend} backend); "
          f"`checkpoint2svc node get {node.name}` shows its status")  # fmt: skip
    if args.wait:
        return _wait_healthy(args, args.name)
    return 0


def _wait_healthy(args: argparse.Namespace, name: str, timeout: float = 600) -> int:
    client = controller_client(args)
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        node = client.node(name)
        line = f"{node.status}: {healthy_text(node)} healthy"
        if node.build:
            line = f"building the image: {node.build}"
        if line != last:
            print(f"  {line}", flush=True)
            last = line
        if node.status == NodeStatus.HEALTHY:
            print_endpoint(node.endpoint)
            return 0
        if node.status == NodeStatus.UNHEALTHY:
            for event in node.events[-5:]:
                print(f"  event: {event.message}")
        time.sleep(0.5)
    print(f"node {name} was not Healthy within {timeout:.0f} s")
    return 1


def cmd_node_list(args: argparse.Namespace) -> int:
    nodes = controller_client(args).nodes()
    if args.json:
        print_json(nodes)
        return 0
    print(f"{'NAME':24} {'STATUS':10} {'INSTANCES':10} {'BACKEND':8} SOURCE")
    for n in nodes:
        source = n.spec.checkpoint or n.spec.image
        print(f"{n.name:24} {n.status:10} {healthy_text(n):10} {n.spec.backend:8} {source}")
    return 0


def cmd_node_get(args: argparse.Namespace) -> int:
    node = controller_client(args).node(args.name)
    if args.json:
        print_json(node)
        return 0
    spec = node.spec
    bounds = f"min {spec.min_instances}, max {spec.max_instances}, {spec.backend}"
    print(f"node {node.name}: {node.status}  ({node.healthy_instances} healthy, {bounds})")
    print_endpoint(node.endpoint)
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
    node = controller_client(args).update_node(args.name, patch)
    print(f"node {node.name} updated: {', '.join(patch.changed()) or 'nothing'}")
    return 0


def cmd_node_action(args: argparse.Namespace) -> int:
    client = controller_client(args)
    if args.action == "delete":
        client.delete_node(args.name, force=args.force)
        print(f"node {args.name} is being deleted")
    else:
        act = client.suspend_node if args.action == "suspend" else client.resume_node
        node = act(args.name)
        print(f"node {node.name}: {args.action} requested")
    return 0


def cmd_node_logs(args: argparse.Namespace) -> int:
    client = controller_client(args)
    if not args.follow:
        print(client.node_logs(args.name, args.instance or "", args.tail), end="")
        return 0
    for line in client.follow_node_logs(args.name, args.instance or "", args.tail):
        print(line, flush=True)
    return 0


def _node_settings(parser: argparse.ArgumentParser) -> None:
    """A node's settings as options; ``_patch_from_args`` reads them back."""
    a = parser.add_argument
    a("--checkpoint", metavar="CKPT", help="serve this checkpoint (its image is built)")
    a("--image", metavar="IMAGE", help="run any local image (DataSphere's docker node)")
    a("--backend", choices=["docker", "local"],
      help="where instances run (default: docker when an engine answers, else local)")  # fmt: skip
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
    a("--health-start-period", type=float, metavar="S",
      help="failures while starting count only after this long (default 60)")  # fmt: skip
    a("--metrics-path", help="Prometheus path of the instance (default /metrics)")
    a("--metrics-port", type=int, help="Prometheus port of an --image node (default: --port)")
    a("--env", action="append", metavar="K=V", help="environment variable (repeatable)")
    a("--min", type=int, help="minimum instances (default 1)")
    a("--max", type=int, help="maximum instances (default: --min)")
    a("--maintenance-limit", type=int, metavar="N")
    a("--target-in-flight", type=float, metavar="N",
      help="autoscaling target: in-flight requests per instance (default 4)")  # fmt: skip
    a("--scale-up-window", type=float, metavar="S")
    a("--scale-down-window", type=float, metavar="S")


def register(commands: Commands) -> None:
    home = home_option()
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
    logs = verbs.add_parser("logs", parents=[home], help="the instances' logs")
    logs.add_argument("name")
    logs.add_argument("--instance", metavar="ID")
    logs.add_argument("--tail", type=int, default=100)
    logs.add_argument("-f", "--follow", action="store_true",
                      help="keep printing new lines (needs --instance)")  # fmt: skip
    logs.set_defaults(func=cmd_node_logs)
