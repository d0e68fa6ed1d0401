"""The hand-written FastAPI baseline for ``bench_rest.py``: ``c = a + b`` behind POST /execute.

The same JSON shape as a checkpoint2svc instance: ``{"input": {"a": 1, "b": 2}}`` in,
``{"output": {"c": 3}}`` out. An ``async def`` handler with pydantic models in and out, served
by uvicorn with uvloop and httptools in one worker (``bench_rest.py`` starts it).
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel


class Inputs(BaseModel):
    a: int
    b: int


class Outputs(BaseModel):
    c: int


class ExecuteRequest(BaseModel):
    input: Inputs


class ExecuteResponse(BaseModel):
    output: Outputs


app = FastAPI(title="add")


@app.post("/execute")
async def execute(request: ExecuteRequest) -> ExecuteResponse:
    return ExecuteResponse(output=Outputs(c=request.input.a + request.input.b))
