"""`checkpoint2svc serve` as a real process, called over a real socket with a real HTTP client."""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

from checkpoint2svc.checkpoint import Checkpoint, pin_notebook
from checkpoint2svc.runtime.rest import DRAIN_FACTOR, DRAIN_SECONDS
from checkpoint2svc.runtime.service import CellService
from tests.e2e.instance import Instance

pytestmark = pytest.mark.slow

SIXTEEN_MIB = 16 * 1024 * 1024


@pytest.fixture
def instance(pinned: dict[str, Checkpoint], request: pytest.FixtureRequest) -> Iterator[Instance]:
    key, *extra = request.param
    started = Instance(pinned[key].path, *extra)
    try:
        yield started
    finally:
        started.stop()


@pytest.mark.parametrize("instance", [("classifier",)], indirect=True)
def test_rest_execute_health_metrics_and_errors(instance: Instance) -> None:
    ok = instance.execute({"features": [6.7, 3.0, 5.2, 2.3]})
    assert ok.status_code == 200
    assert ok.json()["output"]["label"] == "virginica"

    bad = instance.execute({"features": [6.7, "x", 5.2, 2.3]})
    assert bad.status_code == 422
    assert bad.json()["field"] == "input.features[1]"

    missing = instance.execute({})
    assert missing.status_code == 422 and missing.json()["field"] == "input.features"

    raised = instance.execute({"features": [1.0]})
    assert raised.status_code == 500
    body = raised.json()
    assert body["error_name"] == "ValueError"
    assert any("model.predict_proba" in line for line in body["traceback"])
    assert instance.execute({"features": [5.1, 3.5, 1.4, 0.2]}).status_code == 200  # still serving

    document = httpx.get(f"{instance.url}/openapi.json").json()
    assert document["paths"]["/execute"]["post"]["requestBody"]
    assert "PredictInput" in document["components"]["schemas"]
    docs = httpx.get(f"{instance.url}/docs").text
    assert "/openapi.json" in docs and "/docs/static/swagger-ui-bundle.js" in docs
    bundle = httpx.get(f"{instance.url}/docs/static/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and "SwaggerUIBundle" in bundle.text  # no CDN needed
    assert httpx.get(f"{instance.url}/healthz").status_code == 200
    assert httpx.get(f"{instance.url}/nowhere").status_code == 404
    metrics = httpx.get(f"{instance.url}/metrics").text
    assert 'node_http_codes_total{node_id="predict",code="200"} 2' in metrics
    assert 'node_http_codes_total{node_id="predict",code="500"} 1' in metrics
    assert "node_request_durations_bucket" in metrics


@pytest.mark.parametrize("instance", [("classifier", "--max-message-mb", "0.001")], indirect=True)
def test_oversized_request_is_refused_naming_the_limit(instance: Instance) -> None:
    response = instance.execute({"features": [1.0] * 1000})
    assert response.status_code == 413
    assert "limit of 1048 bytes" in response.json()["error_message"]


def write_whole_body_then_read(
    client: http.client.HTTPConnection, path: str, body: bytes | Iterable[bytes], **headers: str
) -> tuple[int, dict[str, Any]]:
    """A POST as http.client, urllib and httpx make it: the whole body is written before the
    answer is read (an iterable body goes chunked). When the server answers early and closes
    with the body unread, the kernel resets the connection and this raises
    ConnectionResetError or BrokenPipeError instead of returning the answer."""
    client.request(
        "POST", path, body=body, headers={"content-type": "application/json", **headers},
        encode_chunked=not isinstance(body, bytes),
    )  # fmt: skip
    response = client.getresponse()
    return response.status, json.loads(response.read())


def in_chunks(size: int) -> Iterator[bytes]:
    for start in range(0, size, 1 << 20):
        yield b"x" * min(1 << 20, size - start)


@pytest.mark.parametrize("instance", [("greeter",)], indirect=True)
def test_a_client_that_writes_its_whole_body_first_gets_the_413(instance: Instance) -> None:
    """urllib asks for ``Connection: close``, after which uvicorn closed right after the 413:
    with the body unread, the client got a connection reset instead of the answer."""
    for body in (b"x" * (SIXTEEN_MIB + (1 << 20)), in_chunks(40 << 20)):
        client = http.client.HTTPConnection("127.0.0.1", instance.port, timeout=60)
        try:
            status, error = write_whole_body_then_read(client, "/execute", body, connection="close")
        finally:
            client.close()
        assert status == 413
        assert error["error_name"] == "PayloadTooLarge"
        assert "the request body exceeds the limit of 16 MiB" in error["error_message"]
    assert instance.execute({"name": "Ada", "values": [1]}).status_code == 200  # still serving


@dataclass
class EndlessUpload:
    """What a client saw that POSTed a chunked body that never ends, reading meanwhile."""

    answer: bytes
    sent: int  # body bytes written before the server cut the connection (or the test gave up)
    cut: bool  # the server closed the connection
    seconds_past_limit: float  # from passing the 16 MiB limit to the cut


def upload_without_end(port: int, pause: float, give_up: float = 30) -> EndlessUpload:
    """Past the limit, 4 KiB every ``pause`` seconds (0: 64 KiB chunks as fast as they go)."""
    answer = bytearray()
    head = b"POST /execute HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=give_up) as connection:

        def read() -> None:
            with contextlib.suppress(OSError):
                while data := connection.recv(65536):
                    answer.extend(data)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        connection.sendall(head)
        sent, past_limit, started = 0, 0.0, time.monotonic()
        cut = False
        try:
            while sent < 512 << 20 and time.monotonic() - started < give_up:
                if not reader.is_alive():  # the server closed its end
                    cut = True
                    break
                size = 4096 if pause and past_limit else 65536
                connection.sendall(b"%x\r\n%s\r\n" % (size, b"x" * size))
                sent += size
                if sent > SIXTEEN_MIB:
                    past_limit = past_limit or time.monotonic()
                    time.sleep(pause)
        except OSError:  # reset or broken pipe: the server closed with the rest unread
            cut = True
        ended = time.monotonic()
        reader.join(5)  # what arrived before a reset can still be read: not closed under it
    return EndlessUpload(bytes(answer), sent, cut, ended - (past_limit or ended))


@pytest.mark.parametrize("instance", [("greeter",)], indirect=True)
@pytest.mark.parametrize("pause", [0.0, 0.1], ids=["fast", "slow"])
def test_a_refused_body_that_never_ends_is_cut_off(instance: Instance, pause: float) -> None:
    """The rest of a refused body is read within bounds (DRAIN_FACTOR times the limit, at most
    DRAIN_SECONDS); uvicorn alone read and dropped it for as long as the client sent."""
    upload = upload_without_end(instance.port, pause)
    assert upload.cut, (
        f"still reading after {upload.sent >> 20} MiB, {upload.seconds_past_limit:.0f} s"
    )
    assert upload.answer.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in upload.answer.lower()
    assert b"exceeds the limit of 16 MiB" in upload.answer
    # the limit, DRAIN_FACTOR times it more, and what the socket buffers took meanwhile
    assert upload.sent < SIXTEEN_MIB * (1 + DRAIN_FACTOR + 1)
    assert upload.seconds_past_limit < DRAIN_SECONDS + 5
    assert instance.execute({"name": "Ada", "values": [1]}).status_code == 200  # still serving


@pytest.mark.parametrize("instance", [("counter-shared",)], indirect=True)
def test_shared_mode_counts_across_requests(instance: Instance) -> None:
    totals = [instance.execute({"step": 1}).json()["output"]["total"] for _ in range(3)]
    assert totals == [1, 2, 3]  # the self-test did not count


@pytest.mark.parametrize("instance", [("counter",)], indirect=True)
def test_isolated_mode_answers_the_same(instance: Instance) -> None:
    totals = [instance.execute({"step": 1}).json()["output"]["total"] for _ in range(3)]
    assert totals == [1, 1, 1]


@pytest.mark.parametrize("instance", [("classifier",)], indirect=True)
def test_cell_prints_go_to_the_log_with_the_request_id(instance: Instance) -> None:
    response = instance.execute({"features": [6.7, 3.0, 5.2, 2.3]})
    assert "virginica" not in response.text.replace('"label":"virginica"', "")
    rid = response.headers["x-request-id"]
    instance.stop()
    assert f"[{rid}] virginica" in instance.log


@pytest.mark.parametrize("instance", [("image",)], indirect=True)
def test_tensors_travel_as_lists_or_base64_both_ways(
    instance: Instance, pinned: dict[str, Checkpoint]
) -> None:
    [image] = pinned["image"].manifest.inputs
    as_b64 = image.example  # the manifest keeps tensors in the {"dtype", "shape", "b64"} form
    as_lists = instance.execute({"image": as_b64}).json()["output"]["normalized"]
    assert isinstance(as_lists, list) and len(as_lists) == 8 and len(as_lists[0]) == 8
    response = httpx.post(
        f"{instance.url}/execute", json={"input": {"image": as_b64}},
        headers={"x-tensor-format": "b64"},
    )  # fmt: skip
    normalized = response.json()["output"]["normalized"]
    assert normalized == pinned["image"].manifest.outputs[0].example
    wrong = instance.execute({"image": [[1.0, 2.0]]})
    assert wrong.status_code == 422
    assert wrong.json()["field"] == "input.image"
    assert "expected shape (*, 8), got (1, 2)" in wrong.json()["error_message"]


@pytest.mark.parametrize("instance", [("greeter",)], indirect=True)
def test_sigterm_stops_gracefully(instance: Instance) -> None:
    assert instance.execute({"name": "Ada", "values": [1]}).status_code == 200
    instance.stop()  # SIGTERM
    assert instance.process.returncode == 0
    assert "stopped" in instance.log  # drained gRPC and removed its temporary files


def test_a_slow_cell_does_not_hold_up_health_checks(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("import time"),
        nbformat.v4.new_code_cell("seconds = 0.01", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "time.sleep(seconds)\nslept = seconds", metadata={"tags": ["nap"]}
        ),
    ]
    nbformat.write(notebook, tmp_path / "nap.ipynb")
    checkpoint = pin_notebook(
        tmp_path / "nap.ipynb", "nap", tmp_path / "nap.ckpt", progress=lambda _: None
    )
    started = Instance(checkpoint.path)
    try:
        with (
            concurrent.futures.ThreadPoolExecutor(1) as pool,
            httpx.Client(base_url=started.url, timeout=30) as client,
        ):
            assert client.get("/healthz").status_code == 200  # connected before the clock runs
            slow = pool.submit(started.execute, {"seconds": 6.0})
            time.sleep(1)  # the slow call is running now
            before = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            # held up by the cell, the answer would come when the cell ends, ~5 s later
            assert time.perf_counter() - before < 2.5 and not slow.done()
            assert slow.result().json()["output"]["slept"] == 6.0
    finally:
        started.stop()


def test_the_event_loop_never_waits_for_a_busy_slot(pinned: dict[str, Checkpoint]) -> None:
    """A quick cell runs on the event loop only if a slot is free right now; when another call
    (e.g. over gRPC) holds it, the REST call goes to a thread instead of stalling the loop."""
    service = CellService(pinned["greeter"])
    inputs = {"name": "Ada", "values": [1]}
    assert service.run_if_free(inputs, "r1") == {"message": "Hello, Ada!", "scaled": [3]}
    with service._slots:  # another call is running
        assert service.run_if_free(inputs, "r2") is None


def test_table_date_times_travel_as_rfc3339_in_utc(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("import pandas as pd"),
        nbformat.v4.new_code_cell(
            'events = pd.DataFrame({"name": ["a"], "when": pd.to_datetime(["2024-01-01 10:00"])})',
            metadata={"tags": ["parameters"]},
        ),
        nbformat.v4.new_code_cell(
            'later = events.assign(when=events["when"] + pd.Timedelta(hours=1))',
            metadata={"tags": ["shift"]},
        ),
    ]
    nbformat.write(notebook, tmp_path / "events.ipynb")
    checkpoint = pin_notebook(
        tmp_path / "events.ipynb", "shift", tmp_path / "events.ckpt", progress=lambda _: None
    )
    assert checkpoint.manifest.inputs[0].example == [{"name": "a", "when": "2024-01-01T10:00:00Z"}]
    started = Instance(checkpoint.path)
    try:
        sent = [
            {"name": "offset", "when": "2024-01-01T12:00:00+02:00"},
            {"name": "utc", "when": "2024-06-30T23:30:00.5Z"},
            {"name": "unknown", "when": None},
        ]
        answer = started.execute({"events": sent})
        assert answer.status_code == 200, answer.text
        assert answer.json()["output"]["later"] == [
            {"name": "offset", "when": "2024-01-01T11:00:00.000Z"},
            {"name": "utc", "when": "2024-07-01T00:30:00.500Z"},
            {"name": "unknown", "when": None},
        ]
        wrong = started.execute({"events": [{"name": "x", "when": 1704103200}]})
        assert wrong.status_code == 422 and "RFC 3339" in wrong.json()["error_message"]
        schema = httpx.get(f"{started.url}/openapi.json").json()["components"]["schemas"]
        assert any('"format": "date-time"' in str(s).replace("'", '"') for s in schema.values())
    finally:
        started.stop()
