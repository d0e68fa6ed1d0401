"""Stage 6: the data-plane gateway. Renders HAProxy's config from a model of nodes and aliases,
and starts, reloads (hitless), adopts and stops the HAProxy process."""

from checkpoint2svc.gateway.config import (
    GatewayAlias,
    GatewayConfig,
    GatewayNode,
    GatewayServer,
    render_haproxy_config,
)
from checkpoint2svc.gateway.haproxy import Gateway

__all__ = [
    "Gateway",
    "GatewayAlias",
    "GatewayConfig",
    "GatewayNode",
    "GatewayServer",
    "render_haproxy_config",
]
