"""``up``, ``down``, ``status`` and ``client``: the controller itself, and the typed client of
what it serves."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from checkpoint2svc.cli.arguments import healthy_text, home_of, home_option
from checkpoint2svc.control.home import DEFAULT_API_PORT, DEFAULT_GATEWAY_PORT
from checkpoint2svc.errors import Checkpoint2SvcError

if TYPE_CHECKING:
    from checkpoint2svc.cli.arguments import Commands
    from checkpoint2svc.control.api_client import ControllerClient
    from checkpoint2svc.control.views import NodeView


def controller_client(args: argparse.Namespace) -> ControllerClient:
    """The API client of the controller ``--home`` names (a clear error if it is not running)."""
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
    client = controller_client(args)
    status = client.status()
    nodes = client.nodes()
    print(f"controller {status.controller_id}: API {client.info.api_url}, "
          f"gateway {status.gateway}, {len(nodes)} node(s)")  # fmt: skip
    for node in nodes:
        print(f"  {node.name}: {node.status} ({healthy_text(node)} healthy)")
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

    api = controller_client(args)
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


def register(commands: Commands) -> None:
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
