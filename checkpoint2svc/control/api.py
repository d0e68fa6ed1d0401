"""The controller's REST API (FastAPI, 127.0.0.1 only, bearer token on every call).

Each route adapts HTTP to a function of ``operations`` and answers with a view of ``views``, so
``/openapi.json`` documents every body, answer and refusal. The app carries the controller in
its state; the ``Ctl`` dependency hands it to a route.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from checkpoint2svc.control import operations
from checkpoint2svc.control.controller import Controller
from checkpoint2svc.control.models import (
    NodeSpec,
    NodeSpecError,
    NodeStatus,
    invalid_settings,
    problems,
)
from checkpoint2svc.control.operations import (
    ConflictError,
    InstanceNotFoundError,
    LogRequestError,
)
from checkpoint2svc.control.store import (
    AliasExistsError,
    AliasNotFoundError,
    NodeExistsError,
    NodeNotFoundError,
)
from checkpoint2svc.control.views import (
    AliasCreate,
    AliasDeleted,
    AliasPatch,
    AliasView,
    ControllerStatus,
    ErrorView,
    NodeDeleted,
    NodePatch,
    NodeView,
    Stopping,
    alias_view,
    gateway_address,
    node_view,
)
from checkpoint2svc.errors import Checkpoint2SvcError

ERROR_STATUS: tuple[tuple[type[Checkpoint2SvcError], int], ...] = (
    (NodeNotFoundError, 404), (AliasNotFoundError, 404), (InstanceNotFoundError, 404),
    (NodeExistsError, 409), (AliasExistsError, 409), (ConflictError, 409),
    (NodeSpecError, 422), (LogRequestError, 422),
)  # fmt: skip
"""The HTTP status of each refusal; any other error of the library is a 400."""

_bearer = HTTPBearer(auto_error=False)


def error_status(exc: Checkpoint2SvcError) -> int:
    return next((status for kind, status in ERROR_STATUS if isinstance(exc, kind)), 400)


def _controller(request: Request) -> Controller:
    controller: Controller = request.app.state.controller
    return controller


def _authorized(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    token: str = request.app.state.token
    if credentials is None or not hmac.compare_digest(credentials.credentials, token):
        raise HTTPException(
            401,
            "missing or wrong bearer token: the CLI reads it from the controller's home "
            "(token file written by `checkpoint2svc up`)",
        )


Ctl = Annotated[Controller, Depends(_controller)]


def _refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorView} for status in (401, *statuses)}


def _text_answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A plain-text route's answers: text, or a refusal in JSON (stated here: FastAPI would
    give the refusals the route's text media type)."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorView"}}}
    return {
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **{status: {"description": "refused", "content": error} for status in (401, *statuses)},
    }


router = APIRouter(prefix="/v1", dependencies=[Depends(_authorized)])


@router.get("/status", responses=_refusals())
def status(controller: Ctl) -> ControllerStatus:
    return ControllerStatus(
        controller_id=controller.controller_id,
        gateway=gateway_address(controller.gateway_port),
        nodes=len(operations.list_nodes(controller)),
        time=time.time(),
    )


@router.post("/nodes", status_code=201, responses=_refusals(409, 422))
def create_node(controller: Ctl, spec: NodeSpec) -> NodeView:
    return node_view(controller, operations.create_node(controller, spec))


@router.get("/nodes", responses=_refusals())
def list_nodes(controller: Ctl) -> list[NodeView]:
    return [node_view(controller, row, events=0) for row in operations.list_nodes(controller)]


@router.get("/nodes/{name}", responses=_refusals(404, 422))
def get_node(controller: Ctl, name: str, events: int = 10) -> NodeView:
    return node_view(controller, operations.get_node(controller, name), events)


@router.patch("/nodes/{name}", responses=_refusals(404, 422))
def update_node(controller: Ctl, name: str, patch: NodePatch) -> NodeView:
    return node_view(controller, operations.update_node(controller, name, patch))


@router.post("/nodes/{name}:suspend", responses=_refusals(404, 422))
def suspend_node(controller: Ctl, name: str) -> NodeView:
    return node_view(controller, operations.suspend_node(controller, name, True))


@router.post("/nodes/{name}:resume", responses=_refusals(404, 422))
def resume_node(controller: Ctl, name: str) -> NodeView:
    return node_view(controller, operations.suspend_node(controller, name, False))


@router.delete("/nodes/{name}", status_code=202, responses=_refusals(404, 409, 422))
def delete_node(controller: Ctl, name: str, force: bool = False) -> NodeDeleted:
    operations.delete_node(controller, name, force)
    return NodeDeleted(name=name, status=NodeStatus.DELETING)


@router.get(
    "/nodes/{name}/logs", response_model=None, response_class=PlainTextResponse,
    responses=_text_answers(404, 422),
)  # fmt: skip
def node_logs(
    controller: Ctl, name: str, instance: str = "", tail: int = 100, follow: bool = False
) -> PlainTextResponse | StreamingResponse:
    """The instances' last ``tail`` lines each; with ``follow`` one instance's, as they come."""
    records = operations.log_instances(controller, name, instance, follow)
    if follow:
        lines = controller.instance_logs(records[0].id, tail, follow=True)
        return StreamingResponse((line + "\n" for line in lines), media_type="text/plain")
    chunks = []
    for record in records:
        text = "\n".join(controller.instance_logs(record.id, tail))
        chunks.append(f"==> {record.id} <==\n{text}")
    return PlainTextResponse("\n".join(chunks) + "\n")


@router.post("/aliases", status_code=201, responses=_refusals(404, 409, 422))
def create_alias(controller: Ctl, body: AliasCreate) -> AliasView:
    return alias_view(controller, operations.create_alias(controller, body))


@router.get("/aliases", responses=_refusals())
def list_aliases(controller: Ctl) -> list[AliasView]:
    return [alias_view(controller, alias) for alias in operations.list_aliases(controller)]


@router.get("/aliases/{name}", responses=_refusals(404, 422))
def get_alias(controller: Ctl, name: str) -> AliasView:
    return alias_view(controller, operations.get_alias(controller, name))


@router.patch("/aliases/{name}", responses=_refusals(404, 409, 422))
def update_alias(controller: Ctl, name: str, patch: AliasPatch) -> AliasView:
    return alias_view(controller, operations.update_alias(controller, name, patch))


@router.delete("/aliases/{name}", responses=_refusals(404, 422))
def delete_alias(controller: Ctl, name: str) -> AliasDeleted:
    operations.delete_alias(controller, name)
    return AliasDeleted(name=name, deleted=True)


@router.post("/shutdown", status_code=202, responses=_refusals())
def stop_controller(request: Request) -> Stopping:
    shutdown: Callable[[], None] | None = request.app.state.shutdown
    if shutdown is not None:
        shutdown()
    return Stopping()


def metrics(controller: Ctl) -> PlainTextResponse:
    """Every instance's metrics, labelled by instance, and the gateway's per node and alias."""
    return PlainTextResponse(controller.metrics(), media_type="text/plain; version=0.0.4")


async def _library_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Checkpoint2SvcError)
    return JSONResponse({"detail": str(exc)}, status_code=error_status(exc))


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """A body or parameter of the wrong shape: 422 naming each field, in the API's one error
    form (``{"detail": "..."}``): a body's are invalid node or alias settings, a query's or
    path's an invalid parameter."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    body = [error for error in errors if error["loc"][:1] == ("body",)]
    parameters = [error for error in errors if error["loc"][:1] != ("body",)]
    what = "alias" if request.url.path.startswith("/v1/aliases") else "node"
    details = [invalid_settings(what, body, skip=1)] if body else []
    if parameters:
        details.append(f"invalid parameter: {problems(parameters, skip=1)}")
    return JSONResponse({"detail": "; ".join(details)}, status_code=422)


def create_api(
    controller: Controller, token: str, shutdown: Callable[[], None] | None = None
) -> FastAPI:
    app = FastAPI(title="checkpoint2svc controller", version="1")
    app.state.controller = controller
    app.state.token = token
    app.state.shutdown = shutdown
    app.add_exception_handler(Checkpoint2SvcError, _library_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.include_router(router)
    app.add_api_route(
        "/metrics", metrics, methods=["GET"], dependencies=[Depends(_authorized)],
        response_class=PlainTextResponse, responses=_text_answers(),
    )  # fmt: skip
    return app
