"""Real notebooks pin with the defaults, and their services answer what the notebook computed.

Each test writes a notebook shaped like the ones data scientists write (no `parameters` cell,
seeds at the top, results objects next to numbers), pins it with the real CLI in a real kernel
and checks what a user sees: pin's messages, `run`'s output, and a served instance over HTTP and
gRPC. The reference values are computed by running the same cells in a plain kernel.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
from nbclient import NotebookClient

from checkpoint2svc.image.self_test import whole_numbers
from tests.e2e.cli import Cells, assert_clean_failure, cli, write_notebook
from tests.e2e.instance import Instance, free_port
from tests.e2e.test_serve_grpc import NODE_EXECUTE, ReflectedClient

pytestmark = pytest.mark.slow


def pin(notebook: Path, cell: str, *flags: object) -> tuple[Path, str]:
    out = notebook.parent / f"{notebook.stem}-{cell.strip('#')}.ckpt"
    done = cli("pin", notebook, "--cell", cell, "-o", out, "--force", *flags)
    assert done.returncode == 0, done.stderr
    return out, done.stderr


def run(checkpoint: Path, *inputs: str) -> dict[str, Any]:
    done = cli("run", checkpoint, *inputs)
    assert done.returncode == 0, done.stderr
    output: dict[str, Any] = json.loads(done.stdout)["output"]
    return output


def manifest(checkpoint: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((checkpoint / "manifest.json").read_text())
    return data


def kernel_values(notebook: Path, upto: int, expression: str) -> Any:
    """What a plain kernel computes: the notebook's cells up to ``upto`` (code cell index,
    inclusive), then ``print(json.dumps(expression))``."""
    nb = nbformat.read(str(notebook), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"][: upto + 1]
    code.append(nbformat.v4.new_code_cell(f"import json as _j\nprint(_j.dumps({expression}))"))
    nb.cells = code
    NotebookClient(
        nb, timeout=120, resources={"metadata": {"path": str(notebook.parent)}}
    ).execute()
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    return json.loads(text)


@pytest.fixture
def serve() -> Iterator[Any]:
    started: list[Instance] = []

    def start(checkpoint: Path, *flags: str) -> Instance:
        instance = Instance(checkpoint, *flags)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()


def grpc_execute(instance: Instance, inputs: dict[str, Any]) -> Any:
    """DataSphere's generic NodeService/Execute (a Struct in, a Struct out), by reflection."""
    reply = ReflectedClient(instance.grpc_target).call(NODE_EXECUTE, "Execute", {"input": inputs})
    return whole_numbers(reply["output"])


SEEDED: Cells = [
    ([], "import numpy as np\nimport random\nnp.random.seed(12345)\nrandom.seed(7)"),
    ([], "scale = 3.0\nwarmup = np.random.normal(size=2)"),
    ([], "noise = (np.random.normal(size=3) * scale).tolist()\npick = random.random()"),
]


def test_a_notebook_without_parameters_cell_pins_with_no_inputs(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "nb.ipynb", SEEDED)
    checkpoint, stderr = pin(notebook, "#2")
    assert "note: no cell is tagged `parameters`, so the service takes no inputs" in stderr
    assert "--inputs scale" in stderr  # the simple-valued variable it reads, as a hint
    assert manifest(checkpoint)["inputs"] == []
    assert set(run(checkpoint)) == {"noise", "pick"}


def test_a_seeded_notebook_is_served_with_the_notebooks_values(tmp_path: Path, serve: Any) -> None:
    notebook = write_notebook(tmp_path / "nb.ipynb", SEEDED)
    expected = kernel_values(notebook, 2, "{'noise': noise, 'pick': pick}")
    checkpoint, _ = pin(notebook, "#2")
    assert manifest(checkpoint)["random_state"] == ["random", "numpy.random"]
    assert run(checkpoint) == expected
    instance = serve(checkpoint)  # ready: the self-test reproduced the pinned values
    for _ in range(3):  # every isolated call starts from the pinned generators
        assert instance.execute({}).json()["output"] == expected
    assert grpc_execute(instance, {}) == expected


