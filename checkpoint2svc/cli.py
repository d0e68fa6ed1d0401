"""The ``checkpoint2svc`` command: parse arguments, call the library, print the result."""

from __future__ import annotations

import argparse
import contextlib
import json
import keyword
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from checkpoint2svc.errors import (
    CellExecutionError,
    Checkpoint2SvcError,
    ExecutionError,
    ValueConversionError,
)
from checkpoint2svc.runtime.options import add_serve_arguments
from checkpoint2svc.version import __version__

if TYPE_CHECKING:
    from checkpoint2svc.runtime.reflection_client import ServiceInfo


def variable_names(text: str) -> list[str]:
    """``--inputs a,b`` (the command and the magic): Python variable names, or a usage error."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if not n.isidentifier() or keyword.iskeyword(n)]
    if bad:
        raise argparse.ArgumentTypeError(f"{', '.join(bad)} is not a Python variable name")
    return names


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


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
        lines.append(f"    {s['name']}: {s['type']} ({_size(s['size'])})")
    if data["excluded"]:
        lines.append(
            "  left out (not serializable): " + ", ".join(e["name"] for e in data["excluded"])
        )
    lines.append("  requirements:")
    for r in data["requirements"]:
        lines.append(f"    {r['name']}=={r['version']}" + ("" if r["direct"] else "  (dependency)"))
    return "\n".join(lines)


def _image_text(image: str, labels: dict[str, Any], image_id: str, size: int) -> str:
    lines = [f"image {image} ({image_id[7:19]}, {_size(size)}), a checkpoint2svc service"]
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


def _progress(quiet: bool) -> Any:
    if quiet:
        return None
    return lambda line: print(line, file=sys.stderr, flush=True)


def cmd_build(args: argparse.Namespace) -> int:
    from checkpoint2svc.checkpoint import Checkpoint
    from checkpoint2svc.image.build import build_image

    built = build_image(
        Checkpoint.open(args.checkpoint), args.tag, base_image=args.base_image,
        wheelhouse=args.wheelhouse, self_test=not args.no_self_test,
        progress=_progress(args.quiet), no_cache=args.no_cache,
    )  # fmt: skip
    if args.quiet:
        print(built.id)
        return 0
    test = (
        f"self-test passed over {' and '.join(built.self_test.protocols)}"
        if built.self_test else "self-test skipped"
    )  # fmt: skip
    print(
        f"built {built.tag} ({built.id[7:19]}, {_size(built.size)}) in {built.seconds:.1f} s; "
        f"{built.cached_steps}/{built.steps} steps from cache; {test}"
    )
    return 0


def cmd_base_image(args: argparse.Namespace) -> int:
    from checkpoint2svc.image.base_image import build_base_image, default_base_image
    from checkpoint2svc.image.engine import docker_client

    tag = args.tag or default_base_image()
    if args.print_tag:
        print(tag)
        return 0
    image_id = build_base_image(docker_client(), tag, progress=_progress(args.quiet))
    print(f"built base image {tag} ({image_id[7:19]})" if not args.quiet else image_id)
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


def cmd_serve(args: argparse.Namespace) -> int:
    from checkpoint2svc.checkpoint.manifest import MANIFEST_NAME
    from checkpoint2svc.runtime.options import options_from
    from checkpoint2svc.runtime.server import serve, work_dir

    path, options = Path(args.path), options_from(args)
    if not (path / MANIFEST_NAME).is_file():
        serve(path, options)  # a directory made by `generate`
        return 0
    from checkpoint2svc.checkpoint import Checkpoint
    from checkpoint2svc.codegen.service_context import instance_context

    checkpoint = Checkpoint.open(path)
    checkpoint.verify()  # a modified checkpoint is an error here, not an instance never ready
    with work_dir() as tmp:  # the instance's files only: no client, no copy of the checkpoint
        instance_context(checkpoint.manifest).write_to(tmp / "service")
        serve(tmp / "service", options, checkpoint_dir=path)
    return 0


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not 'name: value'")
    return name.strip().lower(), value.strip()


def _request_text(data: str) -> str:
    """``-d``: JSON text, ``@FILE`` or ``-`` (standard input)."""
    if data == "-":
        return sys.stdin.read()
    if data.startswith("@"):
        try:
            return Path(data[1:]).read_text()
        except OSError as exc:
            raise Checkpoint2SvcError(f"cannot read the request from {data[1:]}: {exc}") from exc
    return data


def _service_text(service: ServiceInfo) -> str:
    lines = [service.name]
    for m in service.methods:
        asks = "stream " if m.client_streaming else ""
        answers = "stream " if m.server_streaming else ""
        lines.append(f"  rpc {m.name}({asks}{m.input}) returns ({answers}{m.output})")
        lines += [f"      {f.name}: {f.type}" for f in m.input_fields]
    return "\n".join(lines)


def cmd_grpc(args: argparse.Namespace) -> int:
    from checkpoint2svc.runtime.reflection_client import ReflectionClient

    if args.service is not None and args.what != "describe":
        raise Checkpoint2SvcError(f"unexpected {args.service!r}: only `describe` takes a SERVICE")
    with ReflectionClient(args.target, args.header, args.timeout) as client:
        if args.what == "list":
            print("\n".join(client.services()))
        elif args.what == "describe":
            if args.service is None:
                raise Checkpoint2SvcError("`describe` needs a SERVICE (`list` shows them)")
            print(_service_text(client.describe(args.service)))
        else:
            response = client.call(args.what, _request_text(args.data))
            print(json.dumps(response, indent=2, ensure_ascii=False))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from checkpoint2svc.checkpoint import Checkpoint
    from checkpoint2svc.codegen.service_context import generate

    names = generate(Checkpoint.open(args.checkpoint), Path(args.output), force=args.force)
    print(f"generated {names.full_service} into {args.output}")
    for name in ("server.py", f"{names.module}.proto", "openapi.json", "gen/"):
        print(f"  {Path(args.output) / name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="checkpoint2svc",
        description="Turn one notebook cell, on its pinned state, into a gRPC + REST service.",
    )
    parser.add_argument("--version", action="version", version=f"checkpoint2svc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    pin.add_argument("--inputs", type=variable_names, metavar="a,b",
                     help="input variables (default: the `parameters` cell's variables that the "
                     "target cell reads; none without such a cell; '' for none)")  # fmt: skip
    pin.add_argument("--outputs", type=variable_names, metavar="x,y",
                     help="output variables (default: the names the target cell assigns, minus "
                     "those starting with _ and those with no wire type)")  # fmt: skip
    pin.add_argument("--mode", choices=["isolated", "shared"], default="isolated",
                     help="isolated: each call starts from the pinned state (default); shared: "
                     "calls may change the state, one at a time")  # fmt: skip
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

    serve = commands.add_parser(
        "serve",
        help="serve a checkpoint (or a generated directory) locally over REST and gRPC",
        description="Load a checkpoint, replay its pinned example (GET /readyz and gRPC health "
        "report ready only if it matches) and serve REST (POST /execute, /openapi.json, /docs, "
        "/healthz, /metrics) and gRPC (the typed service, NodeService, health, reflection).",
    )
    serve.add_argument("path", metavar="CHECKPOINT|DIR",
                       help="a checkpoint, or a directory made by `generate`")  # fmt: skip
    add_serve_arguments(serve)
    serve.set_defaults(func=cmd_serve)

    grpc = commands.add_parser(
        "grpc",
        help="list, describe or call a gRPC server's methods by reflection, with JSON",
        description="A grpcurl-style client over plaintext HTTP/2 that needs no .proto: the "
        "server's reflection service tells it the services and messages. `list` prints the "
        "services, `describe SERVICE` their methods, SERVICE/METHOD calls a unary method with "
        "the JSON of -d and prints the response as JSON. Through a gateway, route every call "
        "(reflection's too) with -H 'x-node-id: NODE' or -H 'x-node-alias: ALIAS'.",
    )
    grpc.add_argument("target", metavar="HOST:PORT", help="an instance's or the gateway's port")
    grpc.add_argument("what", metavar="list|describe|SERVICE/METHOD",
                      help="e.g. yandex.cloud.datasphere.v1.NodeService/Execute")  # fmt: skip
    grpc.add_argument("service", nargs="?", metavar="SERVICE", help="the service to describe")
    grpc.add_argument("-d", "--data", default="{}", metavar="JSON|@FILE|-",
                      help="the request: JSON, @FILE, or - for stdin (default {})")  # fmt: skip
    grpc.add_argument("-H", "--header", type=_header, action="append", default=[],
                      metavar="'NAME: VALUE'",
                      help="metadata for every call, reflection's too (repeatable)")  # fmt: skip
    grpc.add_argument("--timeout", type=float, default=60, metavar="SECONDS",
                      help="time limit of each call (default 60)")  # fmt: skip
    grpc.set_defaults(func=cmd_grpc)

    generate = commands.add_parser(
        "generate",
        help="generate the service's build context: .proto, OpenAPI, server, compiled stubs",
        description="Render the typed .proto, openapi.json and the server module from a "
        "checkpoint and compile the protos; the same checkpoint gives byte-identical files.",
    )
    generate.add_argument("checkpoint", help="a checkpoint directory")
    generate.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    generate.add_argument("--force", action="store_true", help="replace an existing directory")
    generate.set_defaults(func=cmd_generate)

    build = commands.add_parser(
        "build",
        help="build a service's Docker image from a checkpoint, then self-test it",
        description="Render the Dockerfile, install the pinned requirements from a wheelhouse "
        "with no network inside the build, build with the local Docker engine (never pulling), "
        "then run the image on 127.0.0.1 and replay the pinned example over REST and gRPC. "
        "The tag is set only when the self-test passes.",
    )
    build.add_argument("checkpoint", help="a checkpoint directory")
    build.add_argument("-t", "--tag", required=True, metavar="IMAGE[:TAG]", help="image name")
    build.add_argument("--base-image", metavar="IMAGE",
                       help="a local image with python3 of the checkpoint's minor version "
                       "(default: $CHECKPOINT2SVC_BASE_IMAGE, else the one `base-image` "
                       "builds)")  # fmt: skip
    build.add_argument("--wheelhouse", type=Path, metavar="DIR",
                       help="where wheels are cached and looked up first "
                       "(default ~/.cache/checkpoint2svc/wheelhouse)")  # fmt: skip
    build.add_argument("--no-self-test", action="store_true",
                       help="tag the image without running it")  # fmt: skip
    build.add_argument("--no-cache", action="store_true",
                       help="rebuild every layer of the service image")  # fmt: skip
    build.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    build.set_defaults(func=cmd_build)

    base = commands.add_parser(
        "base-image",
        help="build the default base image (Debian with python3) from this machine's apt sources",
        description="Build a Debian root filesystem with python3 using mmdebstrap and this "
        "machine's apt sources, and import it with `docker import`; for machines that cannot "
        "pull images.",
    )
    base.add_argument("--tag", metavar="IMAGE",
                      help="the tag (default: $CHECKPOINT2SVC_BASE_IMAGE, else "
                      "checkpoint2svc/python:3.X-bookworm)")  # fmt: skip
    base.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    base.add_argument("--print-tag", action="store_true",
                      help="print the tag that would be built, and build nothing")  # fmt: skip
    base.set_defaults(func=cmd_base_image)

    from checkpoint2svc.cli_control import add_control_commands
    from checkpoint2svc.cli_deploy import add_deploy_commands

    add_control_commands(commands)
    add_deploy_commands(commands, variable_names)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CellExecutionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.traceback:
            print(exc.traceback, file=sys.stderr)
        return 1
    except ExecutionError as exc:
        print(f"error: the cell raised {exc}", file=sys.stderr)
        print("\n".join(exc.traceback), file=sys.stderr)
        return 1
    except ValueConversionError as exc:
        print(f"error: invalid input: {exc}", file=sys.stderr)
        return 1
    except Checkpoint2SvcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
