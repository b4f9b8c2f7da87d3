"""Which listeners a node opens (shared by the server and the ``--workers`` supervisor)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .api_endpoint import api_role

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["ListenSpec", "listen_plan", "metrics_apart"]

#: one listener of a node: (role, host, port, the host's option, the port's option)
ListenSpec = tuple[str, str, int, str, str]


def listen_plan(config: Config) -> list[ListenSpec]:
    """Every listener a node of ``config`` opens, in order, main first (what
    :meth:`Server.run` binds, and what the supervisor of ``--workers`` binds for its
    workers)."""
    plan: list[ListenSpec] = [("main", config.host, config.port, "--host", "--port")]
    shared_broadcast = (
        "http" in config.broadcast_adapters and config.http_broadcast_port == config.port
    )
    if "http" in config.broadcast_adapters and not shared_broadcast:
        port = config.http_broadcast_port
        plan.append(("broadcast", config.host, port, "--host", "--http_broadcast_port"))
    if metrics_apart(config):
        plan.append(
            (
                "metrics",
                config.metrics_host or config.host,
                config.metrics_port,
                "--metrics_host" if config.metrics_host else "--host",
                "--metrics_port",
            )
        )
    if api_role(config) == "api":
        plan.append(("api", config.host, config.api_port, "--host", "--api_port"))
    return plan


def metrics_apart(config: Config) -> bool:
    """Whether the metrics endpoint has a listener of its own."""
    port = config.metrics_port
    return bool(config.metrics_http) and port not in (0, config.port)
