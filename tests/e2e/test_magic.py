"""The ``%%deploy`` magic in a real notebook run by nbclient: deploy from a live kernel, call the
endpoint from this process, check status, undeploy; on the local backend and on docker."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
from nbclient import NotebookClient

from checkpoint2svc.checkpoint.kernel import kernel_manager
from checkpoint2svc.control.api_client import stop_controller
from checkpoint2svc.control.models import NodeStatus
from tests.e2e.test_nodes import Controller, _needs_engine, remove_node_images

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("docker-images")]

WORDS_CELL = """\
words = [w for w in re.findall("[a-z]+", text.lower()) if w not in STOPWORDS]
count = len(words)
print("counted", count)"""


def run_notebook(cells: list[str], directory: Path) -> list[Any]:
    """Write ``cells`` as a notebook file, execute it in a fresh kernel (this Python) with
    nbclient, and return its executed cells; errors are kept in the outputs."""
    notebook = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]  # type: ignore[no-untyped-call]
    path = directory / f"deploy-{len(list(directory.glob('*.ipynb')))}.ipynb"
    nbformat.write(notebook, path)  # type: ignore[no-untyped-call]
    notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    client = NotebookClient(
        notebook, km=kernel_manager(), timeout=900, allow_errors=True,
        resources={"metadata": {"path": str(directory)}},
    )  # fmt: skip
    client.execute()
    return list(notebook.cells)


def text_of(cell: Any) -> str:
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("display_data", "execute_result"):
            parts.append(output.data.get("text/plain", ""))
        elif output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}")
    return "\n".join(parts)


def errors_of(cell: Any) -> list[str]:
    """The cell's exceptions; a magic's UsageError is only printed on stderr by IPython."""
    return [f"{o.ename}: {o.evalue}" for o in cell.outputs if o.output_type == "error"] + [
        o.text
        for o in cell.outputs
        if o.output_type == "stream" and o.name == "stderr" and "UsageError" in o.text
    ]


@pytest.fixture
def controller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Controller]:
    running = Controller(tmp_path / "home")
    monkeypatch.setenv("CHECKPOINT2SVC_HOME", str(running.home.root))  # the kernel inherits it
    try:
        yield running
    finally:
        try:
            stop_controller(running.home, everything=True)
        finally:
            remove_node_images("words-")


@pytest.mark.parametrize("backend", ["local", "docker"])
def test_deploy_magic_serves_the_cell_from_the_live_kernel(
    controller: Controller, tmp_path: Path, backend: str
) -> None:
    _needs_engine(backend)
    flags = " --local" if backend == "local" else ""
    cells = run_notebook(
        [
            "%load_ext checkpoint2svc",
            'import re\nSTOPWORDS = {"the", "a", "and"}\ntext: str = "The cat and a dog"',
            f"%%deploy words --alias words-live{flags}\n{WORDS_CELL}",
            "%deploy_status words",
            "count, words",
            "%%deploy Bad_Name\nx = 1",
        ],
        tmp_path,
    )
    for cell in cells[:5]:
        assert not errors_of(cell), (cell.source, errors_of(cell))
    deployed = text_of(cells[2])
    assert "counted 2" in deployed  # the cell ran once, as usual, with its output in the notebook
    assert "inputs: text" in deployed  # the annotated variable it reads, not STOPWORDS
    rest_url = re.search(r"REST: (\S+)", deployed)
    assert rest_url is not None, deployed
    assert rest_url.group(1) == f"{controller.gateway}/datasphere/v1/aliases/words-live:execute"
    assert "curl -s -X POST" in deployed and "RestClient(" in deployed and "Healthy" in deployed
    assert "execute_result" in {o.output_type for o in cells[2].outputs}
    assert any("text/html" in o.get("data", {}) for o in cells[2].outputs)

    response = httpx.post(
        rest_url.group(1), json={"input": {"text": "A bird and the bee sing"}}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"output": {"words": ["bird", "bee", "sing"], "count": 3}}

    status = text_of(cells[3])
    assert re.search(r"words-[0-9a-f]{8}\s+Healthy\s+1/1\s+" + backend, status), status
    assert "words-live (100%)" in status
    assert "(2, ['cat', 'dog'])" in text_of(cells[4])  # the results stay in the kernel
    assert errors_of(cells[5]) and "invalid" in errors_of(cells[5])[0]  # UsageError, no deploy

    again = run_notebook(["%load_ext checkpoint2svc", "%undeploy words"], tmp_path)
    assert not errors_of(again[1]), errors_of(again[1])
    assert "deleted alias words-live" in text_of(again[1])
    assert controller.api.nodes() == []
    assert controller.api.aliases() == []


def test_deploy_magic_twice_changes_nothing_and_names_a_failing_cell(
    controller: Controller, tmp_path: Path
) -> None:
    setup = 'import re\nSTOPWORDS = {"the"}\ntext: str = "the sun"'
    first = run_notebook(
        ["%load_ext checkpoint2svc", setup, f"%%deploy words --local\n{WORDS_CELL}"], tmp_path
    )
    assert "created node words" in text_of(first[2]), text_of(first[2])
    second = run_notebook(
        [
            "%load_ext checkpoint2svc",
            setup,
            f"%%deploy words --local\n{WORDS_CELL}",
            "%%deploy words --local\nresult = len(text) / 0",
        ],
        tmp_path,
    )
    assert "nothing changed" in text_of(second[2]), text_of(second[2])
    failed = text_of(second[3])
    assert "ZeroDivisionError" in failed and "nothing was deployed" in failed
    node = controller.node("words")
    assert node.status == NodeStatus.HEALTHY and len(node.instances) == 1
