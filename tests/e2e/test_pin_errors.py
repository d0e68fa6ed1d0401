"""Bad inputs to the real CLI: each fails cleanly, names its culprit and leaves nothing behind.

Each test writes a small notebook into ``tmp_path``, runs ``python -m checkpoint2svc`` as a
subprocess and checks (a) the exit status, (b) that stderr names the culprit (and the fix where
there is one), and (c) that the output's parent directory holds exactly what it held before: no
checkpoint, no ``.NAME.xxxx.partial`` staging directory, no ``.NAME.old``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.cli import Cells, assert_clean_failure, cli, write_notebook

GOOD: Cells = [
    (["parameters"], "x = 2"),
    ([], "table = {'a': 1}"),
    (["predict"], "y = x + table['a']"),
]


def listing(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def pin_fails(notebook: Path, cell: str, *flags: object) -> str:
    """Pin into ``notebook``'s folder, expect a failure that leaves the folder as it was."""
    before = listing(notebook.parent)
    done = cli("pin", notebook, "--cell", cell, "-o", notebook.parent / "svc.ckpt", *flags)
    stderr = assert_clean_failure(done)
    left = listing(notebook.parent) - before
    assert not left, f"left behind in {notebook.parent}: {sorted(left)}"
    return stderr


def pin_ok(notebook: Path, cell: str, *flags: object) -> tuple[Path, str]:
    out = notebook.parent / "svc.ckpt"
    done = cli("pin", notebook, "--cell", cell, "-o", out, *flags)
    assert done.returncode == 0, done.stderr
    assert not [n for n in listing(notebook.parent) if n.endswith((".partial", ".old"))]
    return out, done.stderr


def manifest_of(checkpoint: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((checkpoint / "manifest.json").read_text())
    return data


def type_text(checkpoint: Path, kind: str, name: str) -> str:
    data = json.loads(cli("inspect", checkpoint, "--json").stdout)
    [variable] = [v for v in data[kind] if v["name"] == name]
    return str(variable["type_text"])


# 1. The notebook file itself ---------------------------------------------------------------------


def test_missing_notebook_is_named(tmp_path: Path) -> None:
    stderr = pin_fails(tmp_path / "nowhere.ipynb", "predict")
    assert "nowhere.ipynb" in stderr and "does not exist" in stderr


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("not json", "not JSON"),
        ('{"a": 1}', "not a Jupyter notebook"),
        ("[1, 2]", "not a Jupyter notebook"),
    ],
    ids=["text", "json-object", "json-array"],
)
def test_file_that_is_not_a_notebook_is_named(tmp_path: Path, content: str, says: str) -> None:
    notebook = tmp_path / "broken.ipynb"
    notebook.write_text(content)
    stderr = pin_fails(notebook, "predict")
    assert "broken.ipynb" in stderr and says in stderr
    assert ".ipynb" in stderr.split(says, 1)[1]  # says what to pass instead


# 2. The cell selector ----------------------------------------------------------------------------


def test_selector_matching_no_cell_lists_the_tags(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "nb.ipynb", GOOD)
    stderr = pin_fails(notebook, "predcit")
    assert "'predcit'" in stderr
    assert "parameters, predict" in stderr  # the tags there are
    assert "#0 to #2" in stderr  # and the positions


def test_tag_on_several_cells_lists_them(tmp_path: Path) -> None:
    cells: Cells = [
        (["parameters"], "x = 2"),
        (["predict"], "y = x + 1"),
        (["predict"], "z = x * 2"),
    ]
    stderr = pin_fails(write_notebook(tmp_path / "nb.ipynb", cells), "predict")
    assert "matches 2 cells" in stderr
    assert "cell 1 (`y = x + 1`)" in stderr and "cell 2 (`z = x * 2`)" in stderr
    assert "#N" in stderr and "distinct tag" in stderr


@pytest.mark.parametrize("selector", ["#3", "#-1"])
def test_position_out_of_range_gives_the_range(tmp_path: Path, selector: str) -> None:
    stderr = pin_fails(write_notebook(tmp_path / "nb.ipynb", GOOD), selector)
    assert f"{selector} is out of range" in stderr
    assert "3 code cells" in stderr and "#0 to #2" in stderr


# 3. An earlier cell raises -----------------------------------------------------------------------


@pytest.mark.slow
def test_earlier_cell_that_raises_is_named_with_its_traceback(tmp_path: Path) -> None:
    cells: Cells = [
        (["parameters"], "x = 2"),
        ([], "import math\nroot = math.sqrt(-x)"),
        (["predict"], "y = x + root"),
    ]
    stderr = pin_fails(write_notebook(tmp_path / "nb.ipynb", cells), "predict")
    assert "cell 1 (`import math`) raised ValueError: math domain error" in stderr
    # The kernel's traceback: the failing line and the exception.
    assert "root = math.sqrt(-x)" in stderr
    assert "ValueError" in stderr.split("raised ValueError", 1)[1]
    assert "\x1b[" not in stderr  # no terminal colour codes


