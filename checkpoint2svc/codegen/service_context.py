"""A service's build contexts, by consumer, and ``generate``, which writes them all once.

``generate``'s directory (deterministic: the same checkpoint gives the same bytes)::

    context.json           names the runtime needs to load the generated modules
    checkpoint/            the checkpoint (manifest.json, state.dill...), verified before copying
    <module>.proto         the typed service
    openapi.json           the REST API
    server.py              the instance's entry point, thin glue over checkpoint2svc.runtime
    gen/                   protoc's Python modules for the typed service and the shared protos
    client/                the typed Python client package (see ``codegen.client_package``)

Each consumer gets what it needs and nothing it would delete:

- an instance started from a checkpoint (``serve CHECKPOINT``, the local backend):
  ``instance_context`` (``render_service`` and ``gen/``), the checkpoint served where it is;
- the service image (``image.build``): ``instance_context``, the checkpoint's small files in
  ``checkpoint/`` and its state in a layer of its own;
- ``checkpoint2svc client``: ``render_client`` only (``write_client_package``);
- ``generate``: all of them, protoc run once for ``gen/`` and the client's ``_proto/``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

from checkpoint2svc.checkpoint import Checkpoint, Manifest
from checkpoint2svc.checkpoint.manifest import STATE_NAME
from checkpoint2svc.codegen.build_context import BuildContext, staged_directory
from checkpoint2svc.codegen.client_package import (
    CLIENT_DIR,
    ClientPackage,
    client_context,
    client_model,
    render_client,
)
from checkpoint2svc.codegen.json_schema import openapi_document
from checkpoint2svc.codegen.proto import render_proto, service_names, service_stubs
from checkpoint2svc.codegen.resources import template_environment
from checkpoint2svc.runtime.context import CHECKPOINT_DIR, CONTEXT_FILE, GEN_DIR
from checkpoint2svc.wire.names import ServiceNames

OPENAPI_FILE = "openapi.json"
SERVER_FILE = "server.py"


def render_service(manifest: Manifest) -> BuildContext:
    """The files an instance of ``manifest``'s service reads, protoc's modules and the
    checkpoint aside: ``context.json``, ``<module>.proto``, ``openapi.json`` and ``server.py``."""
    names = service_names(manifest)
    server = template_environment().get_template("server.py.j2")
    return BuildContext.of_text({
        CONTEXT_FILE: json.dumps(asdict(names), indent=2) + "\n",
        f"{names.module}.proto": render_proto(manifest),
        OPENAPI_FILE: json.dumps(openapi_document(manifest), indent=2) + "\n",
        SERVER_FILE: server.render(names=names, manifest=manifest),
    })  # fmt: skip


def instance_context(manifest: Manifest, stubs: BuildContext | None = None) -> BuildContext:
    """What an instance needs besides its checkpoint: ``render_service`` and, in ``gen/``,
    protoc's modules ``stubs`` (``service_stubs``, compiled here when not given)."""
    stubs = stubs if stubs is not None else service_stubs(manifest)
    return render_service(manifest).merged(stubs.under(GEN_DIR))


def checkpoint_context(checkpoint: Checkpoint) -> BuildContext:
    """The checkpoint's files but its state (``manifest.json``, ``random_state.json``...): small,
    read into memory; the state is copied by whoever places it."""
    root = checkpoint.path
    return BuildContext({
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file() and path.relative_to(root).as_posix() != STATE_NAME
    })  # fmt: skip


def generate(checkpoint: Checkpoint, out_dir: Path, force: bool = False) -> ServiceNames:
    """Write the build context for ``checkpoint`` into ``out_dir`` (atomically): the service, its
    checkpoint and its client package."""
    checkpoint.verify()
    manifest = checkpoint.manifest
    stubs = service_stubs(manifest)
    context = instance_context(manifest, stubs).merged(
        checkpoint_context(checkpoint).under(CHECKPOINT_DIR),
        render_client(manifest, stubs).under(CLIENT_DIR),
    )
    with staged_directory(out_dir, force) as staging:
        context.write_into(staging)
        shutil.copyfile(checkpoint.path / STATE_NAME, staging / CHECKPOINT_DIR / STATE_NAME)
    return service_names(manifest)


def write_client_package(
    checkpoint: Checkpoint, out_dir: Path, force: bool = False
) -> ClientPackage:
    """Write the typed client package of ``checkpoint``'s service into ``out_dir`` (atomically):
    the files ``generate`` writes into its ``client/``, so that ``pip install out_dir`` installs
    it. Only the manifest is read (the state is not needed, nor verified). Returns the package's
    model: ``package`` is the name to import, ``distribution`` the one to install."""
    stubs = service_stubs(checkpoint.manifest)
    model = client_model(checkpoint.manifest, stubs)
    client_context(model, stubs).write_to(out_dir, force)
    return model


__all__ = [
    "checkpoint_context",
    "generate",
    "instance_context",
    "render_client",
    "render_service",
    "write_client_package",
]
