"""Pin every example notebook in a real kernel; reload each in a fresh process and re-run it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from checkpoint2svc.checkpoint import Checkpoint

pytestmark = pytest.mark.slow

EXPECTED_SIGNATURES = {
    "classifier": (
        {"features": "list[float]"},
        {"label": "str", "confidence": "float"},
    ),
    "image": (
        {"image": "tensor[float32, (-1, 8)]"},
        {"normalized": "tensor[float32, (-1, 8)]", "brightness": "float"},
    ),
    "table": (
        {"readings": "table{city: string, celsius: float64}"},
        {"converted": "table{city: string, celsius: float64, fahrenheit: float64}"},
    ),
    "greeter": (
        {"name": "str", "values": "list[int]"},
        {"message": "str", "scaled": "list[int]"},
    ),
    "counter": ({"step": "int"}, {"count": "int", "total": "int"}),
    "text": (
        {"text": "str"},
        {"words": "int", "keywords": "list[str]", "summary": "str"},
    ),
}

# Loads the checkpoint in a new interpreter, runs the cell `calls` times on the pinned example
# inputs (or on the inputs given as JSON) and prints the outputs in their manifest JSON form.
FRESH_PROCESS_RUN = textwrap.dedent(
    """
    import json, sys
    from checkpoint2svc.checkpoint import Checkpoint
    from checkpoint2svc.wire.json_values import decode_json, encode_json
    checkpoint = Checkpoint.open(sys.argv[1])
    m = checkpoint.manifest
    given = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {v.name: v.example for v in m.inputs}
    inputs = {v.name: decode_json(given[v.name], v.type, v.name) for v in m.inputs}
    executor = checkpoint.executor()
    for _ in range(int(sys.argv[2])):
        out = executor.run(inputs)
        print(json.dumps({v.name: encode_json(out[v.name], v.type, v.name, tensors="b64")
                          for v in m.outputs}))
    """
)


def run_fresh(
    checkpoint: Checkpoint, calls: int = 1, inputs: dict[str, Any] | None = None
) -> list[Any]:
    argv = [sys.executable, "-c", FRESH_PROCESS_RUN, str(checkpoint.path), str(calls)]
    if inputs is not None:
        argv.append(json.dumps(inputs))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("key", sorted(EXPECTED_SIGNATURES))
def test_signature_is_the_expected_one(pinned: dict[str, Checkpoint], key: str) -> None:
    manifest = pinned[key].manifest
    inputs, outputs = EXPECTED_SIGNATURES[key]
    assert {v.name: v.type.render() for v in manifest.inputs} == inputs
    assert {v.name: v.type.render() for v in manifest.outputs} == outputs


@pytest.mark.parametrize("key", sorted(EXPECTED_SIGNATURES))
def test_fresh_process_gives_the_kernels_outputs(pinned: dict[str, Checkpoint], key: str) -> None:
    checkpoint = pinned[key]
    [outputs] = run_fresh(checkpoint)
    assert outputs == {v.name: v.example for v in checkpoint.manifest.outputs}


def test_classifier_answers_new_inputs(pinned: dict[str, Checkpoint]) -> None:
    [virginica] = run_fresh(pinned["classifier"], inputs={"features": [6.7, 3.0, 5.2, 2.3]})
    assert virginica["label"] == "virginica"
    assert 0.5 < virginica["confidence"] <= 1.0


def test_text_answers_new_inputs(pinned: dict[str, Checkpoint]) -> None:
    text = "Notebooks are easy to write; notebooks are hard to serve. A service is easy to call!"
    [out] = run_fresh(pinned["text"], inputs={"text": text})
    assert out == {
        "words": 16,
        "keywords": ["easy", "notebooks", "call"],  # stopwords left out, ties alphabetical
        "summary": "Notebooks are easy to write; notebooks are hard to serve.",
    }


def test_greeter_function_sees_its_global_and_the_request(pinned: dict[str, Checkpoint]) -> None:
    [out] = run_fresh(pinned["greeter"], inputs={"name": "Grace", "values": [10, 20]})
    assert out == {"message": "Hello, Grace!", "scaled": [30, 60]}


def test_shared_mode_keeps_state_between_calls(pinned: dict[str, Checkpoint]) -> None:
    results = run_fresh(pinned["counter-shared"], calls=3)
    assert [r["total"] for r in results] == [1, 2, 3]


def test_isolated_mode_starts_every_call_from_the_pin(pinned: dict[str, Checkpoint]) -> None:
    results = run_fresh(pinned["counter"], calls=3)
    assert [r["total"] for r in results] == [1, 1, 1]


def test_manifest_records_what_design_asks(pinned: dict[str, Checkpoint]) -> None:
    checkpoint = pinned["classifier"]
    data = json.loads((checkpoint.path / "manifest.json").read_text())
    assert data["notebook"]["name"] == "classifier.ipynb"
    assert len(data["notebook"]["sha256"]) == 64
    assert data["cell"]["index"] == 3 and data["cell"]["id"] == "cell-3"
    assert data["cell"]["source"].startswith("_proba = model.predict_proba")
    assert data["mode"] == "isolated"
    assert data["python_version"].startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")
    assert set(data["files"]) == {"state.dill", "random_state.json"}
    assert data["random_state"] == ["random", "numpy.random"] and data["deterministic"] is True
    assert data["created"].endswith("+00:00")
    # Captured state: the notebook's own variables, no IPython internals.
    names = {s["name"] for s in data["state"]}
    assert {"model", "species", "features"} <= names
    assert not names & {"In", "Out", "get_ipython", "exit", "quit", "_ih", "_oh", "_dh"}


def test_requirements_are_what_the_state_uses_not_a_freeze(pinned: dict[str, Checkpoint]) -> None:
    requirements = {r["name"].lower(): r for r in pinned["classifier"].manifest.requirements}
    assert requirements["scikit-learn"]["direct"] is True
    assert requirements["numpy"]["version"] == __import__("numpy").__version__
    assert requirements["scipy"]["direct"] is False  # needed by scikit-learn, not used directly
    # Installed in this environment but never touched by the classifier notebook:
    assert "pandas" not in requirements and "pytest" not in requirements
    table = {r["name"].lower() for r in pinned["table"].manifest.requirements if r["direct"]}
    assert "pandas" in table and "scikit-learn" not in table


def test_inspect_shows_signature_state_and_requirements(pinned: dict[str, Checkpoint]) -> None:
    path = str(pinned["classifier"].path)
    text = subprocess.run(
        [sys.executable, "-m", "checkpoint2svc", "inspect", path],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "verified" in text
    assert "features: list[float]" in text and "label: str" in text
    assert "model: sklearn.linear_model._logistic.LogisticRegression" in text
    assert "scikit-learn==" in text
    as_json = subprocess.run(
        [sys.executable, "-m", "checkpoint2svc", "inspect", path, "--json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert json.loads(as_json)["outputs"][0]["name"] == "label"


def test_cli_pin_then_run(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    out = tmp_path / "svc.ckpt"
    pin = subprocess.run(
        [sys.executable, "-m", "checkpoint2svc", "pin", str(examples / "greeter.ipynb"),
         "--cell", "#3", "--inputs", "name", "--outputs", "message", "-o", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert pin.returncode == 0, pin.stderr
    assert "[1/3] running cell 1" in pin.stderr  # progress, cell by cell
    assert "inputs: name: str" in pin.stdout and "outputs: message: str" in pin.stdout
    run = subprocess.run(
        [sys.executable, "-m", "checkpoint2svc", "run", str(out), '{"name": "Linus"}'],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"output": {"message": "Hello, Linus!"}}
