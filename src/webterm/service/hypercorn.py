"""The one Hypercorn setup of the Quart services (manager, webserver).

Hypercorn's own access log is off (the services log what they need themselves), so is
its ``Server`` header. Idle keep-alive connections are closed after
:data:`KEEP_ALIVE_SECONDS`: longer than any client keeps an idle connection it may
reuse (httpx: 5 s; an ingress's upstream pool, nginx: 60 s), so a request sent on a
reused connection never meets a server-side close (it would be lost)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

KEEP_ALIVE_SECONDS: Final = 75.0
"""Idle keep-alive connections are closed after this (nginx's default)."""


def hypercorn_config(
    host: str,
    port: int,
    *,
    graceful_timeout: float,
    websocket_max_message_size: int | None = None,
) -> Config:
    """Hypercorn's configuration for a service listening on ``host:port``; connections
    still open ``graceful_timeout`` seconds after shutdown starts are cut."""
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.include_server_header = False
    config.graceful_timeout = graceful_timeout
    config.keep_alive_timeout = KEEP_ALIVE_SECONDS
    if websocket_max_message_size is not None:
        config.websocket_max_message_size = websocket_max_message_size
    return config


async def serve_http(
    app: Any,  # an ASGI callable; Hypercorn's own type for one is loosely matched
    config: Config,
    *,
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until cancelled (or ``shutdown_trigger`` returns); reports the
    bound addresses (``host:port``) through ``task_status``."""
    if shutdown_trigger is None:
        await serve(app, config, task_status=task_status)
    else:
        await serve(app, config, shutdown_trigger=shutdown_trigger, task_status=task_status)


def bound_port(binds: list[str]) -> int:
    """The port of the first address :func:`serve_http` reported."""
    return int(binds[0].rsplit(":", 1)[1])


__all__ = ["KEEP_ALIVE_SECONDS", "bound_port", "hypercorn_config", "serve_http"]
