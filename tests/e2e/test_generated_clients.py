"""The generated client packages against `checkpoint2svc serve` processes: every example through
RestClient, AsyncRestClient, GrpcClient and AsyncGrpcClient gives the pinned outputs; errors
arrive as the client's exceptions; the packages are ruff-clean, deterministic and installable."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from checkpoint2svc.checkpoint import Checkpoint, Manifest
from checkpoint2svc.codegen.client_wire import wire_files
from checkpoint2svc.codegen.service_context import generate
from checkpoint2svc.wire.json_values import decode_json, encode_json
from tests.conftest import EXAMPLE_PINS
from tests.e2e.instance import Instance
from tests.generated_client import imported_package

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CLIENTS = ["RestClient", "AsyncRestClient", "GrpcClient", "AsyncGrpcClient"]


@dataclass
class Service:
    """A generated service directory, served by a subprocess, with its client imported."""

    manifest: Manifest
    directory: Path
    package: ModuleType
    instance: Instance

    def client(self, kind: str, **options: Any) -> Any:
        address = self.instance.url if "Rest" in kind else self.instance.grpc_target
        return getattr(self.package, kind)(address, **options)

    def call(self, kind: str, inputs: dict[str, Any], **options: Any) -> Any:
        """One ``execute`` through a new client of ``kind``, closed afterwards."""
        if kind.startswith("Async"):

            async def call() -> Any:
                async with self.client(kind, **options) as client:
                    return await client.execute(**inputs)

            return asyncio.run(call())
        with self.client(kind, **options) as client:
            return client.execute(**inputs)

    def fresh(self) -> None:
        """Serve afresh: a shared-mode cell counts on from the calls before."""
        self.instance.stop()
        self.instance = Instance(self.directory)


@contextmanager
def served(checkpoint: Checkpoint, directory: Path) -> Iterator[Service]:
    """Generate ``checkpoint`` into ``directory``, import its client, and serve it."""
    names = generate(checkpoint, directory)
    with imported_package(directory / "client", f"{names.module}_client") as package:
        service = Service(checkpoint.manifest, directory, package, Instance(directory))
        try:
            yield service
        finally:
            service.instance.stop()


def example_inputs(manifest: Manifest) -> dict[str, Any]:
    return {v.name: decode_json(v.example, v.type, v.name) for v in manifest.inputs}


def as_pinned(manifest: Manifest, output: Any) -> dict[str, Any]:
    """An ``Output`` in the manifest's example form (JSON, tensors as b64)."""
    return {
        v.name: encode_json(getattr(output, v.name), v.type, v.name, tensors="b64")
        for v in manifest.outputs
    }


