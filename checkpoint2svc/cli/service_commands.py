"""``generate``, ``serve``, ``build``, ``base-image`` and ``grpc``: a checkpoint as generated
code, a local server, a Docker image, and a gRPC caller for any of them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from checkpoint2svc.cli.arguments import header, progress_printer, request_text, size_text
from checkpoint2svc.errors import Checkpoint2SvcError
from checkpoint2svc.runtime.options import add_serve_arguments

if TYPE_CHECKING:
    from checkpoint2svc.cli.arguments import Commands
    from checkpoint2svc.runtime.reflection_client import ServiceInfo


def cmd_generate(args: argparse.Namespace) -> int:
    from checkpoint2svc.checkpoint import Checkpoint
    from checkpoint2svc.codegen.service_context import generate

    names = generate(Checkpoint.open(args.checkpoint), Path(args.output), force=args.force)
    print(f"generated {names.full_service} into {args.output}")
    for name in ("server.py", f"{names.module}.proto", "openapi.json", "gen/"):
        print(f"  {Path(args.output) / name}")
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


def cmd_build(args: argparse.Namespace) -> int:
    from checkpoint2svc.checkpoint import Checkpoint
    from checkpoint2svc.image.build import build_image

    built = build_image(
        Checkpoint.open(args.checkpoint), args.tag, base_image=args.base_image,
        wheelhouse=args.wheelhouse, self_test=not args.no_self_test,
        progress=progress_printer(args.quiet), no_cache=args.no_cache,
    )  # fmt: skip
    if args.quiet:
        print(built.id)
        return 0
    test = (
        f"self-test passed over {' and '.join(built.self_test.protocols)}"
        if built.self_test else "self-test skipped"
    )  # fmt: skip
    print(
        f"built {built.tag} ({built.id[7:19]}, {size_text(built.size)}) in "
        f"{built.seconds:.1f} s; {built.cached_steps}/{built.steps} steps from cache; {test}"
    )
    return 0


def cmd_base_image(args: argparse.Namespace) -> int:
    from checkpoint2svc.image.base_image import build_base_image, default_base_image
    from checkpoint2svc.image.engine import docker_client

    tag = args.tag or default_base_image()
    if args.print_tag:
        print(tag)
        return 0
    image_id = build_base_image(docker_client(), tag, progress=progress_printer(args.quiet))
    print(f"built base image {tag} ({image_id[7:19]})" if not args.quiet else image_id)
    return 0


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
            response = client.call(args.what, request_text(args.data))
            print(json.dumps(response, indent=2, ensure_ascii=False))
    return 0


def register(commands: Commands) -> None:
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
    grpc.add_argument("-H", "--header", type=header, action="append", default=[],
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
