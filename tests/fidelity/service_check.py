"""Check one result cell through the product with its default flags: ``pin``, then ``run`` on the
pinned example, then ``serve`` and ``POST /execute``; compare each answer with the reference.

Everything runs in subprocesses on 127.0.0.1 in a temp dir (also their TMPDIR) removed afterwards;
a server is stopped by its PID (terminate, then kill), whatever happened.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.fidelity.rules import Captured, excerpt, first_difference, has_wire_value

PIN_TIMEOUT = 900.0
RUN_TIMEOUT = 300.0
READY_TIMEOUT = 90.0
EXECUTE_TIMEOUT = 120.0
STOP_TIMEOUT = 15.0


@dataclass
class CellCheck:
    """What happened to one cell. ``stage`` is the first stage that failed ("" when none did)."""

    stage: str = ""
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    """Later stages' failures and other remarks, for the developer reading the report."""
    served: list[str] = field(default_factory=list)
    compared: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def fail(self, stage: str, reason: str) -> None:
        if not self.stage:
            self.stage, self.reason = stage, reason
        else:
            self.notes.append(f"{stage}: {reason}")

    @property
    def reproduced(self) -> bool:
        return not self.stage and bool(self.compared)


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:400] if lines else "(no output)"


# ---------------------------------------------------------------------------- ports

_port_lock = threading.Lock()
_ports_given: set[int] = set()


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now and not handed to another check of this process."""
    with _port_lock:
        held: list[socket.socket] = []
        ports: list[int] = []
        try:
            while len(ports) < count:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind(("127.0.0.1", 0))
                held.append(sock)
                port = sock.getsockname()[1]
                if port not in _ports_given:
                    ports.append(port)
        finally:
            for sock in held:
                sock.close()
        _ports_given.update(ports)
        return ports


# ---------------------------------------------------------------------------- expectations


def _convert(reference: dict[str, Any], served_type: dict[str, Any], form: str) -> Any:
    """The reference value re-encoded with the type the checkpoint serves it as."""
    import orjson

    from checkpoint2svc.wire.json_values import decode_json, encode_json
    from checkpoint2svc.wire.type_ir import type_from_dict

    value = decode_json(reference["b64"], type_from_dict(reference["type"]))
    encoded = encode_json(value, type_from_dict(served_type), tensors=form)  # type: ignore[arg-type]
    return orjson.loads(orjson.dumps(encoded, option=orjson.OPT_SERIALIZE_NUMPY))


def expectations(
    reference: Captured, outputs: list[dict[str, Any]], check: CellCheck
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Expected outputs in the forms `run` (tensors as lists) and REST with b64 tensors send,
    for the served names that have a reference value."""
    as_list: dict[str, Any] = {}
    as_b64: dict[str, Any] = {}
    served = {o["name"]: o for o in outputs}
    for name, entry in reference.items():
        if has_wire_value(entry) and name not in served:
            check.fail("pin", f"{name} ({entry['type_text']}) is not among the served outputs")
    for name, output in served.items():
        plain = reference.get(name)
        if plain is None or not has_wire_value(plain):
            why = plain.get("error", "") if plain else "the cell does not assign it"
            check.notes.append(f"{name} is served but has no reference value ({why})")
            continue
        if output["type"] == plain["type"]:
            as_list[name], as_b64[name] = plain["list"], plain["b64"]
            continue
        try:
            as_list[name] = _convert(plain, output["type"], "list")
            as_b64[name] = _convert(plain, output["type"], "b64")
        except Exception as exc:
            check.fail(
                "pin",
                f"{name} is served as {output.get('type_text', output['type'])} but the plain "
                f"value ({plain['type_text']}) does not convert to it ({type(exc).__name__}: "
                f"{exc})",
            )
            continue
        check.notes.append(f"{name} served as {output.get('type_text')}, not {plain['type_text']}")
    return as_list, as_b64


def compare(stage: str, expected: dict[str, Any], actual: Any, check: CellCheck) -> None:
    if not isinstance(actual, dict):
        check.fail(stage, f"the answer has no output object: {excerpt(actual, 120)}")
        return
    for name, value in expected.items():
        if name not in actual:
            check.fail(stage, f"output {name} is missing from the answer")
            continue
        found = first_difference(value, actual[name], name)
        if found is not None:
            check.fail(stage, f"output {name} differs ({found})")


# ---------------------------------------------------------------------------- processes


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "checkpoint2svc", *args]


