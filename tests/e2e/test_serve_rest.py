"""`checkpoint2svc serve` as a real process, called over a real socket with a real HTTP client."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nbformat
import pytest

from checkpoint2svc.checkpoint import Checkpoint, pin_notebook
from checkpoint2svc.runtime.service import CellService
from tests.e2e.instance import Instance

pytestmark = pytest.mark.slow


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
