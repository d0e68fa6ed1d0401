"""Run a freshly built image and replay the pinned examples over REST and gRPC.

The container publishes its ports on 127.0.0.1 only, and is removed whatever happens.
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from checkpoint2svc.checkpoint.manifest import Manifest
from checkpoint2svc.errors import ImageSelfTestError
from checkpoint2svc.execution.differences import output_differences
from checkpoint2svc.image.engine import Progress
from checkpoint2svc.image.labels import GRPC_PORT, HTTP_PORT
from checkpoint2svc.wire.json_values import reencode

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

ROLE_LABEL = "org.checkpoint2svc.role"


@dataclass(frozen=True)
class RunningContainer:
    container: Container
    http_url: str
    grpc_target: str
    not_ready_reason: str = ""
    """Empty when ``/readyz`` answered 200; else why the instance says it is not ready."""


@dataclass(frozen=True)
class SelfTestReport:
    seconds_to_ready: float
    protocols: tuple[str, ...]


def _published_port(container: Container, port: int) -> int:
    bindings = container.attrs["NetworkSettings"]["Ports"].get(f"{port}/tcp") or []
    return int(bindings[0]["HostPort"])


def _log_tail(container: Container, lines: int = 30) -> str:
    text: str = container.logs(tail=lines).decode(errors="replace")
    return text.rstrip() or "(no output)"


@contextmanager
def running_container(
    client: docker.DockerClient,
    image: str,
    timeout: float = 180,
    environment: dict[str, str] | None = None,
    accept_failed_self_test: bool = False,
) -> Iterator[RunningContainer]:
    """Start ``image`` with its ports on 127.0.0.1 and wait until ``/readyz`` answers 200.

    An instance whose own self-test failed never becomes ready; with
    ``accept_failed_self_test`` it is yielded anyway (with the reason), else that is an error.
    """
    import httpx

    container = client.containers.run(
        image, detach=True, labels={ROLE_LABEL: "self-test"}, environment=environment or {},
        ports={f"{HTTP_PORT}/tcp": ("127.0.0.1", None), f"{GRPC_PORT}/tcp": ("127.0.0.1", None)},
    )  # fmt: skip
    try:
        container.reload()
        running = RunningContainer(
            container,
            f"http://127.0.0.1:{_published_port(container, HTTP_PORT)}",
            f"127.0.0.1:{_published_port(container, GRPC_PORT)}",
        )
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            try:
                response = httpx.get(f"{running.http_url}/readyz", timeout=5)
                if response.status_code == 200:
                    break
                last = f"/readyz answered {response.status_code}: {response.text[:300]}"
                reason = _failed_self_test(response)
                if reason and accept_failed_self_test:
                    running = RunningContainer(
                        container, running.http_url, running.grpc_target, reason
                    )
                    break
                if reason:
                    raise ImageSelfTestError(
                        f"the instance reports {reason}\ncontainer log:\n{_log_tail(container)}"
                    )
            except httpx.TransportError as exc:
                last = f"/readyz: {exc!r}"
            container.reload()
            if container.status in ("exited", "dead"):
                code = container.attrs["State"]["ExitCode"]
                raise ImageSelfTestError(
                    f"the container exited with code {code} before it was ready; its last "
                    f"lines:\n{_log_tail(container)}"
                )
            if time.monotonic() > deadline:
                raise ImageSelfTestError(
                    f"the container was not ready within {timeout:.0f} s ({last}); its last "
                    f"lines:\n{_log_tail(container)}"
                )
            time.sleep(0.2)
        yield running
    finally:
        container.remove(force=True)


def _failed_self_test(response: Any) -> str:
    try:
        reason = str(response.json().get("reason", ""))
    except ValueError:
        return ""
    return reason if reason.startswith("self-test failed") else ""


def canonical_outputs(manifest: Manifest, outputs: dict[str, Any]) -> dict[str, Any]:
    """Outputs in the manifest's example form (tensors as b64; whole doubles as ints)."""
    canonical = {}
    for variable in manifest.outputs:
        served = whole_numbers(outputs.get(variable.name))
        canonical[variable.name] = reencode(served, variable.type, variable.name)
    return canonical