@contextmanager
def served(
    checkpoint: Path, cwd: Path, env: dict[str, str], log: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``checkpoint2svc serve`` on free ports; stopped by PID on exit, whatever happened."""
    http_port, grpc_port = free_ports(2)
    args = ["serve", str(checkpoint), "--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            _command(*args), cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
        try:
            yield process, f"http://127.0.0.1:{http_port}"
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_ready(
    process: subprocess.Popen[bytes], url: str, log: Path, client: httpx.Client
) -> tuple[str | None, bool]:
    """(None, True) once /readyz answers 200; else (why not, whether the server answers at all).

    A reason that says something failed (the self-test) is final: no point waiting it out."""
    deadline = time.monotonic() + READY_TIMEOUT
    reason, answers = "no answer from /readyz", False
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"the server exited with code {process.returncode}: {_log_tail(log)}", False
        try:
            answer = client.get(f"{url}/readyz", timeout=5)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        answers = True
        if answer.status_code == 200:
            return None, True
        try:
            reason = str(answer.json().get("reason") or answer.text)
        except ValueError:
            reason = answer.text
        if "fail" in reason.lower():
            return f"not ready: {reason[:400]}", True
        time.sleep(0.2)
    return f"not ready after {READY_TIMEOUT:.0f} s: {reason[:400]}", answers


def _log_tail(log: Path) -> str:
    try:
        return last_line(log.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return "(no log)"


def check_cell(
    notebook: Path, code_index: int, reference: Captured, pin_args: Sequence[str] = ()
) -> CellCheck:
    check = CellCheck()
    notebook = notebook.resolve()
    cwd = notebook.parent
    with tempfile.TemporaryDirectory(prefix="fidelity-cell-") as scratch_dir:
        scratch = Path(scratch_dir)
        env = dict(os.environ, TMPDIR=str(scratch), PYTHONUNBUFFERED="1")
        checkpoint = scratch / "x.ckpt"

        started = time.perf_counter()
        pin = subprocess.run(
            _command("pin", str(notebook), "--cell", f"#{code_index}", "-o", str(checkpoint),
                     "--force", *pin_args),
            cwd=cwd, env=env, capture_output=True, text=True, timeout=PIN_TIMEOUT, check=False,
        )  # fmt: skip
        check.seconds["pin"] = round(time.perf_counter() - started, 2)
        if pin.returncode != 0:
            check.fail("pin", last_line(pin.stderr))
            return check
        manifest = json.loads((checkpoint / "manifest.json").read_text(encoding="utf-8"))
        outputs = manifest.get("outputs", [])
        check.served = [o["name"] for o in outputs]
        examples = {i["name"]: i.get("example") for i in manifest.get("inputs", [])}
        as_list, as_b64 = expectations(reference, outputs, check)
        check.compared = sorted(as_list)
        if not outputs:
            check.fail("pin", "the checkpoint serves no output")
        elif not as_list:
            check.fail("pin", "no served output has a reference value to compare with")

        # The server starts while `run` works (both only read the checkpoint): with the two in
        # sequence the corpus kept 2 cores 73% busy and took 401 s; overlapped, 92% and 308 s.
        serve_started = time.perf_counter()
        log = scratch / "serve.log"
        with served(checkpoint, cwd, env, log) as (process, url), httpx.Client() as client:
            _run(checkpoint, cwd, env, as_list, check)
            not_ready, answers = wait_ready(process, url, log, client)
            if not_ready is not None:
                check.fail("serve", not_ready)
            if answers:  # even when not ready: what it answers tells the developer more
                _execute(client, url, examples, as_b64, check)
        check.seconds["serve"] = round(time.perf_counter() - serve_started, 2)
    return check


def _run(
    checkpoint: Path, cwd: Path, env: dict[str, str], expected: dict[str, Any], check: CellCheck
) -> None:
    started = time.perf_counter()
    run = subprocess.run(
        _command("run", str(checkpoint)),
        cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip
    check.seconds["run"] = round(time.perf_counter() - started, 2)
    if run.returncode != 0:
        check.fail("run", last_line(run.stderr))
        return
    try:
        answer = json.loads(run.stdout)
    except json.JSONDecodeError as exc:
        check.fail("run", f"stdout is not JSON ({exc}): {run.stdout[:120]!r}")
        return
    compare("run", expected, answer.get("output"), check)


def _execute(
    client: httpx.Client, url: str, examples: dict[str, Any], expected: dict[str, Any],
    check: CellCheck,
) -> None:  # fmt: skip
    try:
        answer = client.post(
            f"{url}/execute",
            json={"input": examples},
            headers={"x-tensor-format": "b64"},
            timeout=EXECUTE_TIMEOUT,
        )
    except httpx.HTTPError as exc:
        check.fail("serve", f"POST /execute failed: {type(exc).__name__}: {exc}")
        return
    if answer.status_code != 200:
        try:
            body = answer.json()
            detail = f"{body.get('error_name')}: {body.get('error_message')}"
        except ValueError:
            detail = answer.text[:200]
        check.fail("serve", f"POST /execute answered {answer.status_code}: {detail}")
        return
    compare("serve", expected, answer.json().get("output"), check)
