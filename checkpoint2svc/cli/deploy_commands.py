"""``deploy`` and ``undeploy``: pin, build, node and alias in one command (thin: parse, call
``control.deployer``, print)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from checkpoint2svc.cli.arguments import (
    add_deploy_options,
    add_selection_options,
    deploy_settings,
    home_of,
    home_option,
    progress_printer,
)
from checkpoint2svc.control.home import DEFAULT_API_PORT, DEFAULT_GATEWAY_PORT
from checkpoint2svc.errors import Checkpoint2SvcError

if TYPE_CHECKING:
    from checkpoint2svc.cli.arguments import Commands


def _progress(message: str) -> None:
    show = progress_printer()
    assert show is not None
    show(message)


def cmd_deploy(args: argparse.Namespace) -> int:
    from checkpoint2svc.checkpoint import Checkpoint, pin_notebook
    from checkpoint2svc.control.deployer import Deployer

    settings = deploy_settings(args, args.name)
    source = Path(args.notebook)
    # checked before a controller is started for nothing
    if not source.exists():
        raise Checkpoint2SvcError(
            f"{source}: no such notebook or checkpoint directory; check the path"
        )
    if not source.is_dir() and args.cell is None:
        raise Checkpoint2SvcError("--cell is required to deploy a notebook: a tag, a cell id or #N")
    deployer = Deployer(
        home_of(args), _progress, api_port=args.port, gateway_port=args.gateway_port
    )
    with tempfile.TemporaryDirectory(prefix="checkpoint2svc-deploy-") as scratch:
        if source.is_dir():
            checkpoint = Checkpoint.open(source)
        else:
            _progress(f"pinning {source} at cell {args.cell}")
            checkpoint = pin_notebook(
                source,
                args.cell,
                Path(scratch) / "checkpoint",
                inputs=args.inputs,
                outputs=args.outputs,
                mode=args.mode,
                name=args.name,
                kernel_name=args.kernel,
                progress=_progress,
            )
        deployment = deployer.deploy(checkpoint, settings)
    print("\n".join(deployment.summary()))
    return 0


def cmd_undeploy(args: argparse.Namespace) -> int:
    from checkpoint2svc.control.deployer import Deployer

    for line in Deployer(home_of(args), _progress, start=False).undeploy(args.name):
        print(line)
    return 0


def register(commands: Commands) -> None:
    home = home_option()
    deploy = commands.add_parser(
        "deploy",
        parents=[home],
        help="pin a notebook cell, build it and run it as a node (behind an alias), in one step",
        description="Pin NOTEBOOK at --cell (or take a checkpoint directory), then create or "
        "update the node NAME and wait until it is Healthy; the image is built by the "
        "controller (docker backend) or the checkpoint served as local processes (local "
        "backend). With --alias, every version is its own node NAME-<version>: the alias "
        "switches to it once it is Healthy and the previous version is deleted. Running it "
        "again with nothing changed changes nothing. Starts the controller if it is not running.",
    )
    deploy.add_argument("notebook", help="a notebook (.ipynb) or a checkpoint directory")
    deploy.add_argument("--cell", metavar="SELECTOR",
                        help="the cell to serve: a tag, a cell id or #N (N-th code "
                        "cell)")  # fmt: skip
    deploy.add_argument("--name", required=True, help="the node's name (lowercase, digits, -)")
    add_selection_options(deploy)
    deploy.add_argument("--kernel", metavar="NAME", help="the Jupyter kernel to pin with")
    add_deploy_options(deploy)
    deploy.add_argument("--port", type=int, default=DEFAULT_API_PORT,
                        help="the controller's API port, if it has to be started")  # fmt: skip
    deploy.add_argument("--gateway-port", type=int, default=DEFAULT_GATEWAY_PORT,
                        help="the gateway's port, if the controller has to be started")  # fmt: skip
    deploy.set_defaults(func=cmd_deploy)

    undeploy = commands.add_parser(
        "undeploy",
        parents=[home],
        help="delete what `deploy --name NAME` created",
        description="Delete the node NAME (or its versions NAME-<version>) and the aliases left "
        "without a node; an alias that also routes to other nodes keeps those.",
    )
    undeploy.add_argument("name", help="the --name given to deploy")
    undeploy.set_defaults(func=cmd_undeploy)
