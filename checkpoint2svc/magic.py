"""The IPython extension: ``%%deploy``, ``%deploy_status`` and ``%undeploy`` (thin: parse, call
``checkpoint.live`` and ``control.deployer``, show the result as rich output).

``%load_ext checkpoint2svc`` registers them. ``%%deploy NAME`` runs its cell once in this kernel
(the output shows as usual), pins the kernel's state from just before the cell together with
the cell, and deploys it: no notebook is re-run.
"""

from __future__ import annotations

import argparse
import html
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import display

from checkpoint2svc.cli.arguments import (
    add_deploy_options,
    add_selection_options,
    deploy_settings,
    home_of,
    home_option,
)
from checkpoint2svc.control.deployer import DeployedNode, Deployer, Deployment
from checkpoint2svc.errors import CellExecutionError, Checkpoint2SvcError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad magic line as a UsageError instead of exiting the kernel."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage()}")

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        raise UsageError(message or self.format_help())


def _deploy_parser() -> _Parser:
    parser = _Parser(prog="%%deploy", parents=[home_option()],
                     description="Deploy this cell as a node.")  # fmt: skip
    parser.add_argument("name", help="the node's name (behind an alias: its versions' prefix)")
    add_selection_options(parser)
    add_deploy_options(parser)
    return parser


def _pre(text: str) -> str:
    return f"<pre style='margin:0.2em 0'>{html.escape(text)}</pre>"


class ProgressLog:
    """Progress lines in one output area of the cell, updated in place (HTML, and plain text for
    consoles and saved notebooks)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.lines: list[str] = []
        self._handle = display(self._bundle(), raw=True, display_id=True)  # type: ignore[no-untyped-call]

    def _bundle(self) -> dict[str, str]:
        text = "\n".join(self.lines)
        return {
            "text/plain": f"{self.title}\n{text}",
            "text/html": f"<details open><summary>{html.escape(self.title)}</summary>"
            f"{_pre(text)}</details>",
        }

    def __call__(self, message: str) -> None:
        self.lines.append(message)
        if self._handle is not None:
            self._handle.update(self._bundle(), raw=True)


class DeploymentView:
    """The result of ``%%deploy``: endpoints, a curl and a Python snippet, and the status."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment

    @property
    def rest_url(self) -> str:
        return self.deployment.rest_url

    @property
    def grpc_target(self) -> str:
        return self.deployment.grpc_target

    def __repr__(self) -> str:
        d = self.deployment
        lines = [*d.summary(), "", "curl:", d.curl(), "", "Python:", d.python()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        d = self.deployment
        key, value = d.grpc_metadata
        served = (
            f"alias <b>{d.alias}</b> → node <b>{d.node}</b>" if d.alias else f"node <b>{d.node}</b>"
        )
        done = "; ".join(d.actions) if d.actions else "nothing changed"
        signature = ", ".join(f"{v.name}: {v.type.render()}" for v in d.manifest.inputs)
        outputs = ", ".join(f"{v.name}: {v.type.render()}" for v in d.manifest.outputs)
        rows = [
            ("status", f"{html.escape(str(d.status))} ({html.escape(done)})"),
            ("REST", f"<code>POST {html.escape(d.rest_url)}</code>"),
            ("gRPC", f"<code>{d.grpc_target}</code>, metadata <code>{key}: {value}</code>"),
            ("signature", html.escape(f"({signature}) -> ({outputs})")),
        ]
        table = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>"
            for k, v in rows
        )
        return (
            f"<div><div>{served}</div><table>{table}</table>"
            f"<div>curl</div>{_pre(d.curl())}<div>Python</div>{_pre(d.python())}</div>"
        )