# 4. Variables that cannot be serialized ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("earlier", "target", "name", "type_name", "fix"),
    [
        ("handle = open('data.txt')", "text = handle.read() + suffix", "handle",
         "TextIOWrapper", "open the file inside the cell"),
        ("numbers = (i * i for i in range(5))", "first = str(next(numbers)) + suffix",
         "numbers", "generator", "list(numbers)"),
    ],
    ids=["open-file", "generator"],
)  # fmt: skip
def test_needed_unserializable_variable_is_named_with_type_and_fix(
    tmp_path: Path, earlier: str, target: str, name: str, type_name: str, fix: str
) -> None:
    (tmp_path / "data.txt").write_text("pinned")
    cells: Cells = [(["parameters"], "suffix = '!'"), ([], earlier), (["predict"], target)]
    stderr = pin_fails(write_notebook(tmp_path / "nb.ipynb", cells), "predict")
    assert f"variable {name!r}" in stderr and type_name in stderr
    assert "needed by the target cell" in stderr and "cannot be serialized" in stderr
    assert fix in stderr


@pytest.mark.slow
def test_variable_needed_through_a_function_is_found(tmp_path: Path) -> None:
    cells: Cells = [
        (["parameters"], "n = 1"),
        ([], "stream = (i for i in range(5))\n\ndef take(k):\n    return [next(stream)] * k"),
        (["predict"], "taken = take(n)"),
    ]  # fmt: skip
    stderr = pin_fails(write_notebook(tmp_path / "nb.ipynb", cells), "predict")
    assert "variable 'stream' (generator) is needed by the target cell" in stderr


@pytest.mark.slow
def test_needed_lock_is_recreated_not_refused(tmp_path: Path) -> None:
    """Unlike pickle, dill serializes a lock (a new lock, in the same locked/unlocked state).

    That is faithful, so a lock is not a bad input: the pin succeeds and the service gets a
    fresh lock. (A lock held at pin time would already hang the pin's own run of the cell.)
    """
    cells: Cells = [
        (["parameters"], "x = 2"),
        ([], "import threading\nguard = threading.Lock()"),
        (["predict"], "with guard:\n    y = x + 1"),
    ]
    out, _ = pin_ok(write_notebook(tmp_path / "nb.ipynb", cells), "predict")
    run = cli("run", out, '{"x": 5}')
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"output": {"y": 6}}


@pytest.mark.slow
def test_run_prints_valid_json_for_a_nan_output(tmp_path: Path) -> None:
    cells: Cells = [(["parameters"], "x = 2.0"), (["predict"], "y = x if x else float('nan')")]
    out, _ = pin_ok(write_notebook(tmp_path / "nb.ipynb", cells), "predict")
    run = cli("run", out, '{"x": 0.0}')
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout, parse_constant=lambda c: pytest.fail(f"{c} is not JSON")) == {
        "output": {"y": None}
    }


@pytest.mark.slow
def test_unneeded_unserializable_variables_are_left_out_with_a_warning(tmp_path: Path) -> None:
    cells: Cells = [
        (["parameters"], "x = 2"),
        ([], "log = open('log.txt', 'w')\nlog.write('pinned\\n')\nlog.flush()"),
        ([], "squares = (i * i for i in range(3))"),
        (["predict"], "y = x * 10"),
    ]
    out, stderr = pin_ok(write_notebook(tmp_path / "nb.ipynb", cells), "predict")
    [warning] = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert "left out" in warning and "log (_io.TextIOWrapper)" in warning
    assert "squares (generator)" in warning
    excluded = manifest_of(out)["excluded"]
    assert isinstance(excluded, list) and {e["name"] for e in excluded} == {"log", "squares"}

    inspect = cli("inspect", out)
    assert inspect.returncode == 0, inspect.stderr
    assert "left out (not serializable): log, squares" in inspect.stdout
    # Loading the state (here, where the notebook ran) must not reopen or truncate log.txt.
    run = cli("run", out, '{"x": 5}', cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"output": {"y": 50}}
    assert (tmp_path / "log.txt").read_text() == "pinned\n"


# 5. --inputs and --outputs that do not fit the cell ---------------------------------------------


@pytest.mark.slow
def test_inputs_flag_naming_a_variable_the_cell_never_reads(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "nb.ipynb", GOOD)
    stderr = pin_fails(notebook, "predict", "--inputs", "x,scale")
    assert "--inputs names 'scale'" in stderr and "never reads" in stderr
    assert "it reads: x, table" in stderr and "fix the flag" in stderr