def whole_numbers(data: Any) -> Any:
    """google.protobuf.Struct carries every number as a double."""
    if isinstance(data, float) and data.is_integer():
        return int(data)
    if isinstance(data, list):
        return [whole_numbers(v) for v in data]
    if isinstance(data, dict):
        return {k: whole_numbers(v) for k, v in data.items()}
    return data


def _check_outputs(
    manifest: Manifest, expected: dict[str, Any], served: dict[str, Any], protocol: str
) -> None:
    """Raise when ``served`` differs from the pinned example (in form only, for a cell pinned
    as non-deterministic), with what differs and the diff of the JSON."""
    types = {v.name: v.type for v in manifest.outputs}
    differences = output_differences(expected, served, types, form_only=not manifest.deterministic)
    if differences:
        raise ImageSelfTestError(
            "; ".join(differences) + "\n" + outputs_diff(expected, served, protocol)
        )


def outputs_diff(expected: dict[str, Any], served: dict[str, Any], protocol: str) -> str:
    """A unified diff of pretty JSON, naming the outputs that differ."""
    differing = sorted(k for k in expected if expected.get(k) != served.get(k))
    before, after = (
        json.dumps(d, indent=2, sort_keys=True).splitlines() for d in (expected, served)
    )
    diff = difflib.unified_diff(
        before, after, "pinned example outputs", f"served over {protocol}", lineterm="", n=2
    )
    return f"{', '.join(differing)} differ over {protocol}:\n" + "\n".join(diff)


def self_test_image(
    client: docker.DockerClient,
    image: str,
    manifest: Manifest,
    generated_dir: Path,
    progress: Progress | None = None,
) -> SelfTestReport:
    """Replay the pinned examples against a container of ``image``; raise on any difference."""
    import grpc
    import httpx
    from google.protobuf import json_format

    from checkpoint2svc.wire.proto_values import import_generated

    inputs = {v.name: v.example for v in manifest.inputs}
    expected = {v.name: v.example for v in manifest.outputs}
    started = time.monotonic()
    # A shared-mode service would count the REST replay into the gRPC one: the self-test checks
    # the image's contents (state, code, requirements), so it runs each call from the pinned state.
    isolated = {"CHECKPOINT2SVC_MODE": "isolated"}
    with running_container(
        client, image, environment=isolated, accept_failed_self_test=True
    ) as running:
        ready = time.monotonic() - started
        if progress:
            state = f"up, {running.not_ready_reason}," if running.not_ready_reason else "ready"
            progress(f"self-test: container {state} in {ready:.1f} s; replaying the pinned example")
        response = httpx.post(f"{running.http_url}/execute", json={"input": inputs}, timeout=120)
        if response.status_code != 200:
            raise ImageSelfTestError(
                f"POST /execute answered {response.status_code}: {response.text[:2000]}\n"
                f"container log:\n{_log_tail(running.container)}"
            )
        served = canonical_outputs(manifest, response.json()["output"])
        _check_outputs(manifest, expected, served, "REST")
        node_service = import_generated(
            "yandex.cloud.datasphere.v1.node_service_pb2", generated_dir
        )
        request = node_service.NodeExecutionRequest()
        json_format.ParseDict(inputs, request.input)
        with grpc.insecure_channel(
            running.grpc_target, options=[("grpc.max_receive_message_length", -1)]
        ) as channel:
            execute = channel.unary_unary(
                "/yandex.cloud.datasphere.v1.NodeService/Execute",
                request_serializer=node_service.NodeExecutionRequest.SerializeToString,
                response_deserializer=node_service.NodeExecutionResponse.FromString,
            )
            try:
                reply = execute(request, timeout=120)
            except grpc.RpcError as exc:
                raise ImageSelfTestError(
                    f"gRPC NodeService/Execute failed: {exc.code().name}: {exc.details()}"
                ) from None
        served = canonical_outputs(manifest, json_format.MessageToDict(reply.output))
        _check_outputs(manifest, expected, served, "gRPC")
        if running.not_ready_reason:
            raise ImageSelfTestError(f"the instance reports {running.not_ready_reason}")
    return SelfTestReport(seconds_to_ready=ready, protocols=("REST", "gRPC"))
