"""The controller's ``/metrics``: every instance's own metrics, one exposition, each sample
labelled with its instance (the instances already label their node with ``node_id``); and what
the gateway counted, from HAProxy's ``show stat``."""

from __future__ import annotations

import re
from collections.abc import Iterable

from checkpoint2svc.gateway.config import backend_name

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(.*)$")


def with_instance_label(line: str, instance: str) -> str:
    match = _SAMPLE.match(line)
    if match is None:
        return line
    name, labels, value = match.groups()
    inner = labels[1:-1] if labels else ""
    joined = f'{inner},instance="{instance}"' if inner else f'instance="{instance}"'
    return f"{name}{{{joined}}} {value}"


def merge_metrics(scrapes: Iterable[tuple[str, str]]) -> str:
    """``(instance id, exposition text)`` pairs -> one exposition; HELP/TYPE kept once per family,
    the samples of a family kept together (the text format requires it)."""
    headers: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    order: list[str] = []
    for instance, text in scrapes:
        family = ""
        for line in text.splitlines():
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                family = line.split()[2]
                if family not in headers:
                    headers[family], samples[family] = [], []
                    order.append(family)
                if line not in headers[family]:
                    headers[family].append(line)
            elif line and not line.startswith("#") and family:
                samples[family].append(with_instance_label(line, instance))
    return "".join("\n".join(headers[f] + samples[f]) + "\n" for f in order)


GatewayStats = dict[tuple[str, str], dict[str, int | str]]
RESPONSE_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


def gateway_count(
    stats: GatewayStats, kind: str, name: str, key: str, protos: tuple[str, ...] = ("http", "grpc")
) -> int:
    """A counter of a node's or alias's backends (``scur``, ``hrsp_2xx``...), summed."""
    total = 0
    for proto in protos:
        value = stats.get((backend_name(kind, name, proto), "BACKEND"), {}).get(key, 0)
        total += value if isinstance(value, int) else 0
    return total


def gateway_metrics(nodes: list[str], aliases: list[str], stats: GatewayStats) -> str:
    """Responses by class per node and protocol, requests and responses per alias. HAProxy's
    counters start again when it reloads; the instances' own counters do not."""
    lines = [
        "# HELP gateway_node_responses Responses the gateway passed back from a node's instances.",
        "# TYPE gateway_node_responses counter",
    ]
    for node in nodes:
        for proto in ("http", "grpc"):
            for code in RESPONSE_CLASSES:
                count = gateway_count(stats, "node", node, f"hrsp_{code}", (proto,))
                lines.append(
                    f'gateway_node_responses_total{{node_id="{node}",protocol="{proto}",'
                    f'code="{code}"}} {count}'
                )
    requests = [
        "# HELP gateway_alias_requests Requests the gateway routed through an alias.",
        "# TYPE gateway_alias_requests counter",
    ]
    codes = [
        "# HELP gateway_alias_responses Responses through an alias by status class.",
        "# TYPE gateway_alias_responses counter",
    ]
    for alias in aliases:
        counts = {
            code: gateway_count(stats, "alias", alias, f"hrsp_{code}") for code in RESPONSE_CLASSES
        }
        requests.append(
            f'gateway_alias_requests_total{{alias_id="{alias}"}} {sum(counts.values())}'
        )
        codes += [
            f'gateway_alias_responses_total{{alias_id="{alias}",code="{code}"}} {count}'
            for code, count in counts.items()
        ]
    return "\n".join(lines + requests + codes) + "\n"
