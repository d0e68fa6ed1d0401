"""Argument helpers every command group shares: option groups that several commands (and the
``%%deploy`` magic) take, argument types, and how results and progress are printed."""

from __future__ import annotations

import argparse
import json
import keyword
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from checkpoint2svc.control.home import Home, default_home
from checkpoint2svc.errors import Checkpoint2SvcError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from checkpoint2svc.control.deployer import DeploySettings
    from checkpoint2svc.control.views import Endpoint, NodeView

    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
    """What each command group's ``register`` adds its commands to."""


# --- argument types ---------------------------------------------------------------------------
def variable_names(text: str) -> list[str]:
    """``--inputs a,b`` (the command and the magic): Python variable names, or a usage error."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if not n.isidentifier() or keyword.iskeyword(n)]
    if bad:
        raise argparse.ArgumentTypeError(f"{', '.join(bad)} is not a Python variable name")
    return names


def header(text: str) -> tuple[str, str]:
    """``-H 'name: value'``: a lowercase name and its value."""
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not 'name: value'")
    return name.strip().lower(), value.strip()


def request_text(data: str) -> str:
    """``-d``: JSON text, ``@FILE`` or ``-`` (standard input)."""
    if data == "-":
        return sys.stdin.read()
    if data.startswith("@"):
        try:
            return Path(data[1:]).read_text()
        except OSError as exc:
            raise Checkpoint2SvcError(f"cannot read the request from {data[1:]}: {exc}") from exc
    return data


def given(**values: object) -> dict[str, object]:
    """The options given on the command line (argparse leaves the others None)."""
    return {name: value for name, value in values.items() if value is not None}


def key_values(items: Sequence[str]) -> dict[str, str]:
    """Repeated ``K=V`` options (``--env``, ``--metadata``) as a dict."""
    return dict(item.split("=", 1) for item in items)


# --- option groups ----------------------------------------------------------------------------
def home_option() -> argparse.ArgumentParser:
    """The ``--home`` option, as a parent parser for every command that talks to a controller."""
    home = argparse.ArgumentParser(add_help=False)
    home.add_argument("--home", metavar="DIR",
                      help="the controller's directory (default $CHECKPOINT2SVC_HOME or "
                      "~/.checkpoint2svc)")  # fmt: skip
    return home


def home_of(args: argparse.Namespace) -> Home:
    """The controller's home a command names with ``--home`` (see ``home_option``)."""
    return Home(Path(args.home) if args.home else default_home())


def add_selection_options(parser: argparse.ArgumentParser) -> None:
    """``--inputs``, ``--outputs`` and ``--mode`` (``pin``, ``deploy`` and ``%%deploy``)."""
    parser.add_argument("--inputs", type=variable_names, metavar="a,b",
                        help="input variables (default: the `parameters` cell's variables "
                        "that the target cell reads; none without such a cell; '' for "
                        "none)")  # fmt: skip
    parser.add_argument("--outputs", type=variable_names, metavar="x,y",
                        help="output variables (default: the names the target cell assigns, "
                        "minus those starting with _ and those with no wire type)")  # fmt: skip
    parser.add_argument("--mode", choices=["isolated", "shared"], default="isolated",
                        help="isolated: each call starts from the pinned state (default); "
                        "shared: calls may change the state, one at a time")  # fmt: skip


def add_deploy_options(parser: argparse.ArgumentParser) -> None:
    """Where and how a deployed version runs (``deploy`` and ``%%deploy``); read them back with
    :func:`deploy_settings`."""
    a = parser.add_argument
    a("--alias", metavar="ALIAS", help="the stable endpoint to point at it")
    a("--weight", type=int, default=100, metavar="N",
      help="percent of the alias's traffic for this version (default 100; below 100 the "
      "previous versions keep the rest: a canary)")  # fmt: skip
    a("--min", type=int, default=1, help="minimum instances (default 1)")
    a("--max", type=int, help="maximum instances (default: --min)")
    backend = parser.add_mutually_exclusive_group()
    backend.add_argument("--backend", choices=["docker", "local"],
                         help="where instances run (default: docker when an engine "
                         "answers)")  # fmt: skip
    backend.add_argument("--local", action="store_true", help="the same as --backend local")
    a("--allow-incompatible", action="store_true",
      help="deploy even if inputs or outputs changed for existing clients")  # fmt: skip
    a("--timeout", type=float, default=900, metavar="SECONDS",
      help="how long to wait for the node to be Healthy (default 900)")  # fmt: skip


def deploy_settings(args: argparse.Namespace, name: str) -> DeploySettings:
    """The checked settings of :func:`add_deploy_options` for the version named ``name``."""
    from checkpoint2svc.control.deployer import DeploySettings

    return DeploySettings(
        name=name, alias=args.alias, weight=args.weight,
        backend="local" if args.local else args.backend,
        min_instances=args.min, max_instances=args.max,
        allow_incompatible=args.allow_incompatible, timeout_s=args.timeout,
    ).validate()  # fmt: skip


# --- output -----------------------------------------------------------------------------------
def size_text(n: int) -> str:
    """A byte count as people read it: ``512 B``, ``1.5 MiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def progress_printer(quiet: bool = False) -> Callable[[str], None] | None:
    """Progress of long work on standard error (the result goes to standard output)."""
    if quiet:
        return None
    return lambda line: print(line, file=sys.stderr, flush=True)


def print_json(views: BaseModel | Sequence[BaseModel]) -> None:
    """What ``--json`` prints: the API's answer as it came."""
    from pydantic import BaseModel

    data = (
        views.model_dump(mode="json")
        if isinstance(views, BaseModel)
        else [view.model_dump(mode="json") for view in views]
    )
    print(json.dumps(data, indent=2))


def print_endpoint(endpoint: Endpoint) -> None:
    print(f"  REST: {endpoint.rest}\n  gRPC: {endpoint.grpc}")


def healthy_text(node: NodeView) -> str:
    """``healthy/total`` instances, as ``status``, ``node list`` and ``node create --wait``
    show it."""
    return f"{node.healthy_instances}/{len(node.instances)}"
