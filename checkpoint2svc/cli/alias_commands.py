"""``alias create|update|get|delete|list``: stable endpoints over nodes, with weights."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from checkpoint2svc.cli.arguments import given, home_option, key_values, print_endpoint, print_json
from checkpoint2svc.cli.controller_commands import controller_client
from checkpoint2svc.control.views import AliasCreate, AliasPatch, AliasView
from checkpoint2svc.errors import Checkpoint2SvcError

if TYPE_CHECKING:
    from checkpoint2svc.cli.arguments import Commands


def _alias_changes(args: argparse.Namespace) -> dict[str, object]:
    """The alias settings given as options (``alias create`` and ``alias update``)."""
    changes = given(
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
        changes["metadata"] = key_values(args.metadata)
    return changes


def _print_alias(alias: AliasView) -> None:
    split = ", ".join(f"{n}={w}% ({alias.node_status[n]})" for n, w in alias.weights)
    print(f"alias {alias.name}: {split}")
    print_endpoint(alias.endpoint)
    sticky = alias.sticky_header or alias.sticky_cookie
    if sticky:
        kind = "header" if alias.sticky_header else "cookie"
        print(f"  sticky by {kind} {sticky}")
    if alias.metadata:
        print("  metadata: " + ", ".join(f"{k}={v}" for k, v in alias.metadata.items()))


def cmd_alias(args: argparse.Namespace) -> int:
    client = controller_client(args)
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
        print_json(alias)
    else:
        _print_alias(alias)
    return 0


def register(commands: Commands) -> None:
    home = home_option()
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
