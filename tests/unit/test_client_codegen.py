"""Type IR -> the client package's model -> rendered, ruff-clean, importable Python."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from checkpoint2svc.checkpoint.manifest import Manifest, Variable
from checkpoint2svc.codegen.client_package import build_client_model, client_files, raised_bounds
from checkpoint2svc.codegen.client_wire import wire_files
from checkpoint2svc.version import __version__
from checkpoint2svc.wire.proto_values import signature_record
from checkpoint2svc.wire.type_ir import (
    Column,
    DictOf,
    Field,
    Json,
    ListOf,
    Optional,
    Record,
    Scalar,
    Table,
    Tensor,
)
from tests.generated_client import imported_package, names_of, write_package
from tests.unit.test_proto import CASES, OUTPUTS, manifest

REPO = Path(__file__).resolve().parents[2]
EVERY_KIND = manifest("client-every-kind", [Variable(n, t, None) for n, t, _, _ in CASES], OUTPUTS)
LONG = "a_rather_long_name_that_keeps_going_and_going_well_past_any_sensible_length_limit"
ODD = manifest(
    "odd-names",
    [
        Variable("self", Scalar("int"), 1),
        Variable("Input", Optional(Scalar("str")), None),
        Variable("numpy", Tensor("float32", (-1,)), None),
        Variable(LONG, DictOf(ListOf(DictOf(ListOf(Record((Field(LONG, Json()),)))))), {}),
    ],
    [
        Variable(
            "Output", Record((Field("class", Scalar("int")), Field("__x", Scalar("str")))), None
        ),
        Variable("frame", Table((Column('a "quoted"\\ column\n', "int64"),)), None),
    ],
)
NOTHING = manifest("nothing", [], [Variable("answer", Scalar("int"), 42)])


def ruff(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--config", str(REPO / "pyproject.toml"),
         "--no-cache", *map(str, paths)],
        capture_output=True, text=True, check=False, cwd=REPO,
    )  # fmt: skip


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clients")
    return {m.name: write_package(m, root / m.name) for m in (EVERY_KIND, ODD, NOTHING)}


def test_annotations_follow_the_readme_table() -> None:
    model = build_client_model(EVERY_KIND, names_of(EVERY_KIND))
    annotations = {f.name: f.annotation for f in model.input.fields}
    assert annotations["flag"] == "bool"
    assert annotations["count"] == "int"
    assert annotations["ratio"] == "float"
    assert annotations["blob"] == "bytes"
    assert annotations["maybe_zero"] == "int | None"
    assert annotations["maybe_maybe"] == "str | None"
    assert annotations["floats"] == "list[float]"
    assert annotations["cube"] == "list[list[list[int]]]"
    assert annotations["counts"] == "dict[str, int]"
    assert annotations["point"] == "InputPoint"
    assert annotations["points"] == "list[InputPoint]"  # one TypedDict per distinct record
    assert annotations["maybe_point"] == "InputPoint | None"
    assert annotations["tensor_2d"] == "NDArray[numpy.float32]"
    assert annotations["tensor_bool"] == "NDArray[numpy.bool_]"
    assert annotations["frame"] == "pandas.DataFrame"
    assert annotations["json_object"] == "Any"
    assert annotations["nested"] == "InputNested"
    records = {r.name: r for r in model.records}
    nested = {f.name: f.annotation for f in records["InputNested"].fields}
    assert nested == {
        "origin": "InputPoint",
        "path": "list[InputPoint]",
        "meta": "dict[str, Any]",
        "parent": "InputPoint | None",
        "tags": "list[str] | None",
        "inner": "InputNestedInner",
    }
    assert list(records).index("InputNestedInnerDeeper") < list(records).index("InputNested")
    assert records["InputKeywords"].functional and not records["InputPoint"].functional
    defaults = {f.name: f.default for f in model.input.fields}
    assert defaults["maybe_zero"] == " = None" and defaults["count"] == ""
    assert model.output.decorator == "dataclass(frozen=True, kw_only=True, eq=False)"
    assert model.input.decorator == "dataclass(kw_only=True, eq=False)"
    assert model.distribution == "client-every-kind-client"
    assert model.package == "client_every_kind_client"
    assert model.version == __version__  # the same checkpoint gives the same files


def test_every_rendered_module_passes_ruff(packages: dict[str, Path]) -> None:
    files = [
        path
        for folder in packages.values()
        for path in folder.rglob("*.py")
        if "_proto" not in path.parts
    ]
    assert len(files) == 3 * (4 + len(wire_files()))  # and the copies of the wire package
    done = ruff(files)
    assert done.returncode == 0, done.stdout + done.stderr


def test_rendering_is_deterministic() -> None:
    again = Manifest.from_dict(EVERY_KIND.to_dict())
    first = client_files(build_client_model(EVERY_KIND, names_of(EVERY_KIND)))
    assert first == client_files(build_client_model(again, names_of(again)))
    for path, text in first.items():
        assert all(line == line.rstrip() for line in text.splitlines()), path
        assert "\n\n\n\n" not in text, path
        assert text == "" or (text.endswith("\n") and not text.endswith("\n\n")), path


def test_the_package_embeds_the_signature_and_types(packages: dict[str, Path]) -> None:
    with imported_package(packages[EVERY_KIND.name], "client_every_kind_client") as package:
        models = package.models  # its IR is the wire's copy: the same shape, other classes
        assert models.SIGNATURE.inputs.to_dict() == signature_record(EVERY_KIND.inputs).to_dict()
        assert models.SIGNATURE.outputs.to_dict() == signature_record(EVERY_KIND.outputs).to_dict()
        inputs = [f.name for f in dataclasses.fields(package.Input)]
        assert inputs == [name for name, _, _, _ in CASES]
        assert typing.is_typeddict(package.InputPoint)
        assert set(package.InputKeywords.__annotations__) >= {"class", "DESCRIPTOR", "café"}
        assert set(package.__all__) <= set(dir(package))
        assert package.RestClient.output_type is package.Output


def test_odd_names_stay_valid_python(packages: dict[str, Path]) -> None:
    model = build_client_model(ODD, names_of(ODD))
    assert model.execute.receiver == "self_"
    assert [p.name for p in model.execute.params] == ["self", "Input", "numpy", LONG]
    assert any(p.noqa for p in model.execute.params)  # a line that cannot be shortened
    with imported_package(packages[ODD.name], "odd_names_client") as package:
        assert package.models.SIGNATURE.outputs.to_dict() == signature_record(ODD.outputs).to_dict()
        assert set(package.OutputOutput.__annotations__) == {"class", "__x"}
        assert package.Input(self=1, numpy=None, **{LONG: {}}).Input is None  # type: ignore[arg-type]


def test_a_service_without_inputs(packages: dict[str, Path]) -> None:
    model = build_client_model(NOTHING, names_of(NOTHING))
    assert model.execute.params == ()
    assert model.example_call == ("execute()",)
    with imported_package(packages[NOTHING.name], "nothing_client") as package:
        assert dataclasses.fields(package.Input) == ()
        assert package.Output(answer=1) == package.Output(answer=1)  # no arrays: comparable


def test_the_pyproject_names_the_distribution_and_its_requirements() -> None:
    text = client_files(build_client_model(EVERY_KIND, names_of(EVERY_KIND)))["pyproject.toml"]
    import tomllib

    data = tomllib.loads(text)
    assert data["project"]["name"] == "client-every-kind-client"
    requirements = data["project"]["dependencies"]
    assert not any(r.startswith("checkpoint2svc") for r in requirements)  # it carries a copy
    assert {"grpcio>=1.60", "httpx>=0.27", "orjson>=3.9", "protobuf>=5.26"} <= set(requirements)
    assert any(r.startswith("numpy") for r in requirements)
    assert any(r.startswith("pandas") for r in requirements)
    assert data["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [
        "client_every_kind_client"
    ]
    plain = client_files(build_client_model(NOTHING, names_of(NOTHING)))["pyproject.toml"]
    assert "numpy" not in plain and "pandas" not in plain


def test_the_example_call_uses_the_pinned_inputs() -> None:
    greeter = manifest(
        "greet",
        [Variable("name", Scalar("str"), "Ada"), Variable("values", ListOf(Scalar("int")), [1])],
        [],
    )
    assert build_client_model(greeter, names_of(greeter)).example_call == (
        'execute(name="Ada", values=[1])',
    )
    image = manifest("image", [Variable("image", Tensor("float32", (-1,)), {"b64": ""})], [])
    assert build_client_model(image, names_of(image)).example_call == ("execute(image=...)",)


def test_the_package_runs_without_checkpoint2svc(packages: dict[str, Path]) -> None:
    """checkpoint2svc made unimportable: the package still imports, checks inputs against its
    signature, encodes a tensor, and reports a service it cannot reach, over REST and gRPC (the
    wire's copy does it all)."""
    program = f"""
import sys
sys.modules["checkpoint2svc"] = None  # any import of it fails
import numpy
from odd_names_client import GrpcClient, RestClient, ServiceError, ValidationError
inputs = {{"self": 1, "Input": None, "numpy": numpy.zeros(2, "float32"), "{LONG}": {{}}}}
for client in (RestClient("http://127.0.0.1:9", timeout=5), GrpcClient("127.0.0.1:9", timeout=5)):
    with client:
        for change in ({{"self": "one"}}, {{}}):
            try:
                client.execute(**{{**inputs, **change}})
            except (ServiceError, ValidationError) as exc:
                print(type(exc).__name__, getattr(exc, "field", ""))
print(sorted(m for m in sys.modules if m.startswith("checkpoint2svc.") or m == "checkpoint2svc"))
"""
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=packages[ODD.name],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "ValidationError input.self",
        "ServiceError ",  # valid inputs, sent to a port nothing serves (REST)
        "ValidationError input.self",
        "ServiceError ",  # the same over gRPC: the stubs, proto_values, grpc_status
        "['checkpoint2svc']",  # only the blocked entry
    ]


