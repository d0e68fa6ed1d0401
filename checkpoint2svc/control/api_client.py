"""The controller's API as the CLI, the deployer and the notebook magic call it (typed: each
method returns a view of ``control.views``); starting and stopping the controller."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from checkpoint2svc.backends.local import read_proc_stat
from checkpoint2svc.control.home import ControllerInfo, Home
from checkpoint2svc.control.models import NodeSpec
from checkpoint2svc.control.views import (
    AliasCreate,
    AliasDeleted,
    AliasPatch,
    AliasView,
    Body,
    ControllerStatus,
    ErrorView,
    NodeDeleted,
    NodePatch,
    NodeView,
    Stopping,
)
from checkpoint2svc.errors import Checkpoint2SvcError


class ControllerNotRunningError(Checkpoint2SvcError):
    def __init__(self, home: Home, detail: str = "") -> None:
        super().__init__(
            f"the controller of {home.root} is not running{detail}; start it with "
            f"`checkpoint2svc up --home {home.root}`"
        )


class ControllerError(Checkpoint2SvcError):
    """The controller refused a request; the message is its explanation."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


T = TypeVar("T", bound=BaseModel)


class ControllerClient:
    """The controller's API, typed: each method is one route and returns its view."""

    def __init__(
        self, home: Home, timeout: float = 30, transport: httpx.BaseTransport | None = None
    ) -> None:
        info = home.read_info()
        if info is None:
            raise ControllerNotRunningError(home)
        self.home = home
        self.info = info
        token = home.token() if home.token_file.exists() else ""
        self._http = httpx.Client(
            base_url=info.api_url, timeout=timeout, transport=transport,
            headers={"authorization": f"Bearer {token}"},
        )  # fmt: skip

    # --- the controller ---------------------------------------------------------------------
    def status(self) -> ControllerStatus:
        return self._call(ControllerStatus, "GET", "/v1/status")

    def metrics(self) -> str:
        return self._send("GET", "/metrics").text

    def shutdown(self) -> Stopping:
        return self._call(Stopping, "POST", "/v1/shutdown")

    # --- nodes ------------------------------------------------------------------------------
    def nodes(self) -> list[NodeView]:
        return _read(_NODES.validate_json, self._send("GET", "/v1/nodes"))

    def node(self, name: str, events: int = 10) -> NodeView:
        return self._call(NodeView, "GET", _path("nodes", name), params={"events": events})

    def find_node(self, name: str, events: int = 10) -> NodeView | None:
        """The node, or None if there is none of that name."""
        return _unless_missing(lambda: self.node(name, events))

    def create_node(self, spec: NodeSpec) -> NodeView:
        return self._call(NodeView, "POST", "/v1/nodes", body=spec.to_json())

    def update_node(self, name: str, patch: NodePatch) -> NodeView:
        return self._call(NodeView, "PATCH", _path("nodes", name), body=_changes(patch))

    def suspend_node(self, name: str) -> NodeView:
        return self._call(NodeView, "POST", _path("nodes", name) + ":suspend")

    def resume_node(self, name: str) -> NodeView:
        return self._call(NodeView, "POST", _path("nodes", name) + ":resume")

    def delete_node(self, name: str, force: bool = False) -> NodeDeleted:
        return self._call(NodeDeleted, "DELETE", _path("nodes", name), params={"force": force})

    def node_logs(self, name: str, instance: str = "", tail: int = 100) -> str:
        params: dict[str, str | int | bool] = {"instance": instance, "tail": tail, "follow": False}
        return self._send("GET", _path("nodes", name) + "/logs", params=params).text

    def follow_node_logs(self, name: str, instance: str, tail: int = 100) -> Iterator[str]:
        """One instance's log lines as they come (``node logs --follow``)."""
        params: dict[str, str | int | bool] = {"instance": instance, "tail": tail, "follow": True}
        path = _path("nodes", name) + "/logs"
        with self._http.stream("GET", path, params=params, timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                raise _refusal(response)
            yield from response.iter_lines()

    # --- aliases ----------------------------------------------------------------------------
    def aliases(self) -> list[AliasView]:
        return _read(_ALIASES.validate_json, self._send("GET", "/v1/aliases"))

    def alias(self, name: str) -> AliasView:
        return self._call(AliasView, "GET", _path("aliases", name))

    def find_alias(self, name: str) -> AliasView | None:
        """The alias, or None if there is none of that name."""
        return _unless_missing(lambda: self.alias(name))

    def create_alias(self, body: AliasCreate) -> AliasView:
        return self._call(AliasView, "POST", "/v1/aliases", body=_changes(body))

    def update_alias(self, name: str, patch: AliasPatch) -> AliasView:
        return self._call(AliasView, "PATCH", _path("aliases", name), body=_changes(patch))

    def delete_alias(self, name: str) -> AliasDeleted:
        return self._call(AliasDeleted, "DELETE", _path("aliases", name))

    # --- transport --------------------------------------------------------------------------
    def _call(
        self, view: type[T], method: str, path: str, *,
        body: str | None = None, params: Mapping[str, str | int | bool] | None = None,
    ) -> T:  # fmt: skip
        return _read(view.model_validate_json, self._send(method, path, body=body, params=params))

    def _send(
        self, method: str, path: str, *,
        body: str | None = None, params: Mapping[str, str | int | bool] | None = None,
    ) -> httpx.Response:  # fmt: skip
        """One call; ``body`` is JSON text. A refusal raises ``ControllerError``."""
        headers = {"content-type": "application/json"} if body is not None else None
        try:
            response = self._http.request(
                method, path, content=body, params=params, headers=headers
            )
        except httpx.TransportError as exc:
            raise ControllerNotRunningError(
                self.home, f" (no answer at {self.info.api_url}: {exc})"
            ) from None
        if response.status_code >= 400:
            raise _refusal(response)
        return response


_NODES = TypeAdapter(list[NodeView])
_ALIASES = TypeAdapter(list[AliasView])

V = TypeVar("V")


def _read(parse: Callable[[bytes], V], response: httpx.Response) -> V:
    """The answer, parsed into its view; one this version cannot read (a controller of another
    version still runs) raises ``ControllerError`` saying to restart it, not a traceback."""
    try:
        return parse(response.content)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the answer"
        raise ControllerError(
            response.status_code,
            f"the controller answered {response.request.method} {response.request.url.path} "
            f"in a form this checkpoint2svc version does not read ({where}: {first['msg']}); "
            "restart it: `checkpoint2svc down && checkpoint2svc up`",
        ) from None


def _changes(body: Body) -> str:
    """A body with only the fields that were given (a patch leaves the others as they are)."""
    return body.model_dump_json(exclude_unset=True)


def _path(kind: str, name: str) -> str:
    return f"/v1/{kind}/{urllib.parse.quote(name, safe='')}"


def _refusal(response: httpx.Response) -> ControllerError:
    try:
        detail = ErrorView.model_validate_json(response.content).detail
    except ValueError:
        detail = response.text
    return ControllerError(response.status_code, detail)


def _unless_missing(get: Callable[[], T]) -> T | None:
    try:
        return get()
    except ControllerError as exc:
        if exc.status == 404:
            return None
        raise


def start_controller(
    home: Home, api_port: int, gateway_port: int, timeout: float = 60
) -> ControllerInfo:
    """Start the controller detached from this process and wait until its API answers."""
    running = home.read_info()
    if running is not None and _alive(running.pid):
        raise Checkpoint2SvcError(
            f"a controller already runs for {home.root} (pid {running.pid}, API "
            f"{running.api_url}); `checkpoint2svc down --home {home.root}` stops it"
        )
    _check_ports_free(home, api_port, gateway_port)
    home.prepare()
    with home.log_file.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "checkpoint2svc.control.daemon", "--home", str(home.root),
             "--port", str(api_port), "--gateway-port", str(gateway_port)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = home.log_file.read_text(errors="replace").splitlines()[-20:]
            raise Checkpoint2SvcError(
                f"the controller exited at start (code {process.returncode}); its log:\n"
                + "\n".join(tail)
            )
        info = home.read_info()
        if info is not None and info.pid == process.pid:
            try:
                ControllerClient(home, timeout=2).status()
                return info
            except Checkpoint2SvcError:
                pass
        time.sleep(0.2)
    raise Checkpoint2SvcError(
        f"the controller did not answer within {timeout:.0f} s; see {home.log_file}"
    )


def _answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _check_ports_free(home: Home, api_port: int, gateway_port: int) -> None:
    """Refuse ports another program listens on (HAProxy would even share one): the gateway's
    may be taken only by this home's own gateway, which the controller adopts."""
    from checkpoint2svc.gateway.haproxy import Gateway

    if _answers(api_port):
        raise Checkpoint2SvcError(
            f"port {api_port} for the controller's API is in use by another program; pass "
            "--port with a free one (or stop the controller of another home with `checkpoint2svc "
            "down --home DIR`)"
        )
    if _answers(gateway_port) and not Gateway(home.gateway_dir).running():
        raise Checkpoint2SvcError(
            f"port {gateway_port} for the gateway is in use by another program; pass "
            "--gateway-port with a free one (or stop the controller of another home with "
            "`checkpoint2svc down --all --home DIR`)"
        )


def delete_all_nodes(home: Home, timeout: float = 120) -> None:
    """Delete every alias and node; wait until the controller has removed what they created."""
    client = ControllerClient(home)
    for alias in client.aliases():
        client.delete_alias(alias.name)
    for node in client.nodes():
        client.delete_node(node.name)
    deadline = time.monotonic() + timeout
    while client.nodes():
        if time.monotonic() > deadline:
            raise Checkpoint2SvcError(f"nodes were still being deleted after {timeout:.0f} s")
        time.sleep(0.2)


def stop_controller(home: Home, timeout: float = 30, everything: bool = False) -> bool:
    """Ask the controller to stop (SIGTERM by pid if its API does not answer); wait for it.

    Its nodes and the gateway keep running for the next ``up`` to adopt, unless ``everything``:
    then the nodes are deleted first and the gateway is stopped after.
    """
    info = home.read_info()
    if info is None or not _alive(info.pid):
        if everything:
            _stop_gateway(home)
        return False
    failure: Checkpoint2SvcError | None = None
    if everything:
        try:
            delete_all_nodes(home)
        except Checkpoint2SvcError as exc:  # still stop the controller; report it after
            failure = exc
    try:
        ControllerClient(home, timeout=5).shutdown()
    except Checkpoint2SvcError:
        os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(info.pid):
        time.sleep(0.1)
    if _alive(info.pid):
        os.kill(info.pid, signal.SIGKILL)
    if everything:
        _stop_gateway(home)
    if failure is not None:
        raise Checkpoint2SvcError(
            f"the controller stopped, but not every node was deleted: {failure}"
        )
    return True


def _stop_gateway(home: Home) -> None:
    from checkpoint2svc.gateway.haproxy import Gateway

    gateway = Gateway(home.gateway_dir)
    if gateway.adopt():
        gateway.stop()
    if not home.gateway_dir.is_relative_to(home.root):  # the short directory of a deep home
        shutil.rmtree(home.gateway_dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped by its parent, does not)."""
    stat = read_proc_stat(pid)
    return stat is not None and stat.state not in ("Z", "X")
