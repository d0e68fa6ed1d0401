"""Run notebook cells in a fresh Jupyter kernel (nbclient + ipykernel)."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError as NbCellExecutionError
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from checkpoint2svc.checkpoint.notebook import describe_cell
from checkpoint2svc.errors import CellExecutionError, NotebookError

THIS_PYTHON = "checkpoint2svc-this-python"
"""A kernel running on the interpreter of the calling process, whatever kernelspecs exist."""

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

Progress = Callable[[str], None]


class _SpecsWithThisPython(KernelSpecManager):
    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name == THIS_PYTHON:
            return KernelSpec(
                argv=[
                    sys.executable,
                    "-m",
                    "ipykernel_launcher",
                    "-f",
                    "{connection_file}",
                    "--IPKernelApp.log_level=ERROR",
                ],
                display_name=f"Python {sys.version.split()[0]} ({sys.executable})",
                language="python",
                resource_dir="",
            )
        return super().get_kernel_spec(kernel_name)


def kernel_manager(kernel_name: str | None = None) -> AsyncKernelManager:
    """A manager of the kernel ``kernel_name``; None: one on this process's interpreter."""
    return AsyncKernelManager(
        kernel_name=kernel_name or THIS_PYTHON, kernel_spec_manager=_SpecsWithThisPython()
    )


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


class KernelSession:
    """One started kernel; cells run in it one by one."""

    def __init__(self, client: NotebookClient) -> None:
        self._client = client

    def run(self, source: str, label: str, store_history: bool = True) -> Any:
        """Execute ``source``; a failure raises :class:`CellExecutionError` naming ``label``."""
        cell = nbformat.v4.new_code_cell(source)  # type: ignore[no-untyped-call]
        self._client.nb.cells.append(cell)
        try:
            self._client.execute_cell(
                cell, len(self._client.nb.cells) - 1, store_history=store_history
            )
        except NbCellExecutionError as exc:
            traceback = strip_ansi(str(exc.args[0] if exc.args else exc))
            raise CellExecutionError(
                f"{label} raised {exc.ename}: {strip_ansi(exc.evalue)}", traceback
            ) from None
        except CellTimeoutError as exc:
            raise CellExecutionError(
                f"{label} did not finish within {self._client.timeout} s; pass a larger "
                "--timeout or make the cell faster"
            ) from exc
        except DeadKernelError as exc:
            raise CellExecutionError(
                f"the kernel died while running {label} ({exc}); the cell may have run out of "
                "memory or crashed the interpreter"
            ) from exc
        return cell


@contextmanager
def kernel_session(
    directory: Path, kernel_name: str | None, timeout: float | None
) -> Iterator[KernelSession]:
    """Start a kernel whose working directory is ``directory``; shut it down on exit."""
    name = kernel_name or THIS_PYTHON
    manager = kernel_manager(name)
    client = NotebookClient(
        nbformat.v4.new_notebook(),  # type: ignore[no-untyped-call]
        km=manager,
        timeout=timeout,
        startup_timeout=120,
        allow_errors=False,
        resources={"metadata": {"path": str(directory)}},
    )
    try:
        with client.setup_kernel():
            yield KernelSession(client)
    except NoSuchKernel as exc:
        raise NotebookError(
            f"no Jupyter kernel named {name!r}; list them with `jupyter kernelspec list`"
        ) from exc
    finally:
        # nbclient leaves a kernel it was handed (km=) running; this one is ours to stop.
        if run_sync(manager.is_alive)():
            run_sync(manager.shutdown_kernel)(now=True)


def run_cells(session: KernelSession, cells: list[tuple[int, Any]], progress: Progress) -> None:
    """Run notebook cells in order, reporting each one."""
    total = len(cells)
    for n, (index, cell) in enumerate(cells, start=1):
        label = describe_cell(index, cell)
        started = time.perf_counter()
        progress(f"[{n}/{total}] running {label}")
        session.run(cell.source, label)
        progress(f"[{n}/{total}] done in {time.perf_counter() - started:.2f} s")
