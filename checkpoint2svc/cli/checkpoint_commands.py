"""``pin``, ``inspect`` and ``run``: make a checkpoint, look into it (or into a service image),
and run its cell once in this process."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from checkpoint2svc.cli.arguments import add_selection_options, size_text
from checkpoint2svc.errors import Checkpoint2SvcError

if TYPE_CHECKING:
    from checkpoint2svc.cli.arguments import Commands


def cmd_pin(args: argparse.Namespace) -> int:
    from checkpoint2svc.checkpoint import pin_notebook

    checkpoint = pin_notebook(
        Path(args.notebook),
        args.cell,
        args.output,
        inputs=args.inputs,
        outputs=args.outputs,
        mode=args.mode,
        name=args.name,
        kernel_name=args.kernel,
        strict=args.strict,
        force=args.force,
        timeout=args.timeout,
    )
    m = checkpoint.manifest
    print(f"pinned {m.notebook} cell {m.cell.index} as {m.name!r} into {checkpoint.path}")
    for label, variables in (("inputs", m.inputs), ("outputs", m.outputs)):
        listed = ", ".join(f"{v.name}: {v.type.render()}" for v in variables)
        print(f"  {label}: {listed or 'none'}")
    if not m.deterministic:
        print("  not deterministic: readiness checks the outputs' types and shapes")
    return 0


def _inspect_text(data: dict[str, Any]) -> str:
    """The manifest's JSON form (what ``inspect --json`` prints) as lines for people."""
    from checkpoint2svc.checkpoint.notebook import first_line

    lines = [
        f"checkpoint {data['name']} (format {data['format_version']}), verified",
        f"  notebook: {data['notebook']['name']} (sha256 {data['notebook']['sha256'][:12]}…)",
        f"  cell: {data['cell']['index']} `{first_line(data['cell']['source'])}`",
        f"  mode: {data['mode']}   python: {data['python_version']}   created: {data['created']}",
    ]  # fmt: skip
    for label in ("inputs", "outputs"):
        lines.append(f"  {label}:" + ("" if data[label] else " none"))
        for v in data[label]:
            example = json.dumps(v["example"])
            if len(example) > 60:
                example = example[:57] + "..."
            lines.append(f"    {v['name']}: {v['type_text']}  e.g. {example}")
    if not data.get("deterministic", True):
        lines.append("  not deterministic: readiness checks the outputs' types and shapes")
    if data.get("random_state"):
        lines.append(
            f"  random state: {', '.join(data['random_state'])} (restored before every "
            "isolated call)"
        )
    lines.append("  state:")
    for s in data["state"]:
        lines.append(f"    {s['name']}: {s['type']} ({size_text(s['size'])})")
    if data["excluded"]:
        lines.append(
            "  left out (not serializable): " + ", ".join(e["name"] for e in data["excluded"])
        )
    lines.append("  requirements:")
    for r in data["requirements"]:
        lines.append(f"    {r['name']}=={r['version']}" + ("" if r["direct"] else "  (dependency)"))
    return "\n".join(lines)


def _image_text(image: str, labels: dict[str, Any], image_id: str, size: int) -> str:
    lines = [f"image {image} ({image_id[7:19]}, {size_text(size)}), a checkpoint2svc service"]
    lines += [f"  {key}: {value}" for key, value in labels.items()]
    return "\n".join(lines)


