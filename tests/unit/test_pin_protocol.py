"""What crosses between the host and the kernel half of pinning: the request, the result, and
errors with class, message and details."""

import json
import subprocess
import sys
from pathlib import Path

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

EXAMPLES: dict[type[errors.Checkpoint2SvcError], errors.Checkpoint2SvcError] = {
    errors.Checkpoint2SvcError: errors.Checkpoint2SvcError("something went wrong"),
    errors.SignatureError: errors.SignatureError("--inputs names 'x', which ..."),
    errors.TypeInferenceError: errors.TypeInferenceError("x: no precise type, which --strict ..."),
    errors.UnserializableStateError: errors.UnserializableStateError("variable 'lock' ..."),
    errors.CellExecutionError: errors.CellExecutionError("cell raised ValueError", "Traceback…"),
    errors.ValueConversionError: errors.ValueConversionError("res", "a Results has no JSON form"),
    errors.ExecutionError: errors.ExecutionError("KeyError", "'a'", ["line 1", "line 2"]),
    errors.CheckpointError: errors.CheckpointError("malformed type in manifest"),
}


def test_every_crossing_class_has_an_example() -> None:
    assert set(CROSSING_ERRORS.values()) == set(EXAMPLES)


@pytest.mark.parametrize(
    "cls", sorted(EXAMPLES, key=lambda c: c.__name__), ids=lambda c: c.__name__
)
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


def test_the_kernel_half_imports_nothing_only_the_host_needs() -> None:
    code = (
        "import sys, checkpoint2svc.checkpoint.kernel_side; "
        "print(' '.join(m for m in ('nbclient', 'nbformat', 'jupyter_client', 'jinja2', "
        "'fastapi', 'grpc', 'httpx') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == []
