"""The backends' pure logic: state files, pid-reuse detection, log tails, labels, statuses."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from checkpoint2svc.backends import (
    InstanceHandle,
    InstanceSpec,
    RunState,
    RunStatus,
    create_backend,
    default_backend_name,
)
from checkpoint2svc.backends.docker import (
    CONTROLLER_LABEL,
    GRPC_PORT_LABEL,
    HTTP_PORT_LABEL,
    INSTANCE_LABEL,
    NODE_LABEL,
    DockerBackend,
    container_name,
    handle_from_attrs,
    instance_labels,
    run_status_from_attrs,
)
from checkpoint2svc.backends.local import (
    LocalBackend,
    LocalState,
    free_ports,
    is_alive,
    parse_proc_stat,
    read_proc_stat,
    shell_exit_code,
    tail_lines,
)
from checkpoint2svc.errors import BackendError, Checkpoint2SvcError

STATE = LocalState(
    instance_id="greeter-3f9a2c", node="greeter", controller_id="ctl-1", pid=4242,
    start_ticks=123456, http_port=40001, grpc_port=40002, created_at=1700000000.25,
    checkpoint="/ckpt/greeter.ckpt",
)  # fmt: skip


# --- local: state files -------------------------------------------------------------------
def test_state_file_round_trips(tmp_path: Path) -> None:
    assert LocalState.from_json(STATE.to_json(), tmp_path / "x.json") == STATE
    no_grpc = LocalState(**{**STATE.__dict__, "grpc_port": None})
    assert LocalState.from_json(no_grpc.to_json(), tmp_path / "x.json") == no_grpc


def test_state_handle_names_the_process() -> None:
    assert STATE.handle() == InstanceHandle(
        instance_id="greeter-3f9a2c", node="greeter", backend="local", ref="4242",
        host="127.0.0.1", http_port=40001, grpc_port=40002, created_at=1700000000.25,
    )  # fmt: skip


def test_a_malformed_state_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "instances" / "broken.json"
    with pytest.raises(BackendError, match=r"broken\.json is malformed.*delete the file"):
        LocalState.from_json('{"pid": "x"}', path)
    with pytest.raises(Checkpoint2SvcError):
        LocalState.from_json("not json", path)


def _write(backend: LocalBackend, state: LocalState) -> None:
    backend.state_dir.mkdir(parents=True, exist_ok=True)
    backend.state_path(state.instance_id).write_text(state.to_json())


def _gone_pid() -> tuple[int, int]:
    """A pid (and its start time) whose process has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    stat = read_proc_stat(process.pid)
    assert stat is not None
    process.kill()
    process.wait()
    return process.pid, stat.start_ticks


def test_list_returns_only_this_controllers_instances_and_skips_broken_files(
    tmp_path: Path,
) -> None:
    backend = LocalBackend(tmp_path)
    assert backend.list("ctl-1") == []
    other = LocalState(**{**STATE.__dict__, "instance_id": "other-1", "controller_id": "ctl-2"})
    later = LocalState(**{**STATE.__dict__, "instance_id": "greeter-b", "created_at": 1.7e9 + 9})
    for state in (later, STATE, other):
        _write(backend, state)
    (backend.state_dir / "broken.json").write_text("{")
    assert backend.list("ctl-1") == [STATE.handle(), later.handle()]
    assert backend.list("ctl-2") == [other.handle()]


