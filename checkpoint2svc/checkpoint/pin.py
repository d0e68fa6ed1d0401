"""Pin a notebook: run the cells before the target in a kernel, capture state and signature."""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from checkpoint2svc import errors
from checkpoint2svc.checkpoint.checkpoint import Checkpoint
from checkpoint2svc.checkpoint.kernel import Progress, kernel_session, run_cells
from checkpoint2svc.checkpoint.manifest import (
    STATE_NAME,
    Manifest,
    TargetCell,
    sha256_file,
)
from checkpoint2svc.checkpoint.notebook import (
    code_cells,
    describe_cell,
    parameters_cell,
    read_notebook,
    select_cell,
)
from checkpoint2svc.checkpoint.pin_protocol import RESULT_NAME, PinRequest, PinResult, read_result
from checkpoint2svc.execution.executor import ExecutionMode
from checkpoint2svc.execution.random_state import RANDOM_STATE_NAME
from checkpoint2svc.signature.cell_analysis import parse_cell, to_python

_CAPTURE = (
    '__import__("checkpoint2svc.checkpoint.kernel_side", fromlist=["capture"]).capture({path!r})'
)


def service_name(text: str) -> str:
    """A DNS- and proto-friendly name: lower case letters, digits and dashes."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"svc-{name}" if name else "svc"
    return name[:63]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _prepare_output(out_dir: Path, force: bool) -> Path:
    if out_dir.exists() and not force:
        raise errors.CheckpointError(
            f"{out_dir} already exists; pass --force to replace it, or choose another -o"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))


def _commit(staging: Path, out_dir: Path) -> None:
    """Move the finished checkpoint into place; an old one is removed only after that works."""
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out_dir.rename(old)
        staging.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out_dir)


@contextmanager
def staged_checkpoint(out_dir: Path, force: bool) -> Iterator[Path]:
    """A staging directory beside ``out_dir``, moved into place only if the block succeeds."""
    staging = _prepare_output(out_dir, force)
    try:
        yield staging
        _commit(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_manifest(
    staging: Path,
    captured: PinResult,
    *,
    name: str,
    notebook: str,
    notebook_sha256: str,
    cell: TargetCell,
    mode: ExecutionMode,
    warn: Callable[[str], None],
) -> Manifest:
    """The manifest of what the kernel side captured into ``staging`` (written there too)."""
    from checkpoint2svc.version import __version__

    for message in captured.notes:
        warn(f"note: {message}")
    for message in captured.warnings:
        warn(f"warning: {message}")
    files = {STATE_NAME: sha256_file(staging / STATE_NAME)}
    if (staging / RANDOM_STATE_NAME).is_file():
        files[RANDOM_STATE_NAME] = sha256_file(staging / RANDOM_STATE_NAME)
    manifest = Manifest(
        name=service_name(name),
        notebook=notebook,
        notebook_sha256=notebook_sha256,
        cell=cell,
        inputs=list(captured.inputs),
        outputs=list(captured.outputs),
        mode=mode,
        python_version=captured.python_version,
        requirements=[d.to_dict() for d in captured.requirements],
        state=list(captured.state),
        excluded=[e.to_dict() for e in captured.excluded],
        deterministic=captured.deterministic,
        random_state=list(captured.random_state),
        files=files,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        checkpoint2svc_version=__version__,
        warnings=list(captured.warnings),
    )
    manifest.write(staging)
    return manifest


def pin_notebook(
    notebook_path: Path,
    selector: str,
    out_dir: Path | None = None,
    *,
    inputs: list[str] | None = None,
    outputs: list[str] | None = None,
    mode: ExecutionMode = "isolated",
    name: str | None = None,
    kernel_name: str | None = None,
    strict: bool = False,
    force: bool = False,
    timeout: float | None = 600,
    progress: Progress = _stderr,
    warn: Callable[[str], None] = _stderr,
) -> Checkpoint:
    """Pin ``selector``'s cell of a notebook into a checkpoint directory and return it."""
    notebook_path = Path(notebook_path)
    notebook, notebook_sha = read_notebook(notebook_path)
    target = select_cell(notebook, selector)
    python_source = to_python(target.cell.source)
    parse_cell(python_source, f"the target cell #{target.code_index}")
    params = parameters_cell(notebook, target.index)
    earlier = [(i, c) for i, c in code_cells(notebook) if i < target.index and c.source.strip()]
    if name is None:
        name = target.by_tag or notebook_path.stem
    out_dir = Path(out_dir or f"{service_name(name)}.ckpt")

    request = PinRequest(
        python_source=python_source,
        parameters_source=to_python(params.source) if params is not None else None,
        inputs=inputs,
        outputs=outputs,
        strict=strict,
        label=f"the target {describe_cell(target.index, target.cell)}",
        mode=mode,
    )
    cell = TargetCell(
        id=str(target.cell.get("id", "")),
        index=target.index,
        source=target.cell.source,
        python_source=python_source,
        tags=tuple(target.cell.get("metadata", {}).get("tags", [])),
    )
    with staged_checkpoint(out_dir, force) as staging:
        request_path = request.write(staging)
        with kernel_session(notebook_path.resolve().parent, kernel_name, timeout) as session:
            run_cells(session, earlier, progress)
            progress(
                f"capturing state and running the target cell #{target.code_index} "
                "(twice: a determinism check)"
            )
            try:
                session.run(
                    _CAPTURE.format(path=str(request_path.resolve())),
                    "capture",
                    store_history=False,
                )
            except errors.CellExecutionError as exc:
                if "ModuleNotFoundError" in str(exc):
                    raise errors.NotebookError(
                        "the kernel cannot import checkpoint2svc; install checkpoint2svc into "
                        "the kernel's environment, or omit --kernel to use this Python"
                    ) from exc
                raise
        request_path.unlink()
        result = read_result(staging / RESULT_NAME)  # raises the error the kernel sent
        (staging / RESULT_NAME).unlink()
        manifest = write_manifest(
            staging, result, name=name, notebook=notebook_path.name,
            notebook_sha256=notebook_sha, cell=cell, mode=mode, warn=warn,
        )  # fmt: skip
    return Checkpoint(out_dir, manifest)
