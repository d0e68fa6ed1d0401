"""Errors cross from the kernel half of pinning to the host with class, message and details."""

from pathlib import Path

import pytest

from checkpoint2svc import errors
from checkpoint2svc.checkpoint.pin_protocol import (
    CROSSING_ERRORS,
    PinRequest,
    error_from_wire,
    error_to_wire,
)

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