@pytest.fixture(scope="module", params=sorted(EXAMPLE_PINS))
def service(
    request: pytest.FixtureRequest,
    pinned: dict[str, Checkpoint],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    with served(pinned[request.param], tmp_path_factory.mktemp(request.param) / "svc") as running:
        yield running


@pytest.mark.parametrize("kind", CLIENTS)
def test_every_client_gives_the_pinned_outputs(service: Service, kind: str) -> None:
    if service.manifest.mode == "shared":
        service.fresh()
    output = service.call(kind, example_inputs(service.manifest))
    assert isinstance(output, service.package.Output)
    assert as_pinned(service.manifest, output) == {
        v.name: v.example for v in service.manifest.outputs
    }


@pytest.fixture(scope="module")
def classifier(
    pinned: dict[str, Checkpoint], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    with served(pinned["classifier"], tmp_path_factory.mktemp("classifier") / "svc") as running:
        yield running


@pytest.fixture(scope="module")
def image(
    pinned: dict[str, Checkpoint], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    with served(pinned["image"], tmp_path_factory.mktemp("image") / "svc") as running:
        yield running


@pytest.mark.parametrize("kind", CLIENTS)
def test_a_wrong_input_type_names_the_field(classifier: Service, kind: str) -> None:
    with pytest.raises(classifier.package.ValidationError) as info:
        classifier.call(kind, {"features": [6.7, "x", 5.2, 2.3]})
    assert info.value.field == "input.features[1]"
    assert "input.features[1]" in str(info.value)


@pytest.mark.parametrize("kind", CLIENTS)
def test_a_cell_that_raises_gives_its_error_and_the_next_call_succeeds(
    classifier: Service, kind: str
) -> None:
    with pytest.raises(classifier.package.ExecutionError) as info:
        classifier.call(kind, {"features": [1.0]})
    error = info.value
    assert error.error_name == "ValueError"
    assert "features" in error.error_message
    assert any("model.predict_proba" in line for line in error.traceback)
    assert (error.http_status, error.grpc_code) in ((500, None), (None, "INTERNAL"))
    assert classifier.call(kind, {"features": [6.7, 3.0, 5.2, 2.3]}).label == "virginica"


@pytest.mark.parametrize("kind", CLIENTS)
def test_the_servers_own_validation_arrives_as_the_validation_error(
    image: Service, kind: str
) -> None:
    # A tensor of the wrong shape passes the client's conversion; the server refuses it.
    with pytest.raises(image.package.ValidationError) as info:
        image.call(kind, {"image": np.zeros((1, 3), dtype=np.float32)})
    assert info.value.field == "input.image"
    assert "expected shape (*, 8), got (1, 3)" in info.value.reason
    assert (info.value.http_status, info.value.grpc_code) in (
        (422, None),
        (None, "INVALID_ARGUMENT"),
    )


def test_headers_and_metadata_reach_the_instance(classifier: Service) -> None:
    inputs = {"features": [6.7, 3.0, 5.2, 2.3]}
    classifier.call("RestClient", inputs, headers={"x-request-id": "from-rest-client"})
    classifier.call("AsyncGrpcClient", inputs, metadata={"x-request-id": "from-grpc-client"})
    classifier.instance.stop()  # the cell's prints are in the log, under the request's id
    assert "[from-rest-client] virginica" in classifier.instance.log
    assert "[from-grpc-client] virginica" in classifier.instance.log
    classifier.fresh()


def client_files(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.mark.parametrize("key", sorted(EXAMPLE_PINS))
def test_the_client_package_passes_ruff_and_is_deterministic(
    pinned: dict[str, Checkpoint], tmp_path: Path, key: str
) -> None:
    generate(pinned[key], tmp_path / "one")
    generate(pinned[key], tmp_path / "two")
    one, two = client_files(tmp_path / "one" / "client"), client_files(tmp_path / "two" / "client")
    assert one.keys() == two.keys()
    assert [name for name in one if one[name] != two[name]] == []
    ours = [p for p in (tmp_path / "one" / "client").rglob("*.py") if "_proto" not in p.parts]
    assert len(ours) == 4 + len(wire_files())  # and the copies of the wire package
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--config", str(REPO / "pyproject.toml"),
         "--no-cache", *map(str, ours)],
        capture_output=True, text=True, check=False, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_client_package_builds_a_wheel_with_its_stubs(
    pinned: dict[str, Checkpoint], tmp_path: Path
) -> None:
    generate(pinned["image"], tmp_path / "svc")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(tmp_path / "dist"), str(tmp_path / "svc" / "client")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    [wheel] = (tmp_path / "dist").glob("normalize_client-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "normalize_client/__init__.py",
        "normalize_client/py.typed",
        "normalize_client/_wire/grpc_client.py",
        "normalize_client/_proto/normalize_pb2.py",
        "normalize_client/_proto/normalize_pb2_grpc.py",
        "normalize_client/_proto/checkpoint2svc_protos/v1/values_pb2.py",
        "normalize_client/_proto/yandex/cloud/datasphere/v1/node_service_pb2.py",
    } <= names
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Name: normalize-client" in text and "Requires-Dist: numpy" in text


def test_a_type_checker_checks_calls_against_the_signature(
    pinned: dict[str, Checkpoint], tmp_path: Path
) -> None:
    generate(pinned["greeter"], tmp_path / "svc")
    script = tmp_path / "use_client.py"
    script.write_text(
        "from greet_client import GrpcClient, Output, RestClient\n"
        "\n"
        "with RestClient('http://127.0.0.1:8080') as client:\n"
        "    output: Output = client.execute(name='Ada', values=[1, 2])\n"
        "    scaled: list[int] = output.scaled\n"
        "    client.execute(name=1, values=[1])\n"
        "with GrpcClient('127.0.0.1:9090') as grpc_client:\n"
        "    grpc_client.execute(name='Ada')\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
         "--ignore-missing-imports", "--cache-dir", str(tmp_path / "mypy"), str(script)],
        capture_output=True, text=True, check=False, cwd=REPO,
        env={"MYPYPATH": str(tmp_path / "svc" / "client"), "PATH": ""},
    )  # fmt: skip
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 2, done.stdout + done.stderr
    assert 'Argument "name" to "execute" of "RestClient" has incompatible type "int"' in errors[0]
    assert 'Missing named argument "values"' in errors[1]


def test_the_client_runs_in_an_environment_without_checkpoint2svc(
    image: Service, tmp_path: Path
) -> None:
    """pip install the package into a new virtual environment, which then holds its dependencies
    and not checkpoint2svc, and call the served instance from there over REST and gRPC."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    installed = subprocess.run(
        [python, "-m", "pip", "install", "-q", str(image.directory / "client")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True
    )
    names = {package["name"].lower() for package in json.loads(listed.stdout)}
    assert {"normalize-client", "grpcio", "httpx", "numpy"} <= names
    assert not names & {"checkpoint2svc", "fastapi", "docker", "ipykernel", "grpcio-tools"}
    program = f"""
import json, numpy
from normalize_client import GrpcClient, RestClient
image = numpy.arange(16, dtype="float32").reshape(2, 8)
for client in (RestClient("{image.instance.url}"), GrpcClient("{image.instance.grpc_target}")):
    with client:
        output = client.execute(image=image)
    print(json.dumps([output.normalized.tolist(), output.brightness]))
"""
    done = subprocess.run(
        [python, "-c", program], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    expected = image.call("RestClient", {"image": np.arange(16, dtype=np.float32).reshape(2, 8)})
    for line in done.stdout.splitlines():
        normalized, brightness = json.loads(line)
        assert np.array_equal(np.array(normalized, dtype=np.float32), expected.normalized)
        assert brightness == expected.brightness
    assert len(done.stdout.splitlines()) == 2