@pytest.mark.slow
def test_outputs_flag_naming_a_variable_the_cell_never_assigns(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "nb.ipynb", GOOD)
    stderr = pin_fails(notebook, "predict", "--outputs", "y,label")
    assert "--outputs names 'label'" in stderr and "never assigns" in stderr
    assert "it assigns: y" in stderr and "fix the flag" in stderr


# 6. Types that cannot be inferred ----------------------------------------------------------------

UNINFERABLE = pytest.mark.parametrize(
    ("value", "expected_type", "says"),
    [
        ("None", "json", "was None at pin time"),
        ("[1, 'a']", "list[json]", "list items have different types"),
    ],
    ids=["none", "mixed-list"],
)


@pytest.mark.slow
@UNINFERABLE
def test_uninferable_type_warns_and_falls_back_to_json(
    tmp_path: Path, value: str, expected_type: str, says: str
) -> None:
    cells: Cells = [(["parameters"], f"x = {value}"), (["predict"], "y = repr(x)")]
    out, stderr = pin_ok(write_notebook(tmp_path / "nb.ipynb", cells), "predict")
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert any(line.startswith("warning: x: ") and says in line for line in warnings), stderr
    assert type_text(out, "inputs", "x") == expected_type
    assert type_text(out, "outputs", "y") == "str"


@pytest.mark.slow
@UNINFERABLE
def test_uninferable_type_fails_with_strict(
    tmp_path: Path, value: str, expected_type: str, says: str
) -> None:
    cells: Cells = [(["parameters"], f"x = {value}"), (["predict"], "y = repr(x)")]
    stderr = pin_fails(write_notebook(tmp_path / "nb.ipynb", cells), "predict", "--strict")
    assert "x: " in stderr and says in stderr
    assert "--strict" in stderr and "annotate 'x'" in stderr


# 7. The target cell fails on the example inputs -------------------------------------------------


@pytest.mark.slow
def test_target_cell_failing_on_the_examples_shows_its_traceback(tmp_path: Path) -> None:
    cells: Cells = [
        (["parameters"], "x = 0"),
        ([], "def ratio(v):\n    return 10 / v"),
        (["predict"], "# scale by x\ny = ratio(x)"),
    ]
    stderr = pin_fails(write_notebook(tmp_path / "nb.ipynb", cells), "predict")
    assert "cell 2 (`# scale by x`)" in stderr
    assert "raised ZeroDivisionError on the example inputs: division by zero" in stderr
    # The traceback goes from the target cell into the notebook's function.
    assert "y = ratio(x)" in stderr and "return 10 / v" in stderr
    assert stderr.rstrip().endswith("ZeroDivisionError: division by zero")


# 8. Tampered checkpoints -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("good")
    out, _ = pin_ok(write_notebook(root / "nb.ipynb", GOOD), "predict")
    return out


def flip_a_state_byte(checkpoint: Path) -> None:
    state = checkpoint / "state.dill"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0x01
    state.write_bytes(bytes(data))


def change_the_recorded_hash(checkpoint: Path) -> None:
    manifest = checkpoint / "manifest.json"
    data = json.loads(manifest.read_text())
    data["files"]["state.dill"] = "0" * 64
    manifest.write_text(json.dumps(data, indent=2))


@pytest.mark.slow
@pytest.mark.parametrize("tamper", [flip_a_state_byte, change_the_recorded_hash])
@pytest.mark.parametrize("command", ["inspect", "run"])
def test_tampered_checkpoint_is_refused(
    good_checkpoint: Path, tmp_path: Path, tamper: object, command: str
) -> None:
    checkpoint = tmp_path / "svc.ckpt"
    shutil.copytree(good_checkpoint, checkpoint)
    assert cli(command, checkpoint).returncode == 0  # intact, it works
    assert callable(tamper)
    tamper(checkpoint)
    done = cli(command, checkpoint)
    stderr = assert_clean_failure(done)
    assert done.stdout == ""
    assert str(checkpoint / "state.dill") in stderr and "sha256" in stderr
    assert "refusing" in stderr and "Pin the notebook again" in stderr


# 9. Other refusals -------------------------------------------------------------------------------


def test_parameters_cell_the_target_never_reads_mentions_no_inputs(tmp_path: Path) -> None:
    cells: Cells = [(["parameters"], "x = 2"), ([], "z = 1"), (["predict"], "y = z + 1")]
    stderr = pin_fails(write_notebook(tmp_path / "nb.ipynb", cells), "predict")
    assert "reads none of the variables of the cell tagged `parameters`" in stderr
    assert "--inputs ''" in stderr


def test_existing_output_is_not_replaced_without_force(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "nb.ipynb", GOOD)
    existing = tmp_path / "svc.ckpt"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    stderr = pin_fails(notebook, "predict")
    assert f"{existing} already exists" in stderr and "--force" in stderr
    assert listing(existing) == {"keep.txt"} and (existing / "keep.txt").read_text() == "mine"
