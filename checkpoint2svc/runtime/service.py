"""One instance's logic, the same for every protocol: check inputs, run the cell, shape outputs."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from typing import Any

from checkpoint2svc.checkpoint import Checkpoint
from checkpoint2svc.errors import Checkpoint2SvcError, ExecutionError, ValueConversionError
from checkpoint2svc.execution.differences import output_differences
from checkpoint2svc.execution.executor import CellExecutor, ExecutionMode
from checkpoint2svc.runtime import cell_output
from checkpoint2svc.runtime.metrics import NodeMetrics
from checkpoint2svc.wire.json_values import TensorFormat, decode_json, encode_json
from checkpoint2svc.wire.limits import Limits

QUICK_SECONDS = 0.0005
log = logging.getLogger("checkpoint2svc.instance")


class SelfTestError(Checkpoint2SvcError):
    """The served cell does not reproduce the outputs recorded at pin time."""


class CellService:
    """Loads a checkpoint once and answers ``execute`` calls given as JSON data."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        mode: ExecutionMode | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.checkpoint = checkpoint
        self.manifest = checkpoint.manifest
        self.limits = limits or Limits()
        self.metrics = NodeMetrics(os.environ.get("CHECKPOINT2SVC_NODE_ID", self.manifest.name))
        self.executor: CellExecutor = checkpoint.executor(mode)
        self.input_names = {v.name for v in self.manifest.inputs}
        self.ready = False
        self.not_ready_reason = "the self-test has not run yet"
        self._typical_seconds = 0.0
        # One cell runs at a time in a process: an isolated call puts process-wide state
        # (module and class attributes, the random generators) back after it, and shared calls
        # share one state. More at once is more instances.
        self._slots = threading.Lock()
        self._ids = itertools.count(1)
        self._instance = os.environ.get("CHECKPOINT2SVC_INSTANCE_ID", f"pid{os.getpid()}")

    def next_request_id(self) -> str:
        return f"{self._instance}-{next(self._ids)}"

    def is_quick(self) -> bool:
        """True while the cell typically runs in under ``QUICK_SECONDS``: cheap enough to run
        on the event loop without holding other requests up noticeably."""
        return self._typical_seconds < QUICK_SECONDS

    def decode_input(self, data: Any) -> dict[str, Any]:
        """Python values for a JSON ``input`` object; errors name the field."""
        if not isinstance(data, dict):
            raise ValueConversionError("input", "expected an object of input variables")
        unknown = sorted(set(data) - self.input_names)
        if unknown:
            raise ValueConversionError(
                f"input.{unknown[0]}",
                f"not an input of this service (inputs: {', '.join(sorted(self.input_names))})",
            )
        values = {}
        for variable in self.manifest.inputs:
            if variable.name not in data:
                raise ValueConversionError(f"input.{variable.name}", "field required")
            values[variable.name] = decode_json(
                data[variable.name], variable.type, f"input.{variable.name}"
            )
        return values

    def encode_output(
        self, values: dict[str, Any], tensors: TensorFormat = "list"
    ) -> dict[str, Any]:
        return {
            v.name: encode_json(values[v.name], v.type, f"output.{v.name}", tensors)
            for v in self.manifest.outputs
        }

    def run(
        self, inputs: dict[str, Any], rid: str, executor: CellExecutor | None = None
    ) -> dict[str, Any]:
        """Run the cell with its prints routed to the log under ``rid``."""
        with self._slots:
            return self._run_in_slot(inputs, rid, executor or self.executor)

    def run_if_free(self, inputs: dict[str, Any], rid: str) -> dict[str, Any] | None:
        """``run`` if a slot is free right now, else None: for the event loop, never waits."""
        if not self._slots.acquire(blocking=False):
            return None
        try:
            return self._run_in_slot(inputs, rid, self.executor)
        finally:
            self._slots.release()

    def _run_in_slot(
        self, inputs: dict[str, Any], rid: str, executor: CellExecutor
    ) -> dict[str, Any]:
        token = cell_output.request_id.set(rid)
        started = time.perf_counter()
        try:
            return executor.run(inputs)
        finally:
            # A moving average of how long the cell takes (races only blur it a little).
            self._typical_seconds += (time.perf_counter() - started - self._typical_seconds) / 8
            cell_output.request_id.reset(token)
            cell_output.finish(rid)

    def execute_json(self, data: Any, rid: str, tensors: TensorFormat = "list") -> dict[str, Any]:
        return self.encode_output(self.run(self.decode_input(data), rid), tensors)

    def self_test(self) -> None:
        """Replay the pinned examples; the instance is ready only if they match."""
        examples = {v.name: v.example for v in self.manifest.inputs}
        # Isolated even for a shared-mode service: the self-test must not change the state.
        isolated = self.checkpoint.executor("isolated")
        try:
            outputs = self.run(self.decode_input(examples), "self-test", isolated)
            got = self.encode_output(outputs, tensors="b64")
        except (ExecutionError, ValueConversionError) as exc:
            raise SelfTestError(f"the pinned example failed when replayed: {exc}") from exc
        finally:
            self.executor.pin_generators()  # a shared service starts where the notebook was
        expected = {v.name: v.example for v in self.manifest.outputs}
        types = {v.name: v.type for v in self.manifest.outputs}
        # As on the wire (NaN never equals itself); a cell pinned as non-deterministic is judged
        # by the form of its outputs only.
        differences = output_differences(
            expected, got, types, form_only=not self.manifest.deterministic
        )
        if differences:
            raise SelfTestError(
                "replaying the pinned example gave different outputs: " + "; ".join(differences)
            )
        self.ready = True
        self.not_ready_reason = ""
        log.info("self-test passed; ready")
