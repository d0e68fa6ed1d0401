"""The controller process: store + reconcile loop + gateway + REST API, until SIGTERM.

Run by ``checkpoint2svc up`` as ``python -m checkpoint2svc.control.daemon --home DIR ...``.
Stopping it leaves the instances and the gateway running: the next start adopts them.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from checkpoint2svc.control.controller import Controller
from checkpoint2svc.control.home import (
    DEFAULT_API_PORT,
    DEFAULT_GATEWAY_PORT,
    ControllerInfo,
    Home,
)
from checkpoint2svc.control.models import NodeSpec
from checkpoint2svc.control.store import Store

log = logging.getLogger("checkpoint2svc.controller")


def build_node_image(spec: NodeSpec, progress: Callable[[str], None]) -> str:
    """The service image of a checkpoint node, reused when it exists for the same checkpoint."""
    from checkpoint2svc.checkpoint import Checkpoint
    from checkpoint2svc.checkpoint.manifest import MANIFEST_NAME, sha256_file
    from checkpoint2svc.image.build import build_image
    from checkpoint2svc.image.engine import docker_client

    assert spec.checkpoint is not None
    checkpoint = Checkpoint.open(Path(spec.checkpoint))
    tag = f"checkpoint2svc-node/{spec.name}:{sha256_file(checkpoint.path / MANIFEST_NAME)[:12]}"
    try:
        docker_client().images.get(tag)
        return tag
    except Exception:
        pass
    return build_image(checkpoint, tag, progress=progress).tag


def remove_node_image(tag: str) -> bool:
    """Remove a node image the controller built; False while a container still uses it (the
    engine refuses then: nothing is forced)."""
    import docker

    from checkpoint2svc.image.engine import docker_client

    try:
        docker_client().images.remove(tag, force=False)
    except docker.errors.ImageNotFound:
        return True
    except docker.errors.APIError as exc:
        if exc.status_code == 409:  # conflict: a container uses it
            return False
        raise
    return True


def serve_controller(home: Home, api_port: int, gateway_port: int) -> None:
    import uvicorn

    from checkpoint2svc.backends.base import default_backend_name
    from checkpoint2svc.control.api import create_api
    from checkpoint2svc.gateway.haproxy import Gateway

    home.prepare()
    store = Store(home.database)
    controller = Controller(
        home.root, store, home.controller_id(), Gateway(home.gateway_dir), gateway_port,
        build_node_image, remove_image=remove_node_image,
    )  # fmt: skip
    backends = ("local", "docker") if default_backend_name() == "docker" else ("local",)
    controller.adopt(backends)
    loop = threading.Thread(target=controller.run, name="reconcile", daemon=True)
    loop.start()

    def shutdown() -> None:
        server.should_exit = True

    app = create_api(controller, home.token(create=True), shutdown=shutdown)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=api_port, log_level="warning", timeout_graceful_shutdown=5
        )
    )
    home.write_info(ControllerInfo(os.getpid(), api_port, gateway_port, controller.controller_id))
    log.info("controller %s: API on 127.0.0.1:%d, gateway on 127.0.0.1:%d",
             controller.controller_id, api_port, gateway_port)  # fmt: skip
    try:
        server.run()
    finally:
        controller.stop()
        home.info_file.unlink(missing_ok=True)
        store.close()
        log.info("controller stopped; instances and the gateway keep running")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the checkpoint2svc controller.")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--port", type=int, default=DEFAULT_API_PORT)
    parser.add_argument("--gateway-port", type=int, default=DEFAULT_GATEWAY_PORT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    serve_controller(Home(args.home), args.port, args.gateway_port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
