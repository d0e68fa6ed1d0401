"""The controller's REST API (FastAPI, 127.0.0.1 only, bearer token on every call)."""

from __future__ import annotations

import hmac
import time
from dataclasses import replace
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from checkpoint2svc.control.compat import node_signature, signature_differences
from checkpoint2svc.control.controller import Controller
from checkpoint2svc.control.models import AliasSpec, InstanceStatus, NodeSpec, NodeSpecError
from checkpoint2svc.control.store import (
    AliasExistsError,
    AliasNotFoundError,
    NodeExistsError,
    NodeNotFoundError,
    NodeRow,
)
from checkpoint2svc.errors import Checkpoint2SvcError

_bearer = HTTPBearer(auto_error=False)


def node_view(controller: Controller, row: NodeRow, events: int = 10) -> dict[str, Any]:
    instances = controller.node_instances(row.name)
    return {
        "name": row.name,
        "status": str(row.status),
        "suspended": row.suspended,
        "image": row.image or row.spec.image or "",
        "version": controller.desired_version(row),
        "build": controller.build_progress(row.name),  # the image build's last line, while it runs
        "spec": row.spec.to_dict(),
        "endpoint": {
            "rest": f"http://127.0.0.1:{controller.gateway_port}/datasphere/v1/nodes/"
            f"{row.name}:execute",
            "grpc": f"127.0.0.1:{controller.gateway_port} (metadata x-node-id: {row.name})",
        },
        "instances": [r.to_dict() for r in instances],
        "healthy_instances": sum(r.status == InstanceStatus.HEALTHY for r in instances),
        "events": [
            {"time": e.time, "instance": e.instance, "message": e.message}
            for e in controller.store.events(row.name, events)
        ],
        "created": row.created,
    }


