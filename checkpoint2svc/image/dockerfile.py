"""The model the Dockerfile templates render; every decision is made here, none in Jinja."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from checkpoint2svc.codegen.resources import template_environment

VENV = "/opt/checkpoint2svc/venv"
SERVICE_DIR = "/srv/service"
SERVICE_USER = "checkpoint2svc"
SERVICE_UID = 10001


@dataclass(frozen=True)
class RequirementsStage:
    """An image with a virtual environment of the service's pinned requirements."""

    base_image: str
    labels: dict[str, str]
    venv: str = VENV

    @property
    def label_args(self) -> list[str]:
        return _label_args(self.labels)


@dataclass(frozen=True)
class ServiceDockerfile:
    service: str
    base_image: str
    requirements_image: str
    runtime_wheel: str
    http_port: int
    grpc_port: int
    labels: dict[str, str] = field(default_factory=dict)
    venv: str = VENV
    service_dir: str = SERVICE_DIR
    user: str = SERVICE_USER
    uid: int = SERVICE_UID
    health_interval: str = "5s"
    health_start_period: str = "120s"

    @property
    def label_args(self) -> list[str]:
        return _label_args(self.labels)


def _label_args(labels: dict[str, str]) -> list[str]:
    """``key="value"`` pairs, quoted so that no value can break or expand in the Dockerfile."""
    escaped = {key: json.dumps(value).replace("$", "\\$") for key, value in labels.items()}
    return [f"{key}={value}" for key, value in escaped.items()]


def render_requirements_dockerfile(model: RequirementsStage) -> str:
    return template_environment().get_template("requirements.Dockerfile.j2").render(model=model)


def render_dockerfile(model: ServiceDockerfile) -> str:
    return template_environment().get_template("Dockerfile.j2").render(model=model)
