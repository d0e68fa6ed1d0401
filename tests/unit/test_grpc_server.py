"""What every RPC of an instance shares (``CallRunner``): request ids, the response limit, the
status of each failure and the metrics, called directly with a stand-in context (no sockets)."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from checkpoint2svc.errors import ExecutionError, ValueConversionError
from checkpoint2svc.runtime.grpc_server import CallRunner
from checkpoint2svc.runtime.metrics import NodeMetrics
from checkpoint2svc.wire.limits import Limits


class Aborted(Exception):
    """What ``ServicerContext.abort`` raises (grpc's own is internal)."""


class Context:
    def __init__(self, *metadata: tuple[str, str]) -> None:
        self.metadata = metadata
        self.code: Any = None
        self.details = ""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise Aborted(details)

    def abort_with_status(self, status: Any) -> None:
        self.code, self.details = status.code, status.details
        raise Aborted(status.details)


def error_details(**fields: Any) -> struct_pb2.Struct:
    """Stands in for the generated ``NodeExecutionErrorDetails``."""
    details = struct_pb2.Struct()
    details.update(fields)
    return details


@pytest.fixture
def runner() -> CallRunner:
    service = SimpleNamespace(
        next_request_id=lambda: "pid1-1",
        limits=Limits(max_message_bytes=64),
        metrics=NodeMetrics("n"),
    )
    return CallRunner(service, error_details)  # type: ignore[arg-type]


def run(runner: CallRunner, context: Context, call: Callable[[str], Any]) -> Any:
    return runner(context, call)  # type: ignore[arg-type]


def grpc_codes(runner: CallRunner) -> str:
    text: str = runner.service.metrics.render()
    return "\n".join(line for line in text.splitlines() if "grpc_codes_total{" in line)


def test_a_call_gets_the_callers_request_id_or_a_new_one(runner: CallRunner) -> None:
    seen: list[str] = []

    def call(rid: str) -> struct_pb2.Value:
        seen.append(rid)
        return struct_pb2.Value(number_value=3)

    run(runner, Context(("x-request-id", "abc"), ("x-node-alias", "live")), call)
    run(runner, Context(), call)
    assert seen == ["abc", "pid1-1"]
    codes = grpc_codes(runner)
    assert 'node_grpc_codes_total{node_id="n",code="OK"} 2' in codes
    assert 'alias_grpc_codes_total{alias_id="live",code="OK"} 1' in codes


def test_failures_end_with_their_status_and_count_under_its_name(runner: CallRunner) -> None:
    def invalid(rid: str) -> Any:
        raise ValueConversionError("input.a", "expected int, got str")

    def raising(rid: str) -> Any:
        raise ExecutionError("ZeroDivisionError", "division by zero", ["line"])

    def too_big(rid: str) -> Any:
        return struct_pb2.Value(string_value="x" * 100)

    expected = [
        (invalid, grpc.StatusCode.INVALID_ARGUMENT, "input.a: expected int, got str"),
        (raising, grpc.StatusCode.INTERNAL, "ZeroDivisionError: division by zero"),
        (too_big, grpc.StatusCode.RESOURCE_EXHAUSTED, "exceeds the limit of 64 bytes"),
    ]
    for call, code, details in expected:
        context = Context()
        with pytest.raises(Aborted):
            run(runner, context, call)
        assert context.code == code
        assert details in context.details
    codes = grpc_codes(runner)
    for name in ("INVALID_ARGUMENT", "INTERNAL", "RESOURCE_EXHAUSTED"):
        assert f'node_grpc_codes_total{{node_id="n",code="{name}"}} 1' in codes