def create_api(controller: Controller, token: str, shutdown: Any = None) -> FastAPI:
    app = FastAPI(title="checkpoint2svc controller", version="1")

    def authorized(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if credentials is None or not hmac.compare_digest(credentials.credentials, token):
            raise HTTPException(
                401,
                "missing or wrong bearer token: the CLI reads it from the controller's home "
                "(token file written by `checkpoint2svc up`)",
            )

    @app.exception_handler(Checkpoint2SvcError)
    async def library_error(request: Request, exc: Checkpoint2SvcError) -> JSONResponse:
        status = 400
        if isinstance(exc, NodeNotFoundError | AliasNotFoundError):
            status = 404
        elif isinstance(exc, NodeExistsError | AliasExistsError):
            status = 409
        elif isinstance(exc, NodeSpecError):
            status = 422
        return JSONResponse({"detail": str(exc)}, status_code=status)

    guard = [Depends(authorized)]

    @app.get("/v1/status", dependencies=guard)
    def status() -> dict[str, Any]:
        return {
            "controller_id": controller.controller_id,
            "gateway": f"127.0.0.1:{controller.gateway_port}",
            "nodes": len(controller.store.nodes()),
            "time": time.time(),
        }

    @app.post("/v1/nodes", dependencies=guard, status_code=201)
    def create_node(body: dict[str, Any]) -> dict[str, Any]:
        spec = NodeSpec.from_dict(body).validate()
        row = controller.store.add_node(spec)
        controller.event(spec.name, "node created")
        return node_view(controller, row)

    @app.get("/v1/nodes", dependencies=guard)
    def list_nodes() -> list[dict[str, Any]]:
        return [node_view(controller, row, events=0) for row in controller.store.nodes()]

    @app.get("/v1/nodes/{name}", dependencies=guard)
    def get_node(name: str, events: int = 10) -> dict[str, Any]:
        return node_view(controller, controller.store.node(name), events)

    @app.patch("/v1/nodes/{name}", dependencies=guard)
    def update_node(name: str, body: dict[str, Any]) -> dict[str, Any]:
        row = controller.store.node(name)
        merged = {**row.spec.to_dict(), **body, "name": name}
        spec = NodeSpec.from_dict(merged).validate()
        rebuild = spec.checkpoint != row.spec.checkpoint or spec.image != row.spec.image
        controller.store.update_node(name, spec=spec, image="" if rebuild else None)
        if rebuild:
            controller.retire_image(row)
        controller.event(name, f"node updated: {', '.join(sorted(body)) or 'nothing'}")
        return node_view(controller, controller.store.node(name))

    @app.post("/v1/nodes/{name}:suspend", dependencies=guard)
    def suspend(name: str) -> dict[str, Any]:
        controller.store.update_node(name, suspended=True)
        controller.event(name, "suspend requested")
        return node_view(controller, controller.store.node(name))

    @app.post("/v1/nodes/{name}:resume", dependencies=guard)
    def resume(name: str) -> dict[str, Any]:
        controller.store.update_node(name, suspended=False)
        controller.event(name, "resume requested")
        return node_view(controller, controller.store.node(name))

    @app.delete("/v1/nodes/{name}", dependencies=guard, status_code=202)
    def delete_node(name: str, force: bool = False) -> dict[str, Any]:
        controller.store.node(name)
        using = [a for a in controller.store.aliases() if name in dict(a.nodes)]
        if using and not force:
            raise HTTPException(
                409,
                f"alias {', '.join(a.name for a in using)} still points at node {name}; update "
                "the alias first, or pass --force to take the node out of it (its share goes to "
                "the alias's other nodes)",
            )
        for alias in using:
            rest = [(node, weight) for node, weight in alias.nodes if node != name]
            if not rest:
                controller.store.remove_alias(alias.name)
                continue
            total = sum(weight for _, weight in rest) or 1
            shares = [(node, weight * 100 // total) for node, weight in rest]
            shares[0] = (shares[0][0], shares[0][1] + 100 - sum(w for _, w in shares))
            controller.store.update_alias(replace(alias, nodes=tuple(shares)))
        controller.store.update_node(name, deleting=True)
        controller.event(name, "delete requested")
        return {"name": name, "status": "Deleting"}

    @app.get("/v1/nodes/{name}/logs", dependencies=guard, response_model=None)
    def logs(
        name: str, instance: str = "", tail: int = 100, follow: bool = False
    ) -> PlainTextResponse | StreamingResponse:
        controller.store.node(name)
        records = [r for r in controller.node_instances(name) if not instance or r.id == instance]
        if instance and not records:
            raise HTTPException(404, f"node {name} has no instance {instance!r}")
        if follow:
            if len(records) != 1:
                names = ", ".join(r.id for r in records) or "none"
                raise HTTPException(
                    422, f"--follow needs one instance: pass --instance (node {name} has {names})"
                )
            lines = controller.instance_logs(records[0].id, tail, follow=True)
            return StreamingResponse((line + "\n" for line in lines), media_type="text/plain")
        chunks = []
        for record in records:
            text = "\n".join(controller.instance_logs(record.id, tail))
            chunks.append(f"==> {record.id} <==\n{text}")
        return PlainTextResponse("\n".join(chunks) + "\n")

    def alias_view(alias: AliasSpec) -> dict[str, Any]:
        statuses = {row.name: str(row.status) for row in controller.store.nodes()}
        port = controller.gateway_port
        return {
            **alias.to_dict(),
            "node_status": {node: statuses.get(node, "missing") for node, _ in alias.nodes},
            "endpoint": {
                "rest": f"http://127.0.0.1:{port}/datasphere/v1/aliases/{alias.name}:execute",
                "grpc": f"127.0.0.1:{port} (metadata x-node-alias: {alias.name})",
            },
        }

    def checked_alias(body: dict[str, Any], current: AliasSpec | None) -> AliasSpec:
        alias = AliasSpec.from_dict(body).validate()
        for node, _ in alias.nodes:
            controller.store.node(node)  # raises naming an unknown node
        if body.get("allow_incompatible"):
            return alias
        reference = (current or alias).nodes[0][0]  # the node the alias's clients know
        base = node_signature(controller.store.node(reference).spec)
        for node, _ in alias.nodes:
            if base is None or node == reference:
                continue
            candidate = node_signature(controller.store.node(node).spec)
            if candidate is None:
                continue
            differences = signature_differences(base, candidate)
            if differences:
                raise HTTPException(
                    409,
                    f"node {node} is not compatible with alias {alias.name} (served by "
                    f"{reference}):\n"
                    + "\n".join(differences)
                    + "\npass --allow-incompatible to point the alias at it anyway",
                )
        return alias

    @app.post("/v1/aliases", dependencies=guard, status_code=201)
    def create_alias(body: dict[str, Any]) -> dict[str, Any]:
        alias = checked_alias(body, None)
        controller.store.add_alias(alias)
        controller.apply_gateway()
        return alias_view(alias)

    @app.get("/v1/aliases", dependencies=guard)
    def list_aliases() -> list[dict[str, Any]]:
        return [alias_view(alias) for alias in controller.store.aliases()]

    @app.get("/v1/aliases/{name}", dependencies=guard)
    def get_alias(name: str) -> dict[str, Any]:
        return alias_view(controller.store.alias(name))

    @app.patch("/v1/aliases/{name}", dependencies=guard)
    def update_alias(name: str, body: dict[str, Any]) -> dict[str, Any]:
        current = controller.store.alias(name)
        merged = {**current.to_dict(), **body, "name": name}
        alias = checked_alias(merged, current)
        controller.store.update_alias(alias)
        controller.apply_gateway()
        return alias_view(alias)

    @app.delete("/v1/aliases/{name}", dependencies=guard)
    def delete_alias(name: str) -> dict[str, Any]:
        controller.store.remove_alias(name)
        controller.apply_gateway()
        return {"name": name, "deleted": True}

    @app.get("/metrics", dependencies=guard)
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(controller.metrics(), media_type="text/plain; version=0.0.4")

    @app.post("/v1/shutdown", dependencies=guard, status_code=202)
    def stop_controller() -> dict[str, str]:
        if shutdown is not None:
            shutdown()
        return {"status": "stopping"}

    return app
