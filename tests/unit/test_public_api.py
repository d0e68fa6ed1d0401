"""The package's front door: every name of ``checkpoint2svc.__all__`` is there, is the library's
own object, and importing the package loads none of the heavy dependencies."""

from __future__ import annotations

import subprocess
import sys

import pytest

import checkpoint2svc
from checkpoint2svc.checkpoint.pin import pin_notebook
from checkpoint2svc.control.api_client import ControllerClient
from checkpoint2svc.control.models import NodeSpec


def test_every_public_name_resolves_and_is_listed() -> None:
    for name in checkpoint2svc.__all__:
        assert getattr(checkpoint2svc, name) is not None, name
    assert set(checkpoint2svc.__all__) <= set(dir(checkpoint2svc))
    assert checkpoint2svc.pin_notebook is pin_notebook
    assert checkpoint2svc.ControllerClient is ControllerClient
    assert checkpoint2svc.NodeSpec is NodeSpec


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'pin'"):
        _ = checkpoint2svc.pin  # type: ignore[attr-defined]


def test_importing_the_package_loads_no_heavy_dependency() -> None:
    heavy = ("fastapi", "docker", "grpc", "nbclient", "jinja2", "httpx", "pydantic")
    probe = f"import sys, checkpoint2svc; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "", f"`import checkpoint2svc` loaded {loaded}"
