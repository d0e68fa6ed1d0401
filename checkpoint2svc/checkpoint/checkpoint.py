"""A checkpoint on disk: the manifest read eagerly, the state loaded lazily and only if intact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from checkpoint2svc.checkpoint.manifest import STATE_NAME, Manifest, sha256_file
from checkpoint2svc.errors import CheckpointError, IntegrityError
from checkpoint2svc.execution.executor import CellExecutor, ExecutionMode
from checkpoint2svc.execution.random_state import RandomState


class Checkpoint:
    """Open with :meth:`open`; ``state`` unpickles only after every file's sha256 is verified."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest
        self._state: dict[str, Any] | None = None

    @classmethod
    def open(cls, path: str | Path) -> Checkpoint:
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"checkpoint {path} does not exist or is not a directory")
        return cls(path, Manifest.read(path))

    def verify(self) -> None:
        """Check every payload file against its recorded sha256."""
        for name, expected in self.manifest.files.items():
            file = self.path / name
            if not file.is_file():
                raise IntegrityError(f"checkpoint {self.path} is missing {name}; pin it again")
            actual = sha256_file(file)
            if actual != expected:
                raise IntegrityError(
                    f"{file} does not match the sha256 recorded in manifest.json (file "
                    f"{actual[:12]}…, manifest {expected[:12]}…): the checkpoint was modified "
                    "after pinning; refusing to load it. Pin the notebook again"
                )

    @property
    def state(self) -> dict[str, Any]:
        """The globals captured before the target cell (verified, then unpickled once)."""
        if self._state is None:
            self._state = self.load_state()
        return self._state

    def load_state(self) -> dict[str, Any]:
        """A fresh copy of the captured globals (verified, then unpickled)."""
        import dill

        self.verify()
        with (self.path / STATE_NAME).open("rb") as stream:
            try:
                namespace: dict[str, Any] = dill.load_module_asdict(stream)
            except ModuleNotFoundError as exc:
                raise CheckpointError(
                    f"the checkpoint's state needs the module {exc.name!r}, which is not "
                    "installed here; install the checkpoint's requirements (see `checkpoint2svc "
                    "inspect`)"
                ) from exc
        return namespace

    def executor(self, mode: ExecutionMode | None = None, fresh: bool = False) -> CellExecutor:
        """An executor of the target cell over the state (a private state copy if ``fresh``)."""
        manifest = self.manifest
        return CellExecutor(
            self.load_state() if fresh else self.state,
            manifest.cell.python_source,
            [v.name for v in manifest.inputs],
            [v.name for v in manifest.outputs],
            mode=mode or manifest.mode,
            random_state=RandomState.read(self.path),
        )
