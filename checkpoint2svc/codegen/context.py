"""Generate a service's build context from a checkpoint: protos, OpenAPI, server and client code.

Layout of the generated directory (deterministic: the same checkpoint gives the same bytes)::

    context.json           names the runtime needs to load the generated modules
    checkpoint/            the checkpoint (manifest.json, state.dill), verified before copying
    <module>.proto         the typed service
    openapi.json           the REST API
    server.py              the instance's entry point, thin glue over checkpoint2svc.runtime
    gen/                   protoc's Python modules for the typed service and the shared protos
    client/                the typed Python client package (see ``codegen.client``)

``write_client_package`` writes only that package, on its own.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from checkpoint2svc.checkpoint import Checkpoint, Manifest
from checkpoint2svc.codegen.client import CLIENT_DIR, ClientPackage, write_client
from checkpoint2svc.codegen.json_schema import openapi_document
from checkpoint2svc.codegen.proto import (
    compile_protos,
    compile_shared_protos,
    proto_package,
    render_proto,
    service_name,
)
from checkpoint2svc.codegen.resources import template_environment
from checkpoint2svc.errors import Checkpoint2SvcError
from checkpoint2svc.runtime.context import CHECKPOINT_DIR, CONTEXT_FILE, GEN_DIR, ServiceNames


def module_name(name: str) -> str:
    """The proto file's stem and its modules' prefix: a Python identifier."""
    module = re.sub(r"[^a-z0-9_]", "_", name.lower())
    return module if module[:1].isalpha() else f"svc_{module}"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def service_names(manifest: Manifest) -> ServiceNames:
    """How ``manifest``'s service is named in generated code: module, proto package, service."""
    return ServiceNames(
        manifest.name, module_name(manifest.name), proto_package(manifest.name),
        service_name(manifest.name),
    )  # fmt: skip


@contextmanager
def _staged(out_dir: Path, force: bool) -> Iterator[Path]:
    """A staging directory beside ``out_dir`` that replaces it when the block succeeds (by a
    rename: a reader never sees a half-written ``out_dir``) and is removed when it fails."""
    if out_dir.exists() and not force:
        raise Checkpoint2SvcError(
            f"{out_dir} already exists; pass --force to replace it, or choose another -o"
        )
    if Path.cwd().is_relative_to(out_dir.resolve()):
        raise Checkpoint2SvcError(
            f"{out_dir} holds the current directory and cannot be replaced; choose another -o"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent)
    )
    try:
        yield staging
        if out_dir.is_dir() and not out_dir.is_symlink():
            shutil.rmtree(out_dir)
        elif out_dir.exists() or out_dir.is_symlink():
            out_dir.unlink()
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def generate(checkpoint: Checkpoint, out_dir: Path, force: bool = False) -> ServiceNames:
    """Write the build context for ``checkpoint`` into ``out_dir`` (atomically)."""
    checkpoint.verify()
    manifest = checkpoint.manifest
    names = service_names(manifest)
    with _staged(out_dir, force) as staging:
        shutil.copytree(checkpoint.path, staging / CHECKPOINT_DIR)
        _write(staging / CONTEXT_FILE, json.dumps(asdict(names), indent=2) + "\n")
        proto = staging / f"{names.module}.proto"
        _write(proto, render_proto(manifest))
        _write(staging / "openapi.json", json.dumps(openapi_document(manifest), indent=2) + "\n")
        template = template_environment().get_template("server.py.j2")
        _write(staging / "server.py", template.render(names=names, manifest=manifest))
        compile_shared_protos(staging / GEN_DIR)
        compile_protos(proto, staging / GEN_DIR)
        write_client(manifest, names, proto, staging / CLIENT_DIR)
    return names


def write_client_package(
    checkpoint: Checkpoint, out_dir: Path, force: bool = False
) -> ClientPackage:
    """Write the typed client package of ``checkpoint``'s service into ``out_dir`` (atomically):
    the files ``generate`` writes into its ``client/``, so that ``pip install out_dir`` installs
    it. Only the manifest is read (the state is not needed, nor verified). Returns the package's
    model: ``package`` is the name to import, ``distribution`` the one to install."""
    manifest = checkpoint.manifest
    names = service_names(manifest)
    with (
        _staged(out_dir, force) as staging,
        tempfile.TemporaryDirectory(prefix="checkpoint2svc-proto.") as protos,
    ):
        proto = Path(protos) / f"{names.module}.proto"  # compiled into the package, not part of it
        _write(proto, render_proto(manifest))
        return write_client(manifest, names, proto, staging)
