"""One health probe of one instance, as the node's health check says: an HTTP GET or a gRPC
``grpc.health.v1.Health/Check``. Returns (passed, why not)."""

from __future__ import annotations

from checkpoint2svc.control.models import HealthCheck


def probe_http(host: str, port: int, check: HealthCheck) -> tuple[bool, str]:
    import httpx

    url = f"http://{host}:{port}{check.path}"
    try:
        response = httpx.get(url, timeout=check.timeout_s)
    except httpx.HTTPError as exc:
        return False, f"GET {check.path}: {type(exc).__name__}: {exc}"
    if 200 <= response.status_code < 300:
        return True, ""
    return False, f"GET {check.path} answered {response.status_code}: {response.text[:200]}"


def probe_grpc(host: str, port: int, check: HealthCheck) -> tuple[bool, str]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    request = health_pb2.HealthCheckRequest(service=check.grpc_service)
    try:
        with grpc.insecure_channel(f"{host}:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(request, timeout=check.timeout_s)
    except grpc.RpcError as exc:
        return False, f"gRPC health {check.grpc_service!r}: {exc.code().name}: {exc.details()}"
    if reply.status == health_pb2.HealthCheckResponse.SERVING:
        return True, ""
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return False, f"gRPC health {check.grpc_service!r}: {status}"


def probe(host: str, http_port: int, grpc_port: int | None, check: HealthCheck) -> tuple[bool, str]:
    if check.kind == "grpc":
        if grpc_port is None:
            return False, "the node has a gRPC health check but the instance no gRPC port"
        return probe_grpc(host, grpc_port, check)
    return probe_http(host, http_port, check)
