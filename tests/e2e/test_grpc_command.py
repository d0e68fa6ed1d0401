"""`checkpoint2svc grpc`, the real command in a subprocess: list, describe and call real instances
knowing no .proto (only what server reflection says), and through the real gateway with `-H`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checkpoint2svc.checkpoint import Checkpoint, Manifest
from checkpoint2svc.control.api_client import stop_controller
from checkpoint2svc.image.self_test import whole_numbers
from tests.e2e.cli import assert_clean_failure, cli
from tests.e2e.instance import Instance
from tests.e2e.test_nodes import Controller

pytestmark = pytest.mark.slow

NODE_SERVICE = "yandex.cloud.datasphere.v1.NodeService"
GREET_SERVICE = "checkpoint2svc.generated.greet.GreetService"
SERVICES = [
    GREET_SERVICE,
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    NODE_SERVICE,
]


def examples(manifest: Manifest) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pinned example inputs and outputs (the greeter's are plain JSON)."""
    return (
        {v.name: v.example for v in manifest.inputs},
        {v.name: v.example for v in manifest.outputs},
    )


def answer(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def greeter(pinned: dict[str, Checkpoint]) -> Iterator[Instance]:
    instance = Instance(pinned["greeter"].path)
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def classifier(pinned: dict[str, Checkpoint]) -> Iterator[Instance]:
    """The greeter cannot raise on valid input; the classifier does on a short feature list."""
    instance = Instance(pinned["classifier"].path)
    try:
        yield instance
    finally:
        instance.stop()


def test_list_prints_the_services_sorted(greeter: Instance) -> None:
    done = cli("grpc", greeter.grpc_target, "list")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == SERVICES


def test_describe_shows_methods_messages_and_request_fields(greeter: Instance) -> None:
    done = cli("grpc", greeter.grpc_target, "describe", NODE_SERVICE)
    assert done.returncode == 0, done.stderr
    lines = [line.strip() for line in done.stdout.splitlines()]
    assert lines[0] == NODE_SERVICE
    assert (
        "rpc Execute(yandex.cloud.datasphere.v1.NodeExecutionRequest) "
        "returns (yandex.cloud.datasphere.v1.NodeExecutionResponse)"
    ) in lines
    assert (
        "rpc ExecuteAlias(yandex.cloud.datasphere.v1.AliasExecutionRequest) "
        "returns (yandex.cloud.datasphere.v1.AliasExecutionResponse)"
    ) in lines
    for field in ("folder_id: string", "node_id: string", "alias_name: string"):
        assert field in lines
    assert "input: google.protobuf.Struct" in lines


def test_typed_and_node_service_calls_give_the_pinned_outputs(
    greeter: Instance, pinned: dict[str, Checkpoint]
) -> None:
    inputs, outputs = examples(pinned["greeter"].manifest)
    typed = answer(cli("grpc", greeter.grpc_target, f"{GREET_SERVICE}/Execute",
                       "-d", json.dumps(inputs)))  # fmt: skip
    # `message` is a proto keyword, so the field is `message_`; int64 is a JSON string.
    assert {"message": typed["message_"], "scaled": [int(v) for v in typed["scaled"]]} == outputs

    generic = answer(cli("grpc", greeter.grpc_target, f"{NODE_SERVICE}/Execute",
                         "-d", json.dumps({"node_id": "greet", "input": inputs})))  # fmt: skip
    assert whole_numbers(generic["output"]) == outputs


def test_the_request_comes_from_a_file_or_standard_input(greeter: Instance, tmp_path: Path) -> None:
    request = {"input": {"name": "Bo", "values": [2]}}
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    from_file = answer(
        cli("grpc", greeter.grpc_target, f"{NODE_SERVICE}/Execute", "-d", f"@{path}")
    )
    from_stdin = answer(subprocess.run(
        [sys.executable, "-m", "checkpoint2svc", "grpc", greeter.grpc_target,
         f"{NODE_SERVICE}/Execute", "-d", "-"],
        input=json.dumps(request), capture_output=True, text=True, timeout=120, check=False,
    ))  # fmt: skip
    assert from_file == from_stdin == {"output": {"message": "Hello, Bo!", "scaled": [6.0]}}

    missing = assert_clean_failure(
        cli("grpc", greeter.grpc_target, f"{NODE_SERVICE}/Execute", "-d", f"@{tmp_path / 'no'}")
    )
    assert str(tmp_path / "no") in missing


def test_a_cell_error_prints_the_code_and_the_cells_traceback(classifier: Instance) -> None:
    stderr = assert_clean_failure(cli(
        "grpc", classifier.grpc_target, f"{NODE_SERVICE}/Execute",
        "-d", '{"input": {"features": [1.0]}}',
    ))  # fmt: skip
    assert f"INTERNAL from {classifier.grpc_target}: the cell raised ValueError: " in stderr
    assert "model.predict_proba" in stderr  # the cell's traceback, from the status details

    invalid = assert_clean_failure(cli(
        "grpc", classifier.grpc_target, f"{NODE_SERVICE}/Execute",
        "-d", '{"input": {"features": [1.0, "x", 2.0, 3.0]}}',
    ))  # fmt: skip
    assert "INVALID_ARGUMENT" in invalid
    assert "input.features[1]: expected a number" in invalid


def test_an_unknown_method_or_service_lists_the_available_ones(greeter: Instance) -> None:
    method = assert_clean_failure(cli("grpc", greeter.grpc_target, f"{NODE_SERVICE}/Exec"))
    assert "'Exec'" in method and "Execute, ExecuteAlias" in method

    service = assert_clean_failure(cli("grpc", greeter.grpc_target, "nope.Service/Execute"))
    assert "'nope.Service'" in service and ", ".join(SERVICES) in service

    streaming = assert_clean_failure(
        cli("grpc", greeter.grpc_target, "grpc.health.v1.Health/Watch")
    )
    assert "streaming" in streaming


def test_bad_json_and_a_field_not_in_the_message_are_named(greeter: Instance) -> None:
    execute = f"{NODE_SERVICE}/Execute"
    field = assert_clean_failure(cli("grpc", greeter.grpc_target, execute, "-d", '{"inptu": {}}'))
    assert '"inptu"' in field and "NodeExecutionRequest" in field

    typed = assert_clean_failure(cli("grpc", greeter.grpc_target, f"{GREET_SERVICE}/Execute",
                                     "-d", '{"name": "Ada", "values": ["x"]}'))  # fmt: skip
    assert "values" in typed

    broken = assert_clean_failure(cli("grpc", greeter.grpc_target, execute, "-d", '{"input": '))
    assert "not valid JSON" in broken


def test_an_unreachable_target_is_named() -> None:
    with socket.socket() as bound:  # bound, never listening: no one else can take the port
        bound.bind(("127.0.0.1", 0))
        target = f"127.0.0.1:{bound.getsockname()[1]}"
        stderr = assert_clean_failure(cli("grpc", target, "list"))
    assert f"cannot reach {target}" in stderr and "running" in stderr


@pytest.fixture
def gateway(tmp_path: Path, pinned: dict[str, Checkpoint]) -> Iterator[Controller]:
    """A controller with the greeter as node `greeter` (local backend) behind alias `greet`."""
    running = Controller(tmp_path / "home")
    try:
        done = running.cli("node", "create", "greeter", "--checkpoint", pinned["greeter"].path,
                           "--backend", "local", "--wait")  # fmt: skip
        assert done.returncode == 0, done.stderr
        done = running.cli("alias", "create", "greet", "--node", "greeter=100")
        assert done.returncode == 0, done.stderr
        yield running
    finally:
        stop_controller(running.home, everything=True)


def test_through_the_gateway_every_call_carries_the_metadata(
    gateway: Controller, pinned: dict[str, Checkpoint]
) -> None:
    alias = ("-H", "x-node-alias: greet")
    listed = cli("grpc", gateway.grpc_target, "list", *alias)  # reflection, routed by -H
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == SERVICES

    inputs, outputs = examples(pinned["greeter"].manifest)
    done = cli("grpc", gateway.grpc_target, f"{NODE_SERVICE}/Execute", *alias,
               "-d", json.dumps({"input": inputs}))  # fmt: skip
    assert whole_numbers(answer(done)["output"]) == outputs

    by_node = cli("grpc", gateway.grpc_target, f"{GREET_SERVICE}/Execute",
                  "-H", "x-node-id: greeter", "-d", json.dumps(inputs))  # fmt: skip
    assert answer(by_node)["message_"] == outputs["message"]

    for _ in range(5):  # the gateway answers a stream before it ends: the status must not be lost
        unknown = assert_clean_failure(
            cli("grpc", gateway.grpc_target, "list", "-H", "x-node-alias: nope")
        )
        assert f"NOT_FOUND from {gateway.grpc_target}" in unknown
        assert "no alias named nope" in unknown

    unrouted = assert_clean_failure(cli("grpc", gateway.grpc_target, "list"))
    assert "INVALID_ARGUMENT" in unrouted and "x-node-id" in unrouted
