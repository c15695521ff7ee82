"""The webserver: the page, the terminal API, and the terminal WebSocket proxy.

Theory of operation
-------------------
One raw ASGI callable, :class:`Webserver`, sits in front of everything:

* a loopback-only webserver answers only requests naming this machine
  (:mod:`~webterm.webserver.rebinding`), and the optional access gate
  (:mod:`~webterm.webserver.access`) stands before everything but the probes;
* WebSocket scopes for ``/terminals/...`` go straight to the
  :class:`~webterm.webserver.proxy.TerminalProxy` (the hot path: no framework);
* every other HTTP request goes to a small Quart app, wrapped so that each answer
  carries the security headers and is counted and logged once
  (:mod:`~webterm.webserver.envelope`).

This module is the wiring: which object serves which route. The page's routes are
:mod:`~webterm.webserver.pages`, the terminal API's :mod:`~webterm.webserver.api`
(over the one limit-and-allocate path of :mod:`~webterm.webserver.allocator`); the
manager is reached through one ``httpx.AsyncClient`` opened in :func:`serve`
(transport injectable, so tests stand the manager in), by
:mod:`~webterm.webserver.managerclient` and the proxy's
:mod:`~webterm.webserver.addresses`.

Error tree: every error answer is JSON ``{"error": TEXT}``; 429 and 503 add
``retry_after`` (seconds) and a ``Retry-After`` header (:mod:`~webterm.webserver.answers`).
The manager's own 429/503 are passed through; a manager that cannot be reached or
answers nonsense is a 503 with a short retry, so the page shows "busy, retrying"
rather than an error.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from quart import Response
from quart_trio import QuartTrio

from webterm.config import KeySource, WebserverConfig
from webterm.keys import KEYS_PATH, PublicKeys
from webterm.protocol import MAX_FRAME_BYTES, CloseCode
from webterm.ratelimit import TokenBucketLimiter
from webterm.webserver.access import AccessGate
from webterm.webserver.addresses import AddressBook
from webterm.webserver.allocator import Allocator
from webterm.webserver.answers import (
    MAX_BODY_BYTES,
    Refusal,
    error_response,
    install_error_handlers,
    json_response,
)
from webterm.webserver.api import TerminalApi
from webterm.webserver.asgi import Receive, Scope, Send
from webterm.webserver.envelope import Envelope
from webterm.webserver.forwarding import TrustedProxies
from webterm.webserver.holds import HOLD_SECONDS, AddressHolds
from webterm.webserver.managerclient import MANAGER_TIMEOUT, ManagerClient, ManagerError
from webterm.webserver.pages import Pages
from webterm.webserver.proxy import TerminalProxy
from webterm.webserver.rebinding import RebindingGuard
from webterm.webserver.security import CONTENT_SECURITY_POLICY
from webterm.webserver.static import StaticSite
from webterm.webserver.upstream import UpstreamTransport

log = logging.getLogger("webterm.webserver")

STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "static"

SHUTDOWN_GRACE: Final = 3.0
"""Seconds after cancellation for open connections to finish: relays close both sides
with 1001 at once; idle keep-alive connections are closed by Hypercorn."""


class Webserver:
    """The ASGI application: dispatcher, proxy and Quart app, over one manager client.

    ``closing`` is set when the service shuts down (see :func:`serve`)."""

    def __init__(
        self,
        config: WebserverConfig,
        manager: httpx.AsyncClient,
        *,
        registry: CollectorRegistry,
        static_dir: Path,
        closing: trio.Event,
        keys: PublicKeys,
    ) -> None:
        self.registry = registry
        trusted = TrustedProxies(config.trusted_proxies)
        self.guard = RebindingGuard(config.host, config.allowed_origins)
        self.gate = AccessGate(
            config.access,
            password=config.access_password,
            header=config.access_header,
            trusted=trusted,
        )
        self.envelope = Envelope(
            address_mode=config.address_mode,
            public_host=config.public_host,
            trusted=trusted,
            registry=registry,
        )
        self.proxy = TerminalProxy(
            keys=keys,
            addresses=AddressBook(manager),
            allowed_origins=config.allowed_origins,
            trusted=trusted,
            registry=registry,
            closing=closing,
        )
        self.manager = ManagerClient(manager, registry)
        allocator = Allocator(
            self.manager,
            per_address=TokenBucketLimiter(
                rate=config.address_rate[0], burst=config.address_rate[1]
            ),
            per_client=TokenBucketLimiter(rate=config.client_rate[0], burst=config.client_rate[1]),
            holds=AddressHolds(
                config.max_per_address,
                in_use=lambda client_hash: client_hash in self.proxy.relaying,
                hold_seconds=HOLD_SECONDS,  # read when built, so a test can shorten it
            ),
        )
        self.app = self._create_app(
            Pages(StaticSite(static_dir)), TerminalApi(config, allocator, trusted)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if not self.guard.allows(scope):
            await self.guard.refuse(scope, send)
        elif kind == "websocket" and scope["path"].startswith("/terminals/"):
            if self.gate.admits(scope):
                await self.proxy(scope, receive, send)
            else:  # before accept: an HTTP 403
                await send({"type": "websocket.close", "code": CloseCode.UNAUTHORIZED})
        elif kind == "http":

            async def respond(send: Send) -> None:
                if self.gate.admits(scope):
                    await self.app(scope, receive, send)  # type: ignore[arg-type]
                else:
                    await self.gate.refuse(send)

            await self.envelope.answer(scope, send, respond)
        else:  # lifespan, and WebSockets elsewhere (Quart answers 404/403)
            await self.app(scope, receive, send)  # type: ignore[arg-type]

    def _create_app(self, pages: Pages, api: TerminalApi) -> QuartTrio:
        app = QuartTrio("webterm.webserver", static_folder=None)
        app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
        app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
        app.add_url_rule("/", view_func=pages.index, methods=["GET"])
        app.add_url_rule("/static/<path:filename>", view_func=pages.static_file, methods=["GET"])
        app.add_url_rule("/api/terminal", view_func=api.terminal, methods=["POST"])
        app.add_url_rule("/api/terminal", view_func=api.give_back, methods=["DELETE"])
        app.add_url_rule("/getPseudoTerminalAddress", view_func=api.legacy, methods=["POST"])
        app.add_url_rule("/healthz", view_func=self.healthz, methods=["GET"])
        app.add_url_rule("/readyz", view_func=self.readyz, methods=["GET"])
        app.add_url_rule("/metrics", view_func=self.metrics, methods=["GET"])
        app.register_error_handler(ManagerError, self.no_allocation)
        install_error_handlers(app)
        return app

    # --- probes, metrics, and the manager's refusals ----------------------------------------

    async def healthz(self) -> Response:
        return json_response({"status": "ok"})

    async def readyz(self) -> Response:
        if not await self.manager.ready():
            raise Refusal(503, "terminal manager not ready")
        return json_response({"status": "ready"})

    async def metrics(self) -> Response:
        return Response(generate_latest(self.registry), content_type=CONTENT_TYPE_LATEST)

    async def no_allocation(self, error: ManagerError) -> Response:
        return error_response(error.error_status_hint, error.message, error.retry_after)


async def serve(
    config: WebserverConfig,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    manager_transport: httpx.AsyncBaseTransport | None = None,
    static_dir: Path | None = None,
) -> None:
    """Serve the page, the API and the proxy until cancelled; reports the bound port.

    Cancellation is a graceful shutdown: Hypercorn stops listening, every relay closes
    both of its sockets with 1001, keep-alive connections are closed, and whatever is
    still running after :data:`SHUTDOWN_GRACE` seconds is cancelled.

    ``manager_transport`` stands the manager in (tests); ``static_dir`` replaces the
    built page's directory (default: the package's ``static/``)."""
    registry = CollectorRegistry()
    closing = trio.Event()
    hyper = HypercornConfig()
    hyper.bind = [
        f"[{config.host}]:{config.port}" if ":" in config.host else f"{config.host}:{config.port}"
    ]
    hyper.accesslog = None  # we log one line per request ourselves
    hyper.graceful_timeout = SHUTDOWN_GRACE - 1.0
    hyper.include_server_header = False
    # longer than an ingress keeps idle upstream connections (nginx: 60 s), so a request
    # the proxy sends on a reused connection never meets a server-side close
    hyper.keep_alive_timeout = 75.0
    hyper.websocket_max_message_size = MAX_FRAME_BYTES
    http_scope = trio.CancelScope(shield=True)
    keys = PublicKeys(config.keys or KeySource(url=config.manager_url.rstrip("/") + KEYS_PATH))
    await keys.start()
    async with httpx.AsyncClient(
        base_url=config.manager_url,
        transport=manager_transport or UpstreamTransport(),
        timeout=MANAGER_TIMEOUT,
        headers={"Authorization": "Bearer " + config.manager_credential.decode()},
    ) as manager:
        webserver = Webserver(
            config,
            manager,
            registry=registry,
            static_dir=static_dir or STATIC_DIR,
            closing=closing,
            keys=keys,
        )

        async def run_http(*, task_status: trio.TaskStatus[list[str]]) -> None:
            # Shielded: outside cancellation must not cut connections mid-frame; the
            # `finally` below asks Hypercorn to stop and bounds how long it may take.
            with http_scope:
                await hypercorn_serve(
                    webserver,  # type: ignore[arg-type]  # a plain ASGI callable, loosely typed
                    hyper,
                    shutdown_trigger=closing.wait,
                    task_status=task_status,
                )

        async with trio.open_nursery() as nursery:
            binds = await nursery.start(run_http)
            port = int(binds[0].rsplit(":", 1)[1])
            log.info("webserver listening on %s", binds[0])
            task_status.started(port)
            try:
                await trio.sleep_forever()
            finally:
                closing.set()
                http_scope.deadline = trio.current_time() + SHUTDOWN_GRACE


__all__ = ["CONTENT_SECURITY_POLICY", "Webserver", "serve"]
