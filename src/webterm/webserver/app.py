"""The webserver: the page, ``POST /api/terminal``, and the terminal WebSocket proxy.

One ASGI callable in front: WebSocket requests for ``/terminals/{name}/ws`` go to the
raw :class:`~webterm.webserver.proxy.TerminalProxy`; everything else is the Quart app.
The manager is reached through one ``httpx.AsyncClient`` opened in the service nursery;
its transport is injectable so tests can stand the manager in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from pathlib import Path
from typing import Any, Final

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from quart import Response, request, send_from_directory
from quart_trio import QuartTrio

from webterm.config import WebserverConfig
from webterm.ratelimit import TokenBucketLimiter
from webterm.webserver.identity import (
    COOKIE_NAME,
    issue_id,
    remote_address,
    verified_id,
)
from webterm.webserver.proxy import AddressBook, Scope, TerminalProxy

log = logging.getLogger("webterm.webserver")

STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "static"
MAX_BODY_BYTES: Final = 16 * 1024
MANAGER_TIMEOUT: Final = httpx.Timeout(connect=5.0, read=150.0, write=5.0, pool=10.0)
"""The manager may hold an allocation while a terminal starts (--ready-timeout)."""

RETRY_AFTER_MANAGER_DOWN: Final = 5
RETRY_AFTER_CAP: Final = 60

OPEN_PATHS: Final = frozenset({"/healthz", "/readyz"})
"""Probes stay reachable behind the access gate."""

HOLD_SECONDS: Final = 15 * 60
"""An address is counted as holding a terminal for a client that asked for one within
this long (pages ask again on every reconnect, so live sessions stay counted)."""

RATE_PER_CLIENT: Final = (1.0, 10)
"""Terminal requests per second and burst, per client identity: a page asks once per
load and once per reconnect; ten in a burst covers a flaky network."""

RATE_PER_ADDRESS: Final = (5.0, 60)
"""Per source address: a shared NAT may carry many users; a single script may not."""

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self' ws: wss:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'; object-src 'none'"
)
"""xterm.js sets inline styles on its elements (hence 'unsafe-inline' for styles only);
scripts come only from our own origin."""

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status=status,
        content_type="application/json",
        headers=headers or {},
    )


def _error(status: int, message: str, retry_after: int | None = None) -> Response:
    if status == 413:  # the rest of the body is never read: this connection is done
        return _json({"error": message}, status, {"Connection": "close"})
    if retry_after is None:
        return _json({"error": message}, status)
    return _json(
        {"error": message, "retry_after": retry_after},
        status,
        {"Retry-After": str(max(1, retry_after))},
    )


class Webserver:
    def __init__(
        self,
        config: WebserverConfig,
        manager: httpx.AsyncClient,
        registry: CollectorRegistry,
        static_dir: Path,
    ) -> None:
        self.config = config
        self.manager = manager
        self.registry = registry
        self.static_dir = static_dir
        self.per_client = TokenBucketLimiter(rate=RATE_PER_CLIENT[0], burst=RATE_PER_CLIENT[1])
        self.per_address = TokenBucketLimiter(rate=RATE_PER_ADDRESS[0], burst=RATE_PER_ADDRESS[1])
        self.m_requests = Counter(
            "webterm_http_requests", "HTTP requests", ["route", "status"], registry=registry
        )
        self.m_allocation = Histogram(
            "webterm_terminal_request_seconds",
            "Time to answer POST /api/terminal",
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self._held: dict[str, dict[str, float]] = {}  # address -> identity -> last request
        self.proxy = TerminalProxy(
            secret=config.secret,
            addresses=AddressBook(manager),
            allowed_origins=config.allowed_origins,
            registry=registry,
        )
        self.app = self._create_app()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and not self._admitted(scope):
            await self._refuse(scope, send)
        elif scope["type"] == "websocket" and scope["path"].startswith("/terminals/"):
            await self.proxy(scope, receive, send)
        else:
            await self.app(scope, receive, send)  # type: ignore[arg-type]

    # --- the access gate ------------------------------------------------------------------

    def _admitted(self, scope: Scope) -> bool:
        """The optional gate in front of everything but the probes."""
        mode = self.config.access
        if mode == "none" or scope["path"] in OPEN_PATHS:
            return True
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        if mode == "password":
            scheme, _, encoded = headers.get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"basic":
                return False
            try:
                _, _, password = base64.b64decode(encoded, validate=True).partition(b":")
            except ValueError:
                return False
            expected = self.config.access_password or b""
            return hmac.compare_digest(
                hashlib.sha256(password).digest(), hashlib.sha256(expected).digest()
            )
        # header: believed only from a trusted proxy, which must have set it
        client = scope.get("client")
        peer = client[0] if client else None
        if peer is None or remote_address(peer, "0.0.0.0", self.config.trusted_proxies) == peer:
            return False
        return bool(headers.get(self.config.access_header.lower().encode(), b"").strip())

    async def _refuse(self, scope: Scope, send: Any) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4401})  # before accept: HTTP 403
            return
        headers = [(b"content-type", b"application/json")]
        if self.config.access == "password":
            status = 401
            headers.append((b"www-authenticate", b'Basic realm="webterm", charset="UTF-8"'))
        else:
            status = 403
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"error":"not allowed"}'})

    # --- how many terminals one address holds ---------------------------------------------

    def _over_address_cap(self, address: str, identity: str, now: float) -> bool:
        if self.config.max_per_address <= 0:
            return False
        held = self._held.setdefault(address, {})
        for other in [i for i, seen in held.items() if now - seen > HOLD_SECONDS]:
            del held[other]
        return identity not in held and len(held) >= self.config.max_per_address

    # --- identity -----------------------------------------------------------------------

    def _address(self) -> str:
        peer = request.remote_addr
        return remote_address(
            peer, request.headers.get("X-Forwarded-For"), self.config.trusted_proxies
        )

    def _identity(self, body: dict[str, Any]) -> tuple[str, str | None, str | None]:
        """``(identity for the manager, id to hand back to the tab, cookie to set)``."""
        secret = self.config.secret
        mode = self.config.identity
        if mode == "ip":
            return f"ip:{self._address()}", None, None
        if mode == "browser":
            presented = request.cookies.get(COOKIE_NAME)
            random_part = verified_id(secret, presented)
            if random_part is not None:
                return f"browser:{random_part}", None, None
            fresh = issue_id(secret)
            return f"browser:{verified_id(secret, fresh)}", None, fresh
        random_part = verified_id(secret, body.get("client"))
        if random_part is not None:
            return f"tab:{random_part}", str(body["client"]), None
        fresh = issue_id(secret)
        return f"tab:{verified_id(secret, fresh)}", fresh, None

    def _secure(self) -> bool:
        if request.scheme == "https":
            return True
        proto = request.headers.get("X-Forwarded-Proto", "")
        peer = request.remote_addr
        trusted = remote_address(peer, "0.0.0.0", self.config.trusted_proxies) != peer
        return trusted and proto.lower() == "https"

    # --- the app ------------------------------------------------------------------------

    def _create_app(self) -> QuartTrio:
        app = QuartTrio("webterm.webserver", static_folder=None)
        app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

        @app.after_request
        async def headers(response: Response) -> Response:
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            route = request.url_rule.rule if request.url_rule is not None else "unmatched"
            self.m_requests.labels(route, str(response.status_code)).inc()
            log.info("%s %s %d", request.method, route, response.status_code)
            return response

        @app.get("/")
        async def index() -> Response:
            response = await send_from_directory(self.static_dir, "index.html")
            response.headers["Cache-Control"] = "no-cache"
            return response

        @app.get("/static/<path:filename>")
        async def static_file(filename: str) -> Response:
            try:
                response = await send_from_directory(self.static_dir, filename)
            except (OSError, ValueError):  # e.g. a name too long for the filesystem
                return _error(404, "not found")
            # Assets are rebuilt with each release; revalidate cheaply (ETag) after an hour.
            response.headers["Cache-Control"] = "public, max-age=3600, must-revalidate"
            return response

        @app.post("/api/terminal")
        async def terminal() -> Response:
            started = trio.current_time()
            body = await _json_body()
            if isinstance(body, Response):
                return body
            identity, tab_id, cookie = self._identity(body)
            now = trio.current_time()
            for limiter, key in ((self.per_address, self._address()), (self.per_client, identity)):
                verdict = limiter.take(key, now)
                if not verdict.allowed:
                    return _error(
                        429, "too many terminal requests", int(verdict.retry_after_header)
                    )
            address = self._address()
            if self._over_address_cap(address, identity, now):
                return _error(429, "too many terminals from your address", RETRY_AFTER_CAP)
            response = await self._allocate(identity, tab_id)
            if response.status_code == 200:
                self._held.setdefault(address, {})[identity] = now
            if cookie is not None:
                response.set_cookie(
                    COOKIE_NAME,
                    cookie,
                    httponly=True,
                    samesite="Strict",
                    secure=self._secure(),
                    path="/",
                    max_age=30 * 24 * 3600,
                )
            self.m_allocation.observe(trio.current_time() - started)
            return response

        @app.delete("/api/terminal")
        async def give_back() -> Response:
            body = await _json_body()
            if isinstance(body, Response):
                return body
            identity, _, _ = self._identity(body)
            self._held.get(self._address(), {}).pop(identity, None)
            try:
                answer = await self.manager.delete(f"/v1/allocations/{identity}")
            except httpx.HTTPError:
                return _error(503, "terminal manager unavailable", RETRY_AFTER_MANAGER_DOWN)
            return _json({"released": answer.status_code == 200})

        @app.post("/getPseudoTerminalAddress")
        async def legacy() -> Response:
            """The original project's call. The claimed ``IP`` is not trusted: the
            caller's identity is its own remote address, as in ``ip`` mode."""
            body = await _json_body()
            if isinstance(body, Response):
                return body
            if not isinstance(body.get("IP"), str):
                return _error(400, "'IP' must be a string")
            try:
                answer = await self.manager.post(
                    "/v1/allocations", json={"client": f"ip:{self._address()}"}
                )
            except httpx.HTTPError:
                return _error(503, "terminal manager unavailable", RETRY_AFTER_MANAGER_DOWN)
            if answer.status_code != 200:
                return _passthrough_error(answer)
            got = answer.json()
            return _json({"podName": got["terminal"], "ip": got["address"]})

        @app.get("/healthz")
        async def healthz() -> Response:
            return _json({"status": "ok"})

        @app.get("/readyz")
        async def readyz() -> Response:
            try:
                answer = await self.manager.get("/readyz", timeout=2.0)
            except httpx.HTTPError:
                return _error(503, "terminal manager unavailable")
            if answer.status_code != 200:
                return _error(503, "terminal manager not ready")
            return _json({"status": "ready"})

        @app.get("/metrics")
        async def metrics() -> Response:
            return Response(generate_latest(self.registry), content_type=CONTENT_TYPE_LATEST)

        for status, message in [
            (400, "bad request"),
            (404, "not found"),
            (405, "method not allowed"),
            (413, "request body too large"),
            (500, "internal error"),
        ]:
            app.register_error_handler(status, _error_handler(status, message))
        return app

    async def _allocate(self, identity: str, tab_id: str | None) -> Response:
        try:
            answer = await self.manager.post("/v1/allocations", json={"client": identity})
        except httpx.HTTPError as exc:
            log.warning("manager unreachable: %s", type(exc).__name__)
            return _error(503, "terminal manager unavailable", RETRY_AFTER_MANAGER_DOWN)
        if answer.status_code != 200:
            return _passthrough_error(answer)
        got = answer.json()
        name = got["terminal"]
        if self.config.address_mode == "nodeport":
            url = f"ws://{got['address']}/ws"
        else:
            scheme = "wss" if self._secure() else "ws"
            url = f"{scheme}://{request.host}/terminals/{name}/ws"
        return _json(
            {
                "terminal": name,
                "url": url,
                "token": got["token"],
                "reconnect": bool(got.get("reconnect")),
                "client": tab_id,
            }
        )


