"""One health probe of one instance, as the node's health check says: an HTTP GET or a gRPC
``grpc.health.v1.Health/Check``. Returns (passed, why not).

``probe`` holds the rule (which port, which kind of check, what passes, what the user reads);
it asks one port through ``http_get`` or ``grpc_check``, which only carry the question there and
bring the answer back. The in-process tests pass the memory backend's answers for these two.
"""

from __future__ import annotations

from collections.abc import Callable

from checkpoint2svc.control.models import HealthCheck, InstanceRecord, NodeSpec

HttpGet = Callable[[str, int, HealthCheck], tuple[int, str]]
"""GET the check's path at (host, port): (status code, body). Raises ``OSError`` saying why when
nothing answers."""
GrpcCheck = Callable[[str, int, HealthCheck], str]
"""``Health/Check`` of the check's service at (host, port): the serving status's name
(``SERVING``, ``NOT_SERVING``) or the failed call's ``CODE: details``. Raises ``OSError`` saying
why when nothing answers."""


def get_with_httpx(host: str, port: int, check: HealthCheck) -> tuple[int, str]:
    import httpx

    try:
        response = httpx.get(f"http://{host}:{port}{check.path}", timeout=check.timeout_s)
    except httpx.HTTPError as exc:
        raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
    return response.status_code, response.text


def check_with_grpc(host: str, port: int, check: HealthCheck) -> str:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    request = health_pb2.HealthCheckRequest(service=check.grpc_service)
    try:
        with grpc.insecure_channel(f"{host}:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(request, timeout=check.timeout_s)
    except grpc.RpcError as exc:
        return f"{exc.code().name}: {exc.details()}"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def probe(
    record: InstanceRecord,
    spec: NodeSpec,
    http_get: HttpGet = get_with_httpx,
    grpc_check: GrpcCheck = check_with_grpc,
) -> tuple[bool, str]:
    """``spec``'s health check of the instance ``record``: at its health port when it has one
    (for either kind of check), else at its HTTP port, or for a gRPC check at its gRPC port (a
    gRPC node serves gRPC at its main port)."""
    check = spec.health
    http_port = record.http_port
    grpc_port = record.grpc_port if spec.protocol == "http" else record.http_port
    if record.handle.health_port:
        http_port = grpc_port = record.handle.health_port
    if check.kind == "grpc":
        if grpc_port is None:
            return False, "the node has a gRPC health check but the instance no gRPC port"
        try:
            status = grpc_check(record.host, grpc_port, check)
        except OSError as exc:
            status = str(exc)
        if status == "SERVING":
            return True, ""
        return False, f"gRPC health {check.grpc_service!r}: {status}"
    try:
        code, text = http_get(record.host, http_port, check)
    except OSError as exc:
        return False, f"GET {check.path}: {exc}"
    if 200 <= code < 300:
        return True, ""
    return False, f"GET {check.path} answered {code}: {text[:200]}"