class StatusView:
    """``%deploy_status``: nodes, their instances and the aliases that route to them."""

    def __init__(self, nodes: list[DeployedNode]) -> None:
        self.nodes = nodes

    def _rows(self) -> list[tuple[str, ...]]:
        rows: list[tuple[str, ...]] = []
        for deployed in self.nodes:
            n = deployed.node
            aliases = ", ".join(f"{a.name} ({a.weight}%)" for a in deployed.aliases) or "-"
            count = f"{n.healthy_instances}/{len(n.instances)}"
            rows.append((n.name, n.status, count, n.spec.backend, aliases, n.endpoint.rest))
        return rows

    _HEADER = ("node", "status", "healthy", "backend", "aliases", "REST")

    def __repr__(self) -> str:
        if not self.nodes:
            return "nothing deployed"
        rows = [self._HEADER, *self._rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self._HEADER))]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
        )

    def _repr_html_(self) -> str:
        if not self.nodes:
            return "<i>nothing deployed</i>"
        head = "".join(f"<th>{h}</th>" for h in self._HEADER)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
            for row in self._rows()
        )
        return f"<table><tr>{head}</tr>{body}</table>"


@magics_class
class DeployMagics(Magics):
    @cell_magic
    def deploy(self, line: str, cell: str) -> DeploymentView:
        """%%deploy NAME [--inputs a,b] [--outputs x] [--mode isolated|shared]
        [--alias ALIAS [--weight N]] [--min N --max N] [--local] [--home DIR]

        Run the cell, pin this kernel's state and the cell, and deploy it as node NAME."""
        from checkpoint2svc.checkpoint.live import pin_live_cell

        args = _deploy_parser().parse_args(shlex.split(line))
        try:
            settings = deploy_settings(args, args.name)
        except Checkpoint2SvcError as exc:
            raise UsageError(str(exc)) from None
        shell = self.shell
        index = int(getattr(shell, "execution_count", 0) or 0)
        with tempfile.TemporaryDirectory(prefix="checkpoint2svc-magic-") as scratch:
            try:
                checkpoint = pin_live_cell(
                    cell,
                    Path(scratch) / "checkpoint",
                    name=args.name,
                    inputs=args.inputs,
                    outputs=args.outputs,
                    mode=args.mode,
                    cell_index=index,
                    warn=lambda message: print(message, file=sys.stderr),
                )
            except CellExecutionError as exc:
                print(exc.traceback, file=sys.stderr)
                raise UsageError(f"{exc}; nothing was deployed") from None
            except Checkpoint2SvcError as exc:
                raise UsageError(f"{exc}; the cell was not run and nothing was deployed") from None
            chosen = ", ".join(v.name for v in checkpoint.manifest.inputs)
            progress = ProgressLog(f"deploying {args.name} (inputs: {chosen})")
            try:
                deployer = Deployer(home_of(args), progress)
                deployment = deployer.deploy(checkpoint, settings)
            except Checkpoint2SvcError as exc:
                raise UsageError(f"deploying {args.name} failed: {exc}") from None
        return DeploymentView(deployment)

    @line_magic
    def deploy_status(self, line: str) -> StatusView:
        """%deploy_status [NAME] [--home DIR]: the nodes (of NAME) and their aliases."""
        args = _status_parser("%deploy_status").parse_args(shlex.split(line))
        try:
            deployer = Deployer(home_of(args), lambda _: None, start=False)
            return StatusView(deployer.describe(args.name))
        except Checkpoint2SvcError as exc:
            raise UsageError(str(exc)) from None

    @line_magic
    def undeploy(self, line: str) -> None:
        """%undeploy NAME [--home DIR]: delete what ``%%deploy NAME`` created."""
        args = _status_parser("%undeploy", required=True).parse_args(shlex.split(line))
        try:
            done = Deployer(home_of(args), lambda _: None, start=False).undeploy(args.name)
        except Checkpoint2SvcError as exc:
            raise UsageError(str(exc)) from None
        print("\n".join(done))


def _status_parser(prog: str, required: bool = False) -> _Parser:
    parser = _Parser(prog=prog, parents=[home_option()])
    parser.add_argument("name", nargs=None if required else "?", help="the deployed name")
    return parser


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(DeployMagics)


__all__: Sequence[str] = ["DeployMagics", "load_ipython_extension"]
