"""The ``checkpoint2svc`` command: one module per command group, each with its parser next to
its handlers (``register`` adds the group's commands); shared options in ``arguments``; every
error is printed by ``reporting.report``."""

from __future__ import annotations

import argparse
import sys

from checkpoint2svc.cli import (
    alias_commands,
    checkpoint_commands,
    controller_commands,
    deploy_commands,
    node_commands,
    service_commands,
)
from checkpoint2svc.cli.reporting import report
from checkpoint2svc.errors import Checkpoint2SvcError
from checkpoint2svc.version import __version__

__all__ = ["build_parser", "main"]

_GROUPS = (
    checkpoint_commands,
    service_commands,
    controller_commands,
    node_commands,
    alias_commands,
    deploy_commands,
)
"""In the order ``--help`` lists their commands: the flow from notebook to node."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="checkpoint2svc",
        description="Turn one notebook cell, on its pinned state, into a gRPC + REST service.",
    )
    parser.add_argument("--version", action="version", version=f"checkpoint2svc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in _GROUPS:
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (Checkpoint2SvcError, KeyboardInterrupt) as exc:
        return report(exc)


if __name__ == "__main__":
    sys.exit(main())
