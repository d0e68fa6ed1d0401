"""What crosses between the host and the kernel half of pinning: the request, the result, and
errors with class, message and details."""

import ast
import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from checkpoint2svc import errors
from checkpoint2svc.checkpoint.manifest import StateVariable, Variable
from checkpoint2svc.checkpoint.pin_protocol import (
    CROSSING_ERRORS,
    RESULT_NAME,
    ExcludedVariable,
    PinRequest,
    PinResult,
    error_from_wire,
    error_to_wire,
    read_result,
    write_result,
)
from checkpoint2svc.checkpoint.requirements import Distribution
from checkpoint2svc.wire.type_ir import DictOf, ListOf, Scalar, Tensor

_SPECIAL: dict[type[errors.Checkpoint2SvcError], errors.Checkpoint2SvcError] = {
    errors.SignatureError: errors.SignatureError("--inputs names 'x', which ..."),
    errors.TypeInferenceError: errors.TypeInferenceError("x: no precise type, which --strict ..."),
    errors.UnserializableStateError: errors.UnserializableStateError("variable 'lock' ..."),
    errors.CellExecutionError: errors.CellExecutionError("cell raised ValueError", "Traceback…"),
    errors.ValueConversionError: errors.ValueConversionError("res", "a Results has no JSON form"),
    errors.ExecutionError: errors.ExecutionError("KeyError", "'a'", ["line 1", "line 2"]),
    errors.GrpcCallError: errors.GrpcCallError("no method Run", "UNIMPLEMENTED"),
}
EXAMPLES: dict[type[errors.Checkpoint2SvcError], errors.Checkpoint2SvcError] = {
    cls: _SPECIAL.get(cls) or cls(f"{cls.__name__}: something went wrong")
    for cls in CROSSING_ERRORS.values()
}


def test_every_crossing_class_has_an_example() -> None:
    assert set(CROSSING_ERRORS.values()) == set(EXAMPLES)
    assert {errors.NotebookError, errors.CellSelectionError, errors.IntegrityError} <= set(EXAMPLES)


def _raised_or_imported(module: ModuleType) -> Iterator[tuple[str, object]]:
    """What ``module`` raises by name (``raise X(...)``, ``raise errors.X``) or imports by name,
    each resolved in the module's namespace (a local such as ``raise exc`` resolves to nothing)."""
    assert module.__file__ is not None
    for node in ast.walk(ast.parse(Path(module.__file__).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            names = [ast.unparse(target)]
        elif isinstance(node, ast.ImportFrom):
            names = [alias.asname or alias.name for alias in node.names]
        else:
            continue
        for name in names:
            value: object = module
            for part in name.split("."):
                value = getattr(value, part, None)
            yield f"{module.__name__}: {name}", value


_CLIENT_ONLY = {"checkpoint2svc.wire.signature: ValidationError"}
"""Raised in modules the kernel half loads, by code only a generated client calls
(``Signature.check_inputs``)."""


def test_every_error_the_kernel_half_can_raise_crosses_with_its_class() -> None:
    code = (
        "import sys, checkpoint2svc.checkpoint.kernel_side; "
        "print(' '.join(m for m in sys.modules if m.startswith('checkpoint2svc')))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = sorted(run.stdout.split())  # what the kernel half loads, of checkpoint2svc
    found: dict[str, type[errors.Checkpoint2SvcError]] = {}
    for name in loaded:
        for where, value in _raised_or_imported(importlib.import_module(name)):
            if isinstance(value, type) and issubclass(value, errors.Checkpoint2SvcError):
                found[where] = value
    assert {errors.SignatureError, errors.CellExecutionError, errors.ExecutionError} <= set(
        found.values()
    )  # the scan sees the kernel half
    missing = [
        where
        for where, cls in found.items()
        if CROSSING_ERRORS.get(cls.__name__) is not cls and where not in _CLIENT_ONLY
    ]
    assert not missing, (
        f"errors the kernel half can raise that would cross as another class: {missing}"
    )


_BY_NAME = sorted(EXAMPLES, key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", _BY_NAME, ids=[c.__name__ for c in _BY_NAME])
def test_an_error_crosses_with_its_class_message_and_details(
    cls: type[errors.Checkpoint2SvcError],
) -> None:
    original = EXAMPLES[cls]
    crossed = error_from_wire(error_to_wire(original))
    assert type(crossed) is cls
    assert str(crossed) == str(original)
    assert vars(crossed) == vars(original)  # field, reason, traceback, error_name ...


def test_an_unknown_class_arrives_as_the_root_class_with_its_message() -> None:
    crossed = error_from_wire({"class": "FutureError", "message": "from a newer kernel"})
    assert type(crossed) is errors.Checkpoint2SvcError and str(crossed) == "from a newer kernel"


def test_the_request_round_trips_through_its_file(tmp_path: Path) -> None:
    request = PinRequest("y = x", None, None, ["y"], True, "the target cell #1", "shared")
    assert PinRequest.read(request.write(tmp_path)) == request


RESULT = PinResult(
    inputs=(Variable("rows", ListOf(Scalar("float")), [1.0, 2.5]),),
    outputs=(
        Variable("scores", DictOf(Scalar("int")), {"a": 1}),
        Variable("image", Tensor("uint8", (-1, 2)), {"b64": "AAE=", "shape": [1, 2]}),
    ),
    state=(StateVariable("model", "sklearn.linear_model.LogisticRegression", 912),),
    excluded=(ExcludedVariable("lock", "_thread.lock", "cannot pickle '_thread.lock' object"),),
    deterministic=False,
    random_state=("random", "numpy"),
    requirements=(Distribution("numpy", "2.1.0", True), Distribution("six", "1.16.0", False)),
    python_version="3.12.4",
    warnings=("the target cell gave different outputs when run twice ...",),
    notes=("no cell is tagged `parameters` ...",),
)


def test_the_result_round_trips_through_json() -> None:
    assert PinResult.from_json(json.loads(json.dumps(RESULT.to_json()))) == RESULT


def test_the_result_round_trips_through_its_file(tmp_path: Path) -> None:
    assert read_result(write_result(tmp_path, RESULT)) == RESULT


def test_an_error_in_place_of_the_result_is_raised_by_the_host(tmp_path: Path) -> None:
    path = write_result(tmp_path, errors.UnserializableStateError("variable 'lock' is needed"))
    with pytest.raises(errors.UnserializableStateError, match="variable 'lock' is needed"):
        read_result(path)


def test_a_result_from_another_version_names_the_fix(tmp_path: Path) -> None:
    data = RESULT.to_json()
    del data["state"]
    (tmp_path / RESULT_NAME).write_text(json.dumps({"ok": data}), encoding="utf-8")
    with pytest.raises(errors.CheckpointError, match="another version of checkpoint2svc"):
        read_result(tmp_path / RESULT_NAME)


@pytest.mark.parametrize(
    "text", ['{"ok": {"inputs": [', "", "\xff not json"], ids=["truncated", "empty", "garbage"]
)
def test_a_result_that_is_not_json_names_the_fix(tmp_path: Path, text: str) -> None:
    (tmp_path / RESULT_NAME).write_text(text, encoding="latin-1")
    with pytest.raises(errors.CheckpointError, match="another version of checkpoint2svc"):
        read_result(tmp_path / RESULT_NAME)


def test_the_kernel_half_imports_nothing_only_the_host_needs() -> None:
    code = (
        "import sys, checkpoint2svc.checkpoint.kernel_side; "
        "print(' '.join(m for m in ('nbclient', 'nbformat', 'jupyter_client', 'jinja2', "
        "'fastapi', 'grpc', 'httpx') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == []
