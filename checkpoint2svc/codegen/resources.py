"""Where the templates and the hand-written protos are: inside the wheel or in the source tree.

The wheel ships the top-level ``templates/`` and ``protos/`` folders as
``checkpoint2svc/_templates`` and ``checkpoint2svc/_protos`` (see pyproject.toml); a source
checkout has them next to the package.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

from checkpoint2svc.errors import Checkpoint2SvcError

_PACKAGE = Path(__file__).resolve().parent.parent


class ResourceNotFoundError(Checkpoint2SvcError):
    """A folder that ships with checkpoint2svc is missing: the installation is broken."""


def _resource_dir(name: str) -> Path:
    candidates = (_PACKAGE / f"_{name}", _PACKAGE.parent / name)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise ResourceNotFoundError(
        f"checkpoint2svc's {name}/ folder is missing (looked in "
        f"{' and '.join(str(c) for c in candidates)}); reinstall checkpoint2svc"
    )


def templates_dir() -> Path:
    """The folder of Jinja templates, one per generated file."""
    return _resource_dir("templates")


def protos_dir() -> Path:
    """The root of the hand-written protos (an include path for protoc)."""
    return _resource_dir("protos")


@lru_cache(maxsize=1)
def template_environment() -> jinja2.Environment:
    """The Jinja environment every generator renders with: strict, no escaping, exact newlines."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
