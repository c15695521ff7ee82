"""The webserver: the page, the terminal API, and the terminal WebSocket proxy.

Theory of operation
-------------------
One raw ASGI callable, :class:`Webserver`, sits in front of everything:

* a loopback-only webserver answers only requests naming this machine
  (:mod:`~webterm.service.hostguard`), and the optional access gate
  (:mod:`~webterm.webserver.access`) stands before everything but the probes;
* WebSocket scopes for ``/terminals/...`` go straight to the
  :class:`~webterm.webserver.proxy.TerminalProxy` (the hot path: no framework);
* HTTP requests for ``/terminals/{name}/files/...`` go to the
  :class:`~webterm.webserver.files.FilesRelay` (uploads and downloads, streamed);
* every other HTTP request goes to a small Quart app, wrapped so that each answer
  carries the security headers and is counted and logged once
  (:mod:`~webterm.webserver.envelope`).

This module is the wiring: which object serves which route. The page's routes are
:mod:`~webterm.webserver.pages`, the terminal API's :mod:`~webterm.webserver.api`
(over the one limit-and-allocate path of :mod:`~webterm.webserver.allocator`), the
share links' :mod:`~webterm.webserver.sharing`; the
manager is reached through one ``httpx.AsyncClient`` opened in :func:`serve`
(transport injectable, so tests stand the manager in), by
:mod:`~webterm.webserver.managerclient` and the proxy's
:mod:`~webterm.webserver.addresses`.

Error tree: every error answer is JSON ``{"error": TEXT}``; 429 and 503 add
``retry_after`` (seconds) and a ``Retry-After`` header (:mod:`~webterm.service.errors`;
the probes and the Hypercorn setup are the service kit's too, :mod:`webterm.service`).
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
from prometheus_client import CollectorRegistry
from quart_trio import QuartTrio

from webterm.config import KeySource, WebserverConfig
from webterm.keys import KEYS_PATH, PublicKeys
from webterm.protocol import MAX_FRAME_BYTES
from webterm.ratelimit import TokenBucketLimiter
from webterm.service.answers import install_error_handlers
from webterm.service.errors import Refusal
from webterm.service.health import READY, add_probes
from webterm.service.hostguard import HostGuard
from webterm.service.hypercorn import bound_port, hypercorn_config, serve_http
from webterm.webserver.access import AccessGate
from webterm.webserver.addresses import AddressBook
from webterm.webserver.allocator import Allocator
from webterm.webserver.api import TerminalApi
from webterm.webserver.asgi import Receive, Scope, Send
from webterm.webserver.envelope import Envelope
from webterm.webserver.files import FilesRelay, is_files_path
from webterm.webserver.forwarding import TrustedProxies
from webterm.webserver.holds import HOLD_SECONDS, AddressHolds
from webterm.webserver.managerclient import MANAGER_TIMEOUT, ManagerClient
from webterm.webserver.pages import Pages
from webterm.webserver.proxy import TerminalProxy
from webterm.webserver.security import CONTENT_SECURITY_POLICY
from webterm.webserver.sharing import ShareApi
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
        self.guard = HostGuard(config.host, config.allowed_origins)
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
        addresses = AddressBook(manager)
        self.proxy = TerminalProxy(
            keys=keys,
            addresses=addresses,
            allowed_origins=config.allowed_origins,
            trusted=trusted,
            registry=registry,
            closing=closing,
        )
        self.files = FilesRelay(
            keys=keys,
            addresses=self.proxy.addresses,
            allowed_origins=config.allowed_origins,
            trusted=trusted,
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
        api = TerminalApi(config, allocator, trusted)
        self.shares = ShareApi(config, api, self.manager, keys, addresses)
        self.app = self._create_app(Pages(StaticSite(static_dir)), api)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if not self.guard.allows(scope):
            await self.guard.refuse(scope, send)
        elif kind == "websocket" and scope["path"].startswith("/terminals/"):
            if self.gate.admits(scope):
                await self.proxy(scope, receive, send)
            else:  # before accept: an HTTP 403
                await self.gate.refuse(scope, send)
        elif kind == "http":

            async def respond(send: Send) -> None:
                if self.gate.admits(scope) and is_files_path(scope["path"]):
                    await self.files(scope, receive, send)
                elif self.gate.admits(scope):
                    await self.app(scope, receive, send)  # type: ignore[arg-type]
                else:
                    await self.gate.refuse(scope, send)

            await self.envelope.answer(scope, send, respond)
        else:  # lifespan, and WebSockets elsewhere (Quart answers 404/403)
            await self.app(scope, receive, send)  # type: ignore[arg-type]

    def _create_app(self, pages: Pages, api: TerminalApi) -> QuartTrio:
        app = QuartTrio("webterm.webserver", static_folder=None)
        app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
        app.add_url_rule("/", view_func=pages.index, methods=["GET"])
        app.add_url_rule("/static/<path:filename>", view_func=pages.static_file, methods=["GET"])
        app.add_url_rule("/api/terminal", view_func=api.terminal, methods=["POST"])
        app.add_url_rule("/api/terminal", view_func=api.give_back, methods=["DELETE"])
        app.add_url_rule("/api/terminal/share", view_func=self.shares.share, methods=["POST"])
        app.add_url_rule("/api/terminal/shared", view_func=self.shares.shared, methods=["POST"])
        app.add_url_rule("/getPseudoTerminalAddress", view_func=api.legacy, methods=["POST"])
        add_probes(app, self.registry, self.readiness)
        install_error_handlers(app)  # the manager client's errors are refusals too
        return app

    async def readiness(self) -> dict[str, str]:
        if not await self.manager.ready():
            raise Refusal(503, "terminal manager not ready")
        return READY


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
    hyper = hypercorn_config(
        config.host,
        config.port,
        graceful_timeout=SHUTDOWN_GRACE - 1.0,
        websocket_max_message_size=MAX_FRAME_BYTES,
    )
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
                await serve_http(
                    webserver, hyper, shutdown_trigger=closing.wait, task_status=task_status
                )

        async with trio.open_nursery() as nursery:
            binds = await nursery.start(run_http)
            port = bound_port(binds)
            log.info("webserver listening on %s", binds[0])
            task_status.started(port)
            try:
                await trio.sleep_forever()
            finally:
                closing.set()
                http_scope.deadline = trio.current_time() + SHUTDOWN_GRACE


__all__ = ["CONTENT_SECURITY_POLICY", "Webserver", "serve"]
