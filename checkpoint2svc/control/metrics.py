"""The controller's ``/metrics``: every instance's own metrics, one exposition, each sample
labelled with its instance (the instances already label their node with ``node_id``)."""

from __future__ import annotations

import re
from collections.abc import Iterable

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
