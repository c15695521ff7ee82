"""The manager service: the HTTP API (quart-trio on hypercorn) over the
:class:`~webterm.manager.core.Manager` and its backend.

This module is the wiring: which object serves which route. The routes are
:mod:`~webterm.manager.allocations` (a terminal for a client, and back),
:mod:`~webterm.manager.shares` (a share link for a client's terminal),
:mod:`~webterm.manager.reports` (what terminals report under their tokens) and
:mod:`~webterm.manager.listing` (where terminals are); the probes, the error answers,
the Host guard and the Hypercorn setup are the service kit's (:mod:`webterm.service`).
Bound to loopback only, the API answers only requests whose ``Host`` names this machine
(the DNS-rebinding guard of :mod:`webterm.service.hostguard`). Who may call what:
:mod:`~webterm.manager.credentials`.
"""

from __future__ import annotations

import logging
from typing import Final

import trio
from prometheus_client import CollectorRegistry
from quart import Response, request
from quart_trio import QuartTrio

from webterm.config import ManagerConfig
from webterm.keys import KEYS_PATH
from webterm.manager.allocations import Allocations
from webterm.manager.backend import Backend
from webterm.manager.core import RETRY_AFTER_NOT_LEADER, TICK_SECONDS, Manager
from webterm.manager.listing import Listing
from webterm.manager.reports import TerminalReports
from webterm.manager.shares import Shares
from webterm.service.answers import install_error_handlers, json_response
from webterm.service.errors import Refusal
from webterm.service.health import PROBE_PATHS, READY, add_probes
from webterm.service.hostguard import HostGuard
from webterm.service.hypercorn import bound_port, hypercorn_config, serve_http

log = logging.getLogger("webterm.manager")

SHUTDOWN_GRACE: Final = 2.0
"""Seconds open connections get to finish when the manager stops."""


def create_app(manager: Manager, registry: CollectorRegistry) -> QuartTrio:
    app = QuartTrio("webterm.manager", static_folder=None)

    @app.before_request
    async def only_when_active() -> None:
        """Until the pool runs (a standby without the lease, or still starting), every
        pool call is a 503 + Retry-After: the caller retries, and reaches the leader."""
        if manager.ready.is_set() or request.path in (*PROBE_PATHS, KEYS_PATH):
            return
        reason = "this manager is on standby" if manager.following else "manager starting"
        raise Refusal(503, reason, RETRY_AFTER_NOT_LEADER)

    allocations = Allocations(manager)
    app.add_url_rule("/v1/allocations", view_func=allocations.allocate, methods=["POST"])
    app.add_url_rule(
        "/v1/allocations/<path:client>", view_func=allocations.release, methods=["DELETE"]
    )
    shares = Shares(manager)
    app.add_url_rule("/v1/shares", view_func=shares.share, methods=["POST"])
    reports = TerminalReports(manager)
    app.add_url_rule("/v1/terminals/<name>/recycle", view_func=reports.recycle, methods=["POST"])
    app.add_url_rule(
        "/v1/terminals/<name>/connection", view_func=reports.connection, methods=["POST"]
    )
    listing = Listing(manager)
    app.add_url_rule("/v1/terminals", view_func=listing.terminals, methods=["GET"])
    app.add_url_rule("/v1/terminals/<name>", view_func=listing.terminal, methods=["GET"])

    @app.get(KEYS_PATH)
    async def keys() -> Response:
        """The public keys tokens are signed with (JWKS); unauthenticated."""
        return json_response(manager.config.public_keys.to_jwks())

    async def readiness() -> dict[str, str]:
        if manager.following:
            return {"status": "standby"}  # synced; serving once it holds the lease
        if not manager.ready.is_set():
            raise Refusal(503, "backend not synced yet")
        return READY

    add_probes(app, registry, readiness)
    install_error_handlers(app)
    return app


def make_backend(config: ManagerConfig, registry: CollectorRegistry) -> Backend:
    if config.backend == "kubernetes":
        from webterm.manager.kube import create_backend

        return create_backend(config, registry)
    from webterm.manager.local import LocalBackend

    return LocalBackend(config, manager_url="", prefix=config.statefulset)


async def serve(
    config: ManagerConfig,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    backend: Backend | None = None,
) -> None:
    """Run the manager until cancelled; reports the bound port through ``task_status``."""
    from webterm.manager.local import LocalBackend

    registry = CollectorRegistry()
    the_backend = backend or make_backend(config, registry)
    manager = Manager(config, the_backend, registry)
    app = HostGuard(config.host).wrap(create_app(manager, registry))
    hyper = hypercorn_config(config.host, config.port, graceful_timeout=SHUTDOWN_GRACE)
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_http, app, hyper)
        port = bound_port(binds)
        host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
        url = f"http://{host}:{port}"
        if isinstance(the_backend, LocalBackend):
            the_backend.manager_url = url  # its terminals call back here
        if config.leader_elect:
            # a standby serves (503 + Retry-After, /readyz "standby") while it waits
            # for the lease, which may be for ever
            nursery.start_soon(manager.run)
        else:
            await nursery.start(manager.run)
        log.info("manager (%s backend) listening on %s", config.backend, url)
        task_status.started(port)


__all__ = ["TICK_SECONDS", "Manager", "create_app", "make_backend", "serve"]
