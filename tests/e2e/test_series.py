"""A statsmodels fit pinned and served: its coefficients (pandas Series) keep their names over
REST, gRPC and the generated client; a Series input may be sent as labelled values."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pandas as pd
import pytest

from checkpoint2svc.checkpoint import Checkpoint
from checkpoint2svc.wire.names import proto_package, service_name
from checkpoint2svc.wire.type_ir import Series
from tests.e2e.cli import cli, write_notebook
from tests.e2e.test_generated_clients import Service, served
from tests.e2e.test_serve_grpc import NODE_EXECUTE, ReflectedClient

pytestmark = pytest.mark.slow

DATA = """\
import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

rng = np.random.default_rng(7)
x = rng.normal(size=200)
df = pd.DataFrame({"x": x, "y": 1.5 + 2.0 * x + rng.normal(scale=0.5, size=200)})
"""
FIT = "res = smf.ols('y ~ x', data=df).fit()"
TARGET = "params = res.params\npvalues = res.pvalues"
TOLERANCE = {"rtol": 1e-9, "check_exact": False}


def fitted() -> Any:
    """The same fit, in this process."""
    namespace: dict[str, Any] = {}
    exec(DATA + FIT, namespace)
    return namespace["res"]


@pytest.fixture(scope="module")
def expected() -> dict[str, pd.Series]:
    res = fitted()
    return {"params": res.params, "pvalues": res.pvalues}


@pytest.fixture(scope="module")
def ols(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The notebook pinned with the CLI (no inputs), generated, served, its client imported."""
    root = tmp_path_factory.mktemp("ols")
    notebook = write_notebook(root / "ols.ipynb", [([], DATA), ([], FIT), (["fit"], TARGET)])
    done = cli("pin", notebook, "--cell", "fit", "--inputs", "", "-o", root / "ols.ckpt")
    assert done.returncode == 0, done.stderr
    assert "params: series[float64, index=string]" in done.stdout
    assert "served as json" not in done.stdout + done.stderr
    with served(Checkpoint.open(root / "ols.ckpt"), root / "svc") as service:
        yield service


def as_series(data: dict[str, Any]) -> pd.Series:
    """The JSON form, read without checkpoint2svc: what a plain HTTP client would do."""
    return pd.Series(data["values"], index=pd.Index(data["index"]), name=data["name"])


def test_pinning_records_series_with_their_labels(
    ols: Service, expected: dict[str, pd.Series]
) -> None:
    manifest = ols.manifest
    assert manifest.inputs == []
    assert {v.name: v.type for v in manifest.outputs} == {
        "params": Series("float64", "string"),
        "pvalues": Series("float64", "string"),
    }
    for variable in manifest.outputs:
        pd.testing.assert_series_equal(as_series(variable.example), expected[variable.name])


def test_rest_answers_carry_the_parameter_names(
    ols: Service, expected: dict[str, pd.Series]
) -> None:
    response = ols.instance.execute({})
    assert response.status_code == 200, response.text
    output = response.json()["output"]
    assert output["params"]["index"] == ["Intercept", "x"]
    assert output["params"]["name"] is None
    for name in ("params", "pvalues"):
        pd.testing.assert_series_equal(as_series(output[name]), expected[name], **TOLERANCE)
    schemas = httpx.get(f"{ols.instance.url}/openapi.json").json()["components"]["schemas"]
    params = schemas["FitOutput"]["properties"]["params"]
    assert params["oneOf"][0]["required"] == ["index", "values"]


def test_grpc_answers_carry_the_parameter_names(
    ols: Service, expected: dict[str, pd.Series]
) -> None:
    client = ReflectedClient(ols.instance.grpc_target)
    typed_service = f"{proto_package('fit')}.{service_name('fit')}"
    typed = client.call(typed_service, "Execute", {})
    for name in ("params", "pvalues"):
        message = typed[name]  # checkpoint2svc.v1.Series: index and values as Table columns
        assert message["index"] == {
            "dtype": "string", "strings": {"values": ["Intercept", "x"]}
        }  # fmt: skip
        assert message["values"]["dtype"] == "float64" and "name" not in message
        got = pd.Series(message["values"]["doubles"]["values"], index=["Intercept", "x"])
        pd.testing.assert_series_equal(got, expected[name], **TOLERANCE)
    generic = client.call(NODE_EXECUTE, "Execute", {"node_id": "fit", "input": {}})["output"]
    assert generic["params"]["index"] == ["Intercept", "x"]  # the REST form, in a Struct
    pd.testing.assert_series_equal(as_series(generic["params"]), expected["params"], **TOLERANCE)


@pytest.mark.parametrize("kind", ["RestClient", "GrpcClient"])
def test_the_generated_client_returns_pandas_series(
    ols: Service, expected: dict[str, pd.Series], kind: str
) -> None:
    output = ols.call(kind, {})
    for name in ("params", "pvalues"):
        got = getattr(output, name)
        assert isinstance(got, pd.Series)
        pd.testing.assert_series_equal(got, expected[name], check_index_type=True, **TOLERANCE)
    assert output.params["x"] == pytest.approx(expected["params"]["x"], rel=1e-9)


@pytest.fixture(scope="module")
def scale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A cell that takes a Series (named "weight" when pinned) and returns it scaled."""
    root = tmp_path_factory.mktemp("scale")
    notebook = write_notebook(
        root / "scale.ipynb",
        [
            ([], "import pandas as pd"),
            (["parameters"], 'weights = pd.Series({"Intercept": 1.0, "x": 2.0}, name="weight")'),
            (["scale"], "scaled = weights * 10\nlabels = list(weights.index)"),
        ],
    )
    done = cli("pin", notebook, "--cell", "scale", "-o", root / "scale.ckpt")
    assert done.returncode == 0, done.stderr
    assert "weights: series[float64, index=string, name=weight]" in done.stdout
    with served(Checkpoint.open(root / "scale.ckpt"), root / "svc") as service:
        yield service


def test_a_series_input_travels_with_its_labels(scale: Service) -> None:
    plain = scale.instance.execute({"weights": {"b": 3, "a": 0.5}})  # curl-style labelled values
    assert plain.status_code == 200, plain.text
    assert plain.json()["output"] == {
        "scaled": {"index": ["b", "a"], "values": [30.0, 5.0], "name": "weight"},  # pinned name
        "labels": ["b", "a"],
    }
    full = scale.instance.execute(
        {"weights": {"index": ["p", "q"], "values": [1.5, None], "name": None}}
    )
    assert full.json()["output"]["scaled"] == {"index": ["p", "q"], "values": [15.0, None],
                                               "name": None}  # fmt: skip
    wrong = scale.instance.execute({"weights": {"index": ["p"], "values": [1.0, 2.0]}})
    assert wrong.status_code == 422
    assert wrong.json()["field"] == "input.weights.values"
    weights = pd.Series([0.25, 4.0], index=["Intercept", "x"], name="w")
    for kind in ("RestClient", "GrpcClient"):
        output = scale.call(kind, {"weights": weights})
        pd.testing.assert_series_equal(output.scaled, weights * 10)
        assert output.labels == ["Intercept", "x"]