def test_a_shared_service_goes_on_from_the_pinned_random_state(tmp_path: Path, serve: Any) -> None:
    cells = [*SEEDED[:2], ([], "draws = [np.random.random(), random.random()]")]
    notebook = write_notebook(tmp_path / "nb.ipynb", cells)
    checkpoint, _ = pin(notebook, "#2", "--mode", "shared")
    instance = serve(checkpoint)
    # The first call draws what the notebook drew (the self-test ran isolated and put the
    # generators back); the second what running the cell again in the notebook would draw.
    expected = kernel_values(notebook, 2, "[draws, [np.random.random(), random.random()]]")
    calls = [instance.execute({}).json()["output"]["draws"] for _ in range(2)]
    assert calls == expected


RESULTS: Cells = [
    ([], "import numpy as np\nimport pandas as pd\nimport statsmodels.formula.api as smf\n"
         "np.random.seed(0)"),
    ([], "x = np.linspace(0, 1, 40)\n"
         "df = pd.DataFrame({'x': x, 'y': 2 * x + np.random.normal(size=40) * 0.1})"),
    ([], "res = smf.ols('y ~ x', data=df).fit()\nr2 = res.rsquared\n"
         "slope = float(res.params['x'])"),
]  # fmt: skip


def test_outputs_with_no_wire_type_are_left_out_with_a_warning(tmp_path: Path, serve: Any) -> None:
    notebook = write_notebook(tmp_path / "nb.ipynb", RESULTS)
    checkpoint, stderr = pin(notebook, "#2")
    warning = next(line for line in stderr.splitlines() if "outputs left out" in line)
    assert "res (statsmodels.regression.linear_model.RegressionResultsWrapper)" in warning
    assert "serves r2, slope" in warning
    expected = kernel_values(notebook, 2, "{'r2': r2, 'slope': slope}")
    assert run(checkpoint) == expected
    assert serve(checkpoint).execute({}).json()["output"] == expected


def test_an_output_named_with_no_wire_type_says_which_could_be_served(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "nb.ipynb", RESULTS)
    done = cli("pin", notebook, "--cell", "#2", "-o", tmp_path / "x.ckpt", "--outputs", "res,r2")
    stderr = assert_clean_failure(done)
    assert "--outputs names res (statsmodels" in stderr and "could be served: r2" in stderr
    assert "TypeError" not in stderr


def test_a_cell_whose_only_outputs_have_no_wire_type_is_refused_clearly(tmp_path: Path) -> None:
    cells = [*RESULTS[:2], ([], "res = smf.ols('y ~ x', data=df).fit()")]
    done = cli("pin", write_notebook(tmp_path / "nb.ipynb", cells), "--cell", "#2",
               "-o", tmp_path / "x.ckpt")  # fmt: skip
    stderr = assert_clean_failure(done)
    assert "none of the target cell's outputs has a wire type: res (statsmodels" in stderr
    assert "r2 = results.rsquared" in stderr


def test_an_input_with_no_wire_type_is_named_with_a_fix(tmp_path: Path) -> None:
    cells: Cells = [(["parameters"], "import threading\nguard = threading.Event()"),
                    ([], "y = guard.is_set()")]  # fmt: skip
    done = cli("pin", write_notebook(tmp_path / "nb.ipynb", cells), "--cell", "#1",
               "-o", tmp_path / "x.ckpt")  # fmt: skip
    stderr = assert_clean_failure(done)
    assert "input 'guard' (threading.Event) has no wire type" in stderr
    assert "leave it out of --inputs" in stderr


NON_DETERMINISTIC: Cells = [
    ([], "import numpy as np"),
    ([], "draw = float(np.random.default_rng().normal())\nsize = 3"),
]