def test_the_written_package_requires_what_its_stubs_check_at_import(
    packages: dict[str, Path],
) -> None:
    """protoc's modules raise on a grpcio or protobuf older than the tools that wrote them, so
    the package's pyproject asks for at least those versions."""
    import tomllib

    folder = packages[NOTHING.name]
    requirements = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"
    ]["dependencies"]
    stubs = folder / "nothing_client" / "_proto"
    grpc_generated = re.search(
        r"GRPC_GENERATED_VERSION = '(.+)'", (stubs / "nothing_pb2_grpc.py").read_text()
    )
    assert grpc_generated and f"grpcio>={grpc_generated.group(1)}" in requirements
    messages = (stubs / "nothing_pb2.py").read_text()
    gencode = re.search(r"Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),", messages)
    assert gencode and f"protobuf>={'.'.join(gencode.groups())}" in requirements
    assert (folder / "README.md").read_text().count(f"grpcio>={grpc_generated.group(1)}") == 1


def test_lower_bounds_are_raised_never_lowered() -> None:
    requirements = ("grpcio>=1.60", "httpx>=0.27", "protobuf>=5.26")
    assert raised_bounds(requirements, {"grpcio": "1.85.1", "protobuf": "5.0", "numpy": "2"}) == (
        "grpcio>=1.85.1",
        "httpx>=0.27",
        "protobuf>=5.26",
    )
