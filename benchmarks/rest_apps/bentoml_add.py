"""The BentoML baseline for ``bench_rest.py``: ``c = a + b`` behind POST /execute, one worker.

BentoML turns the API method's parameters into the fields of the JSON body, so the parameter
``input`` takes ``{"input": {"a": 1, "b": 2}}``, and the returned model gives
``{"output": {"c": 3}}``: the same shape as a checkpoint2svc instance. It runs in the benchmark's
own virtual environment (``benchmarks/.venv-bentoml``), never in the project's.
"""

from __future__ import annotations

import bentoml
from pydantic import BaseModel


class Inputs(BaseModel):
    a: int
    b: int


class Outputs(BaseModel):
    c: int


class ExecuteResponse(BaseModel):
    output: Outputs


@bentoml.service(workers=1, logging={"access": {"enabled": False}})
class Add:
    @bentoml.api(route="/execute")
    async def execute(self, input: Inputs) -> ExecuteResponse:
        return ExecuteResponse(output=Outputs(c=input.a + input.b))
