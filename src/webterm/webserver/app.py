"""The webserver: the page, ``POST /api/terminal``, and the terminal WebSocket proxy.

Theory of operation
-------------------
One raw ASGI callable, :class:`Webserver`, sits in front of everything:

* WebSocket scopes for ``/terminals/...`` go straight to the
  :class:`~webterm.webserver.proxy.TerminalProxy` (the hot path: no framework);
* every other HTTP request goes to a small Quart app, wrapped so that each answer
  carries the security headers and is counted and logged once
  (``method path status ms``: never a query string, body, token or identity).

The manager is reached through one ``httpx.AsyncClient`` opened in :func:`serve`
(transport injectable, so tests stand the manager in).

Identity (``--identity``): ``tab`` — the server issues each tab a signed id in the
answer's ``client`` field and the page sends it back; ``browser`` — a signed id in an
HttpOnly, SameSite=Strict cookie (Secure over https), never shown to scripts (the
answer's ``client`` is null); ``ip`` — the remote address. The manager sees
``tab:<id>``, ``browser:<id>`` or ``ip:<address>`` (see
:mod:`webterm.webserver.identity`).

Error tree: every error answer is JSON ``{"error": TEXT}``; 429 and 503 add
``retry_after`` (seconds) and a ``Retry-After`` header. The manager's own 429/503 are
passed through; a manager that cannot be reached or answers nonsense is a 503 with a
short retry, so the page shows "busy, retrying" rather than an error.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Final

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from quart import Response, request
from quart_trio import QuartTrio

from webterm.config import WebserverConfig
from webterm.protocol import MAX_FRAME_BYTES, client_hash
from webterm.ratelimit import TokenBucketLimiter
from webterm.webserver.access import AccessGate
from webterm.webserver.addresses import AddressBook
from webterm.webserver.allocator import Allocator
from webterm.webserver.answers import (
    MAX_BODY_BYTES,
    Refusal,
    error_response,
    install_error_handlers,
    json_body,
    json_response,
)
from webterm.webserver.asgi import (
    Receive,
    Scope,
    Send,
)
from webterm.webserver.caller import Caller
from webterm.webserver.envelope import Envelope
from webterm.webserver.forwarding import (
    TrustedProxies,
)
from webterm.webserver.holds import HOLD_SECONDS, AddressHolds
from webterm.webserver.identity import COOKIE_NAME, identify, manager_identity
from webterm.webserver.managerclient import MANAGER_TIMEOUT, ManagerClient, ManagerError
from webterm.webserver.proxy import TerminalProxy
from webterm.webserver.rebinding import RebindingGuard
from webterm.webserver.security import (
    CONTENT_SECURITY_POLICY,
)
from webterm.webserver.static import (
    CACHE_INDEX,
    CACHE_UNVERSIONED,
    CACHE_VERSIONED,
    VERSION_PARAM,
    Asset,
    StaticSite,
    accepts_gzip,
    not_modified,
)
from webterm.webserver.upstream import UpstreamTransport
from webterm.webserver.urls import terminal_url

log = logging.getLogger("webterm.webserver")

STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "static"

SHUTDOWN_GRACE: Final = 3.0
"""Seconds after cancellation for open connections to finish: relays close both sides
with 1001 at once; idle keep-alive connections are closed by Hypercorn."""


COOKIE_MAX_AGE: Final = 30 * 24 * 3600
"""Seconds a browser-mode identity cookie lives: a month of coming back to the same
terminal (which the manager recycles after its idle timeout anyway)."""

MAX_CLIENT_FIELD: Final = 200
"""A ``client`` or ``IP`` field longer than this is not an id we could have issued."""


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
    ) -> None:
        self.config = config
        self.registry = registry
        self.site = StaticSite(static_dir)
        self.trusted = TrustedProxies(config.trusted_proxies)
        self.allowed_origins = frozenset(config.allowed_origins)
        self.envelope = Envelope(
            address_mode=config.address_mode,
            public_host=config.public_host,
            trusted=self.trusted,
            registry=registry,
        )
        self.guard = RebindingGuard(config.host, config.allowed_origins)
        self.gate = AccessGate(
            config.access,
            password=config.access_password,
            header=config.access_header,
            trusted=self.trusted,
        )
        self.proxy = TerminalProxy(
            secret=config.secret,
            addresses=AddressBook(manager),
            allowed_origins=config.allowed_origins,
            trusted=self.trusted,
            registry=registry,
            closing=closing,
        )
        self.manager = ManagerClient(manager, registry)
        self.allocator = Allocator(
            self.manager,
            per_address=TokenBucketLimiter(
                rate=config.address_rate[0], burst=config.address_rate[1]
            ),
            per_client=TokenBucketLimiter(rate=config.client_rate[0], burst=config.client_rate[1]),
            holds=AddressHolds(
                config.max_per_address,
                in_use=lambda identity: client_hash(config.secret, identity) in self.proxy.relaying,
                hold_seconds=HOLD_SECONDS,  # read when built, so a test can shorten it
            ),
        )
        self.app = self._create_app()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if not self.guard.allows(scope):
            await self.guard.refuse(scope, send)
        elif kind == "websocket" and scope["path"].startswith("/terminals/"):
            if self.gate.admits(scope):
                await self.proxy(scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 4401})  # before accept: 403
        elif kind == "http":

            async def respond(send: Send) -> None:
                if self.gate.admits(scope):
                    await self.app(scope, receive, send)  # type: ignore[arg-type]
                else:
                    await self.gate.refuse(send)

            await self.envelope.answer(scope, send, respond)
        else:  # lifespan, and WebSockets elsewhere (Quart answers 404/403)
            await self.app(scope, receive, send)  # type: ignore[arg-type]

    # --- who is asking --------------------------------------------------------------------

    def _caller(self) -> Caller:
        """The caller of the API request being handled; another site's page is refused."""
        caller = Caller.of_request(self.trusted)
        if caller.foreign(self.allowed_origins):
            raise Refusal(403, "origin not allowed")
        return caller

    def _identify(
        self, caller: Caller, body: dict[str, Any], *, issue: bool
    ) -> tuple[str | None, str | None]:
        """``(identity for the manager, id to hand the tab / cookie to set)``: see
        :func:`webterm.webserver.identity.identify`."""
        if "client" in body and not _short_string_or_null(body["client"]):
            raise Refusal(400, "'client' must be a string")
        mode = self.config.identity
        return identify(
            self.config.secret,
            mode,
            presented=caller.cookie if mode == "browser" else body.get("client"),
            address=caller.address,
            issue=issue,
        )

    # --- the app --------------------------------------------------------------------------

    def _create_app(self) -> QuartTrio:
        app = QuartTrio("webterm.webserver", static_folder=None)
        app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
        app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False

        @app.get("/")
        async def index() -> Response:
            asset = self.site.index()
            if asset is None:
                return error_response(404, "the page is not built (no index.html)")
            return _asset_response(asset, CACHE_INDEX)

        @app.get("/static/<path:filename>")
        async def static_file(filename: str) -> Response:
            asset = self.site.asset(filename)
            if asset is None:
                return error_response(404, "not found")
            versioned = request.args.get(VERSION_PARAM) == asset.version
            return _asset_response(asset, CACHE_VERSIONED if versioned else CACHE_UNVERSIONED)

        @app.post("/api/terminal")
        async def terminal() -> Response:
            caller = self._caller()
            if self.config.address_mode == "proxy" and caller.host is None:
                raise Refusal(400, "bad Host header")
            identity, handed = self._identify(caller, await json_body(), issue=True)
            assert identity is not None
            got = await self.allocator.allocate(identity, caller.address)
            url = terminal_url(
                address_mode=self.config.address_mode,
                public_host=self.config.public_host,
                name=got.terminal,
                address=got.address,
                host=caller.host,
                secure=caller.secure,
            )
            response = json_response(
                {
                    "terminal": got.terminal,
                    "url": url,
                    "token": got.token,
                    "reconnect": got.reconnect,
                    "client": handed if self.config.identity == "tab" else None,
                }
            )
            if self.config.identity == "browser" and handed is not None:
                response.set_cookie(
                    COOKIE_NAME,
                    handed,
                    max_age=COOKIE_MAX_AGE,
                    path="/",
                    secure=caller.secure,
                    httponly=True,
                    samesite="Strict",
                )
            return response

        @app.delete("/api/terminal")
        async def give_back() -> Response:
            caller = self._caller()
            identity, _ = self._identify(caller, await json_body(), issue=False)
            if identity is None:
                return json_response({"released": False})
            released = await self.allocator.give_back(identity, caller.address)
            return json_response({"released": released})

        @app.post("/getPseudoTerminalAddress")
        async def legacy() -> Response:
            """The original project's call, kept for its clients. The ``IP`` it sends
            was the caller's own address; it is not believed (anyone could name anyone):
            the caller's identity is its real remote address, exactly as in ``ip``
            mode, and it can never name a tab's or browser's terminal."""
            caller = self._caller()
            body = await json_body()
            if not isinstance(body.get("IP"), str) or len(body["IP"]) > MAX_CLIENT_FIELD:
                raise Refusal(400, "'IP' must be a string")
            identity = manager_identity("ip", caller.address)
            got = await self.allocator.allocate(identity, caller.address)
            return json_response({"podName": got.terminal, "ip": got.address})

        @app.get("/healthz")
        async def healthz() -> Response:
            return json_response({"status": "ok"})

        @app.get("/readyz")
        async def readyz() -> Response:
            if not await self.manager.ready():
                raise Refusal(503, "terminal manager not ready")
            return json_response({"status": "ready"})

        @app.get("/metrics")
        async def metrics() -> Response:
            return Response(generate_latest(self.registry), content_type=CONTENT_TYPE_LATEST)

        @app.errorhandler(ManagerError)
        async def no_allocation(error: ManagerError) -> Response:
            return error_response(error.status_hint, error.message, error.retry_after)

        install_error_handlers(app)
        return app