def test_status_and_stop_of_a_process_that_is_gone(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    pid, ticks = _gone_pid()
    state = LocalState(**{**STATE.__dict__, "pid": pid, "start_ticks": ticks})
    _write(backend, state)
    backend.log_dir.mkdir()
    backend.log_path(state.instance_id).write_text("booting\nkilled\n")
    assert backend.status(state.handle()) == RunStatus(RunState.EXITED)  # not our child: no code
    assert list(backend.logs(state.handle(), tail=1)) == ["killed"]
    backend.stop(state.handle())
    assert not backend.state_path(state.instance_id).exists()
    assert not backend.log_path(state.instance_id).exists()
    assert backend.status(state.handle()) == RunStatus(RunState.MISSING)
    assert list(backend.logs(state.handle())) == []
    backend.stop(state.handle())  # idempotent


def test_start_needs_an_existing_checkpoint(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    spec = InstanceSpec(node="greeter", instance_id="greeter-1", controller_id="ctl-1")
    with pytest.raises(BackendError, match=r"has no checkpoint.*docker backend"):
        backend.start(spec)
    missing = InstanceSpec(**{**spec.__dict__, "checkpoint": tmp_path / "nope.ckpt"})
    with pytest.raises(BackendError, match=r"nope\.ckpt of node greeter is not a directory"):
        backend.start(missing)


# --- local: processes ---------------------------------------------------------------------
def test_proc_stat_parsing_survives_odd_command_names() -> None:
    line = "4242 (a) b) (c) S 1 4242 4242 0 -1 4194560 " + " ".join(["0"] * 12) + " 987654 rest"
    assert parse_proc_stat(line).state == "S"
    assert parse_proc_stat(line).start_ticks == 987654


def test_a_pid_is_ours_only_with_its_start_time() -> None:
    own = read_proc_stat(os.getpid())
    assert own is not None and own.state in "RS"
    assert is_alive(os.getpid(), own.start_ticks)
    assert not is_alive(os.getpid(), own.start_ticks + 1)  # a recycled pid
    assert not is_alive(*_gone_pid())


def test_exit_codes_read_like_a_shell() -> None:
    assert [shell_exit_code(c) for c in (0, 3, -9, -15)] == [0, 3, 137, 143]


def test_free_ports_are_distinct() -> None:
    ports = free_ports(3)
    assert len(set(ports)) == 3 and all(p > 0 for p in ports)


@pytest.mark.parametrize("block", [3, 8192])
def test_log_tail(block: int) -> None:
    def tail(data: bytes, count: int) -> tuple[list[str], bytes]:
        file = io.BytesIO(data)
        result = tail_lines(file, count, block=block)
        assert file.tell() == len(data)
        return result

    assert tail(b"", 5) == ([], b"")
    assert tail(b"one\ntwo\nthree\n", 2) == (["two", "three"], b"")
    assert tail(b"one\ntwo\nthree\n", 9) == (["one", "two", "three"], b"")
    assert tail(b"one\r\ntwo\nthr", 2) == (["two"], b"thr")
    assert tail(b"one\ntwo\n", 0) == ([], b"")
    long = b"".join(b"line %d\n" % i for i in range(1000))
    assert tail(long, 3) == (["line 997", "line 998", "line 999"], b"")


# --- docker: labels and statuses ----------------------------------------------------------
SPEC = InstanceSpec(
    node="greeter", instance_id="greeter-3f9a2c", controller_id="ctl-1",
    image="checkpoint2svc/greeter:1", env={"A": "1"},
)  # fmt: skip


def test_container_labels_name_controller_node_and_instance() -> None:
    labels = instance_labels(SPEC, 1700000000.5)
    assert labels[CONTROLLER_LABEL] == "ctl-1"
    assert labels[NODE_LABEL] == "greeter"
    assert labels[INSTANCE_LABEL] == "greeter-3f9a2c"
    assert labels[HTTP_PORT_LABEL] == "8080" and labels[GRPC_PORT_LABEL] == "9090"
    assert all(key.startswith("org.checkpoint2svc.") for key in labels)
    assert GRPC_PORT_LABEL not in instance_labels(
        InstanceSpec(**{**SPEC.__dict__, "grpc_port": None}), 0
    )
    assert container_name("greeter-3f9a2c") == "c2s-greeter-3f9a2c"


def _attrs(status: str, exit_code: int, ports: dict[str, object] | None) -> dict[str, object]:
    return {
        "Id": "c0ffee" * 10,
        "Config": {"Labels": {**instance_labels(SPEC, 1700000000.5), "other": "x"}},
        "NetworkSettings": {"Ports": ports},
        "State": {"Status": status, "ExitCode": exit_code},
    }


def test_handle_from_a_running_container() -> None:
    ports = {
        "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32768"}],
        "9090/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32769"}],
    }
    assert handle_from_attrs(_attrs("running", 0, ports)) == InstanceHandle(
        instance_id="greeter-3f9a2c", node="greeter", backend="docker", ref="c0ffee" * 10,
        host="127.0.0.1", http_port=32768, grpc_port=32769, created_at=1700000000.5,
    )  # fmt: skip


def test_handle_from_an_exited_container_has_no_ports() -> None:
    handle = handle_from_attrs(_attrs("exited", 137, {}))
    assert (handle.http_port, handle.grpc_port) == (0, 0)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        ("created", 0, RunStatus(RunState.CREATED)),
        ("running", 0, RunStatus(RunState.RUNNING)),
        ("restarting", 1, RunStatus(RunState.RUNNING)),
        ("exited", 137, RunStatus(RunState.EXITED, 137)),
        ("dead", 1, RunStatus(RunState.EXITED, 1)),
    ],
)
def test_run_status_from_container_state(status: str, code: int, expected: RunStatus) -> None:
    assert run_status_from_attrs(_attrs(status, code, None)) == expected


# --- choosing a backend -------------------------------------------------------------------
def test_create_backend(tmp_path: Path) -> None:
    local = create_backend("local", tmp_path)
    assert isinstance(local, LocalBackend) and local.state_dir == tmp_path / "instances"
    assert isinstance(create_backend("docker", tmp_path), DockerBackend)  # connects lazily
    with pytest.raises(BackendError, match="unknown backend 'k8s'; choose one of docker, local"):
        create_backend("k8s", tmp_path)


def test_without_an_engine_the_default_backend_is_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    assert default_backend_name() == "local"


def test_telemetry_and_health_ports_are_labelled_and_their_host_ports_found_again() -> None:
    exporter = InstanceSpec(
        **{**SPEC.__dict__, "grpc_port": None, "metrics_port": 9100, "health_port": 9101}
    )
    attrs = {
        "Id": "c0ffee" * 10,
        "Config": {"Labels": instance_labels(exporter, 1700000000.5)},
        "NetworkSettings": {"Ports": {
            "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32768"}],
            "9100/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32770"}],
            "9101/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32771"}],
        }},
        "State": {"Status": "running", "ExitCode": 0},
    }  # fmt: skip
    handle = handle_from_attrs(attrs)
    assert (handle.http_port, handle.grpc_port) == (32768, None)
    assert (handle.metrics_port, handle.health_port) == (32770, 32771)
    plain = handle_from_attrs(_attrs("running", 0, {}))
    assert (plain.metrics_port, plain.health_port) == (0, 0)  # none: the serving ports