def cmd_inspect(args: argparse.Namespace) -> int:
    from checkpoint2svc.checkpoint import Checkpoint

    if not Path(args.target).exists() and not args.target.endswith((".ckpt", "/")):
        from checkpoint2svc.image.engine import docker_client
        from checkpoint2svc.image.labels import read_image_labels

        labels, image = read_image_labels(docker_client(), args.target)
        fields = dict(labels.__dict__)
        if args.json:
            print(json.dumps({"id": image.id, "size": image.attrs["Size"], "labels": fields},
                             indent=2))  # fmt: skip
        else:
            print(_image_text(args.target, fields, image.id, image.attrs["Size"]))
        return 0
    checkpoint = Checkpoint.open(args.target)
    checkpoint.verify()
    data = checkpoint.manifest.to_dict()
    print(json.dumps(data, indent=2) if args.json else _inspect_text(data))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from checkpoint2svc.checkpoint import Checkpoint
    from checkpoint2svc.runtime.service import CellService

    service = CellService(Checkpoint.open(args.checkpoint))  # the same checks as a server's
    manifest = service.manifest
    if args.input is None:
        data = {v.name: v.example for v in manifest.inputs}
    else:
        try:
            data = json.loads(args.input)
        except json.JSONDecodeError as exc:
            raise Checkpoint2SvcError(f"the input is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise Checkpoint2SvcError('the input must be a JSON object such as {"x": 1}')
    inputs = service.decode_input(data)
    with contextlib.redirect_stdout(sys.stderr):  # what the cell prints is not the result
        outputs = service.executor.run(inputs)
    answer = {"output": service.encode_output(outputs)}
    # as a server sends it: NaN is null (json.dumps would print NaN, which is not JSON)
    print(orjson.dumps(answer, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())
    return 0


def register(commands: Commands) -> None:
    pin = commands.add_parser(
        "pin",
        help="run a notebook up to a cell and pin its state, inputs and outputs",
        description="Run the cells before the selected cell in a fresh kernel, capture the "
        "interpreter state, run the cell on the example inputs (twice: a determinism check) and "
        "write a checkpoint. Without a cell tagged `parameters` and without --inputs, the service "
        "takes no inputs: it answers what the cell computes on the pinned state.",
    )
    pin.add_argument("notebook", help="the .ipynb file")
    pin.add_argument(
        "--cell", required=True, metavar="SELECTOR",
        help="the target cell: a tag (predict), a cell id, or #N for the N-th code cell (0-based)",
    )  # fmt: skip
    add_selection_options(pin)
    pin.add_argument("-o", "--output", type=Path, metavar="DIR",
                     help="checkpoint directory (default: NAME.ckpt)")  # fmt: skip
    pin.add_argument("--name", help="service name (default: the cell's tag, else the notebook's)")
    pin.add_argument("--kernel", metavar="NAME",
                     help="Jupyter kernel to run in (default: this Python)")  # fmt: skip
    pin.add_argument("--strict", action="store_true",
                     help="fail instead of falling back to the json type")  # fmt: skip
    pin.add_argument("--force", action="store_true", help="replace an existing checkpoint")
    pin.add_argument("--timeout", type=float, default=600, metavar="SECONDS",
                     help="per-cell time limit (default 600)")  # fmt: skip
    pin.set_defaults(func=cmd_pin)

    inspect = commands.add_parser(
        "inspect",
        help="show a checkpoint (verifying every hash) or a service image's labels",
        description="Show a checkpoint's signature, state variables and requirements after "
        "verifying the sha256 of every file; or, for an image, the checkpoint, signature, "
        "ports and version it was built from.",
    )
    inspect.add_argument(
        "target", metavar="CHECKPOINT|IMAGE",
        help="a checkpoint directory, or a service image built by `build`",
    )  # fmt: skip
    inspect.add_argument("--json", action="store_true", help="print the manifest as JSON")
    inspect.set_defaults(func=cmd_inspect)

    run = commands.add_parser(
        "run",
        help="run the pinned cell once, in this process, on JSON inputs",
        description="Load a checkpoint's state in this process and run the pinned cell once. "
        "Without INPUT the pinned example inputs are used.",
    )
    run.add_argument("checkpoint", help="a checkpoint directory")
    run.add_argument("input", nargs="?", help="a JSON object of inputs, e.g. '{\"x\": 1}'")
    run.set_defaults(func=cmd_run)