def _passthrough_error(answer: httpx.Response) -> Response:
    try:
        body = answer.json()
        message = str(body.get("error", "no terminal available"))
        retry_after = int(body.get("retry_after", answer.headers.get("Retry-After", 5)))
    except (ValueError, TypeError, AttributeError):
        message, retry_after = "no terminal available", 5
    status = answer.status_code if answer.status_code in (429, 503) else 503
    return _error(status, message, retry_after)


def _error_handler(status: int, message: str) -> Any:
    async def handler(_: Exception) -> Response:
        return _error(status, message)

    return handler


async def _json_body() -> dict[str, Any] | Response:
    raw = await request.get_data(as_text=False)
    if len(raw) > MAX_BODY_BYTES:
        return _error(413, "request body too large")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        return _error(400, "request body must be JSON")
    if not isinstance(body, dict):
        return _error(400, "request body must be a JSON object")
    return body


async def serve(
    config: WebserverConfig,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    manager_transport: httpx.AsyncBaseTransport | None = None,
    static_dir: Path | None = None,
) -> None:
    """Serve the page, the API and the proxy until cancelled."""
    registry = CollectorRegistry()
    hyper = HypercornConfig()
    hyper.bind = [f"{config.host}:{config.port}"]
    hyper.accesslog = None
    hyper.graceful_timeout = 2.0
    hyper.websocket_max_message_size = 1024 * 1024
    async with httpx.AsyncClient(
        base_url=config.manager_url,
        transport=manager_transport,
        timeout=MANAGER_TIMEOUT,
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
    ) as manager:
        webserver = Webserver(config, manager, registry, static_dir or STATIC_DIR)
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(_serve_http, webserver, hyper)
            port = int(binds[0].rsplit(":", 1)[1])
            log.info("webserver listening on %s", binds[0])
            task_status.started(port)


async def _serve_http(
    app: Any, hyper: HypercornConfig, *, task_status: trio.TaskStatus[list[str]]
) -> None:
    await hypercorn_serve(app, hyper, task_status=task_status)


__all__ = ["Webserver", "serve"]
