"""An in-memory build context: the files a consumer (an instance, an image, a client) needs.

Generation renders a ``BuildContext`` per consumer (``render_service``, ``render_client``, protoc's
modules from ``service_stubs``), combines the ones a command needs, and writes them once::

    stubs = service_stubs(manifest)  # protoc, once for the service and its client
    service = render_service(manifest).merged(stubs.under("gen"))
    service.merged(render_client(manifest, stubs).under("client")).write_to(directory)

Writing is atomic: the files are staged in a directory beside the target and renamed into place,
so a reader never sees a half-written directory, and a failed write leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from types import MappingProxyType

from checkpoint2svc.errors import Checkpoint2SvcError


class BuildContextError(Checkpoint2SvcError):
    """A build context was given an unusable path, or two contexts disagree on a file."""


def _checked(path: str) -> str:
    parts = PurePosixPath(path).parts
    if not path or path.startswith("/") or "\\" in path or {"..", "."} & set(parts):
        raise BuildContextError(f"{path!r} is not a relative path inside a build context")
    if "/".join(parts) != path:
        raise BuildContextError(f"{path!r} is not a normalized path (write {'/'.join(parts)!r})")
    return path


@dataclass(frozen=True)
class BuildContext:
    """Files by relative POSIX path (``gen/greet_pb2.py``), kept sorted by path; immutable."""

    files: Mapping[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        files = {_checked(path): self.files[path] for path in sorted(self.files)}
        folders = {str(parent) for path in files for parent in PurePosixPath(path).parents}
        clashes = sorted(folders & set(files))
        if clashes:
            raise BuildContextError(f"{clashes[0]!r} is both a file and a folder of this context")
        object.__setattr__(self, "files", MappingProxyType(files))

    @classmethod
    def of_text(cls, files: Mapping[str, str]) -> BuildContext:
        """A context of text files, encoded as UTF-8."""
        return cls({path: text.encode() for path, text in files.items()})

    @cached_property
    def digest(self) -> str:
        """sha256 over every path and its bytes in path order (each length-prefixed): equal
        contexts have equal digests, and any change of a name or a byte changes it."""
        sha = hashlib.sha256()
        for path, data in self.files.items():
            name = path.encode()
            sha.update(len(name).to_bytes(8, "big") + name)
            sha.update(len(data).to_bytes(8, "big") + data)
        return sha.hexdigest()

    def under(self, folder: str) -> BuildContext:
        """The same files inside ``folder``."""
        prefix = _checked(folder)
        return BuildContext({f"{prefix}/{path}": data for path, data in self.files.items()})

    def merged(self, *others: BuildContext) -> BuildContext:
        """The files of this context and ``others``; a path that two of them hold with different
        bytes is an error (the same bytes are fine)."""
        files = dict(self.files)
        for other in others:
            for path, data in other.files.items():
                if files.setdefault(path, data) != data:
                    raise BuildContextError(f"two build contexts disagree on {path}")
        return BuildContext(files)

    def text(self, path: str) -> str:
        return self.files[path].decode()

    def write_into(self, directory: Path) -> None:
        """Write the files into ``directory`` (created if missing), replacing files of the same
        names; not atomic: see ``write_to``."""
        for path, data in self.files.items():
            target = directory / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

    def write_to(self, directory: Path, force: bool = False) -> None:
        """Make ``directory`` hold exactly these files, atomically (see ``staged_directory``)."""
        with staged_directory(directory, force) as staging:
            self.write_into(staging)


@contextmanager
def staged_directory(out_dir: Path, force: bool = False) -> Iterator[Path]:
    """A staging directory beside ``out_dir`` that replaces it when the block succeeds (by a
    rename: a reader never sees a half-written ``out_dir``) and is removed when it fails.

    An existing ``out_dir`` is replaced only with ``force``.
    """
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


__all__ = ["BuildContext", "BuildContextError", "staged_directory"]