def _short_string_or_null(value: object) -> bool:
    return value is None or (isinstance(value, str) and len(value) <= MAX_CLIENT_FIELD)


def _asset_response(asset: Asset, cache_control: str) -> Response:
    gzipped = asset.gzipped is not None and accepts_gzip(request.headers.get("Accept-Encoding"))
    etag = asset.gzip_etag if gzipped else asset.etag
    headers = {
        "Cache-Control": cache_control,
        "ETag": etag,
        "Last-Modified": asset.last_modified,
        "Vary": "Accept-Encoding",
    }
    if not_modified(
        etag,
        asset.last_modified,
        request.headers.get("If-None-Match"),
        request.headers.get("If-Modified-Since"),
    ):
        return Response(b"", status=304, headers=headers)
    if gzipped:
        assert asset.gzipped is not None
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gzipped, content_type=asset.content_type, headers=headers)
    return Response(asset.body, content_type=asset.content_type, headers=headers)


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
    async with httpx.AsyncClient(
        base_url=config.manager_url,
        transport=manager_transport or UpstreamTransport(),
        timeout=MANAGER_TIMEOUT,
    ) as manager:
        webserver = Webserver(
            config,
            manager,
            registry=registry,
            static_dir=static_dir or STATIC_DIR,
            closing=closing,
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