def test_a_non_deterministic_cell_is_detected_and_its_service_gets_ready(
    tmp_path: Path, serve: Any
) -> None:
    checkpoint, stderr = pin(write_notebook(tmp_path / "nb.ipynb", NON_DETERMINISTIC), "#1")
    warning = next(line for line in stderr.splitlines() if "not deterministic" in line)
    assert "draw: expected" in warning and "size" not in warning.split("(", 1)[1].split(")")[0]
    assert manifest(checkpoint)["deterministic"] is False
    assert "not deterministic" in cli("inspect", checkpoint).stdout
    output = serve(checkpoint).execute({}).json()["output"]  # ready: checked by form only
    assert isinstance(output["draw"], float) and output["size"] == 3


def test_a_readiness_failure_says_what_differs_in_numbers(tmp_path: Path) -> None:
    cells: Cells = [([], "import numpy as np\nimport time"),
                    ([], "stamp = np.array([time.time_ns() % 1000003, 1.0, 2.0])")]  # fmt: skip
    checkpoint, _ = pin(write_notebook(tmp_path / "nb.ipynb", cells), "#1")
    data = manifest(checkpoint)
    data["deterministic"] = True  # as a checkpoint pinned by a version without the check
    (checkpoint / "manifest.json").write_text(json.dumps(data))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "checkpoint2svc", "serve", str(checkpoint),
         "--http-port", str(port), "--grpc-port", str(free_port())],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        reason = ""
        deadline = time.monotonic() + 60
        while "replaying" not in reason and time.monotonic() < deadline:
            try:
                reason = httpx.get(f"http://127.0.0.1:{port}/readyz").json().get("reason", "")
            except httpx.TransportError:
                time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(15)
    assert "stamp: 1 of 3 values differ (largest absolute difference" in reason, reason
    assert "[0]: expected" in reason and "b64" not in reason


def test_an_example_over_the_message_limit_is_warned_about(tmp_path: Path) -> None:
    cells: Cells = [(["parameters"], "blob = 'x' * (17 * 2**20)"), ([], "n = len(blob)")]
    notebook = write_notebook(tmp_path / "nb.ipynb", cells)
    _, stderr = pin(notebook, "#1")
    assert "the example input is 17.0 MiB as JSON, over the 16 MiB message limit" in stderr
    done = cli("pin", notebook, "--cell", "#1", "-o", tmp_path / "s.ckpt", "--strict")
    assert "over the 16 MiB message limit" in assert_clean_failure(done)
    assert not (tmp_path / "s.ckpt").exists()


LEAKY: Cells = [
    (["parameters"], "mode = 'read'\nn = 0"),
    ([], "import string\nseen = []\nregistry = {'all': []}\n"
         "class Tracker:\n    count = 0\n    def track(self, x):\n        Tracker.count += 1\n"
         "        registry['all'].append(x)\n"
         "def remember(x):\n    seen.append(x)\n    string.last_seen = x\ntracker = Tracker()"),
    ([], "if mode == 'leak':\n    remember(n)\n    tracker.track(n)\n"
         "size = len(seen) + len(registry['all']) + Tracker.count + "
         "int(hasattr(string, 'last_seen'))"),
]  # fmt: skip


def test_isolated_calls_never_see_an_earlier_calls_changes(tmp_path: Path, serve: Any) -> None:
    """The pin-time example takes the `read` branch; calls take the `leak` branch, which
    mutates through a notebook function, a method, a class attribute, nested containers and a
    module attribute."""
    checkpoint, _ = pin(write_notebook(tmp_path / "nb.ipynb", LEAKY), "#2")
    instance = serve(checkpoint)
    sizes = [instance.execute({"mode": "leak", "n": i}).json()["output"]["size"] for i in range(3)]
    assert sizes == [4, 4, 4]
    assert grpc_execute(instance, {"mode": "leak", "n": 9}) == {"size": 4}
    assert instance.execute({"mode": "read", "n": 0}).json()["output"] == {"size": 0}
    shared = serve(pin(write_notebook(tmp_path / "s.ipynb", LEAKY), "#2", "--mode", "shared")[0])
    sizes = [shared.execute({"mode": "leak", "n": i}).json()["output"]["size"] for i in range(3)]
    assert sizes == [4, 7, 10]  # shared mode keeps what calls change, as DataSphere does
