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

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from quart import Response, request
from quart_trio import QuartTrio

from webterm.config import KeySource, WebserverConfig
from webterm.hosts import listens_on_loopback_only, origin_hosts, rebinding_safe
from webterm.keys import KEYS_PATH, PublicKeys
from webterm.protocol import MAX_FRAME_BYTES
from webterm.ratelimit import TokenBucketLimiter
from webterm.webserver.forwarding import (
    TrustedProxies,
    is_secure,
    joined_headers,
    limit_key,
    public_host,
    remote_address,
    same_origin,
)
from webterm.webserver.identity import COOKIE_NAME, issue_id, manager_identity, verified_id
from webterm.webserver.proxy import PATH as TERMINAL_PATH
from webterm.webserver.proxy import AddressBook, Receive, Scope, Send, TerminalProxy
from webterm.webserver.security import (
    CONTENT_SECURITY_POLICY,
    SECURITY_HEADERS,
    connect_sources,
    content_security_policy,
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

log = logging.getLogger("webterm.webserver")

STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "static"

MAX_BODY_BYTES: Final = 16 * 1024
"""Request bodies: the API's are ~100 bytes; 16 KiB is h11's own header cap."""

MANAGER_TIMEOUT: Final = httpx.Timeout(connect=5.0, read=150.0, write=5.0, pool=10.0)
"""The manager may hold an allocation while a terminal starts (its --ready-timeout,
120 s by default), so reads may take that long; connecting may not."""

READY_TIMEOUT: Final = 2.0
"""Seconds /readyz waits for the manager's /readyz: probes have short deadlines."""

SHUTDOWN_GRACE: Final = 3.0
"""Seconds after cancellation for open connections to finish: relays close both sides
with 1001 at once; idle keep-alive connections are closed by Hypercorn."""

RETRY_AFTER_MANAGER_DOWN: Final = 5
"""Seconds the page waits before asking again when the manager cannot be reached."""

RETRY_AFTER_CAP: Final = 60
"""Seconds before asking again when this address already holds its share of terminals."""

MAX_RETRY_AFTER: Final = 3600
"""A Retry-After from the manager beyond an hour is a bug; clamp what we pass on."""

OPEN_PATHS: Final = frozenset({"/healthz", "/readyz"})
"""Probes stay reachable behind the access gate."""

HOLD_SECONDS: Final = 15 * 60
"""An address is counted as holding a terminal for a client that asked for one within
this long (pages ask again on every reconnect), or whose terminal the proxy is relaying
now, however long ago it asked."""

MAX_HELD_ADDRESSES: Final = 100_000
"""Addresses tracked for the per-address cap before expired entries are swept."""


COOKIE_MAX_AGE: Final = 30 * 24 * 3600
"""Seconds a browser-mode identity cookie lives: a month of coming back to the same
terminal (which the manager recycles after its idle timeout anyway)."""

WRONG_HOST: Final = (
    "this server answers only for localhost or this machine's IP address; "
    "serve other names with --allowed-origin"
)
"""The 403 for a ``Host`` that a loopback-only webserver does not answer for."""

MAX_CLIENT_FIELD: Final = 200
"""A ``client`` or ``IP`` field longer than this is not an id we could have issued."""

_ROUTES: Final = {
    "/": "/",
    "/api/terminal": "/api/terminal",
    "/getPseudoTerminalAddress": "/getPseudoTerminalAddress",
    "/healthz": "/healthz",
    "/readyz": "/readyz",
    "/metrics": "/metrics",
}
"""Paths counted under their own label in the request metric; others are ``/static/*``
or ``other``, so a scan of random paths cannot explode the metric's cardinality."""


class _BadRequest(Exception):
    """An answer to give instead of going on (raised by body parsing)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(
        json.dumps(body, separators=(",", ":")),
        status=status,
        content_type="application/json",
        headers=headers or {},
    )
    response.headers.setdefault("Cache-Control", "no-store")  # answers carry tokens
    return response


def _error(status: int, message: str, retry_after: int | None = None) -> Response:
    if status == 413:  # the rest of the body is never read: this connection is done
        return _json({"error": message}, status, {"Connection": "close"})
    if retry_after is None:
        return _json({"error": message}, status)
    retry_after = min(max(1, retry_after), MAX_RETRY_AFTER)
    return _json(
        {"error": message, "retry_after": retry_after},
        status,
        {"Retry-After": str(retry_after)},
    )


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
        self.config = config
        self.manager = manager
        self.registry = registry
        self.site = StaticSite(static_dir)
        self.trusted = TrustedProxies(config.trusted_proxies)
        self.allowed_origins = frozenset(config.allowed_origins)
        # per client identity, and per source address (IPv6: per /64)
        self.per_client = TokenBucketLimiter(
            rate=config.client_rate[0], burst=config.client_rate[1]
        )
        self.per_address = TokenBucketLimiter(
            rate=config.address_rate[0], burst=config.address_rate[1]
        )
        self.m_requests = Counter(
            "webterm_http_requests", "HTTP requests", ["route", "status"], registry=registry
        )
        self.m_allocation = Histogram(
            "webterm_allocation_seconds",
            "Time the manager took to answer an allocation",
            ["outcome"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self._held: dict[str, dict[str, float]] = {}  # limit key -> identity -> last request
        # identity -> its client hash (the manager's answer; the proxy counts relays by it)
        self._hashes: dict[str, str] = {}
        self.loopback_only = listens_on_loopback_only(config.host)
        self.allowed_hosts = origin_hosts(config.allowed_origins)
        self.proxy = TerminalProxy(
            keys=keys,
            addresses=AddressBook(manager),
            allowed_origins=config.allowed_origins,
            trusted=self.trusted,
            registry=registry,
            closing=closing,
        )
        self.app = self._create_app()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if self.loopback_only and kind in ("http", "websocket") and not self._host_allowed(scope):
            await self._wrong_host(kind, send)
        elif kind == "websocket" and scope["path"].startswith("/terminals/"):
            if self._admitted(scope):
                await self.proxy(scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 4401})  # before accept: 403
        elif kind == "http":
            await self._http(scope, receive, send)
        else:  # lifespan, and WebSockets elsewhere (Quart answers 404/403)
            await self.app(scope, receive, send)  # type: ignore[arg-type]

    # --- the DNS-rebinding guard (listening on loopback only) ------------------------------

    def _host_allowed(self, scope: Scope) -> bool:
        return rebinding_safe(_headers(scope).get("host"), self.allowed_hosts)

    async def _wrong_host(self, kind: str, send: Send) -> None:
        """403 for a request naming a host that is not this machine: on loopback, that is
        another site's page whose DNS name now points here (see :mod:`webterm.hosts`)."""
        log.warning("refused a request for a Host that is not this machine (DNS rebinding?)")
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
            return
        body = json.dumps({"error": WRONG_HOST}).encode()
        headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    # --- every HTTP answer: headers, metric, one log line ----------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 0
        extra = self._response_headers(scope)

        async def send_wrapped(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                present = {name.lower() for name, _ in message.get("headers", [])}
                headers = list(message.get("headers", []))
                headers.extend(h for h in extra if h[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        try:
            if self._admitted(scope):
                await self.app(scope, receive, send_wrapped)  # type: ignore[arg-type]
            else:
                await self._refuse(send_wrapped)
        finally:
            path = scope.get("path", "")
            route = _ROUTES.get(path) or ("/static/*" if path.startswith("/static/") else "other")
            self.m_requests.labels(route, str(status)).inc()
            log.info(
                "method=%s path=%s status=%d ms=%.1f",
                scope.get("method", "?"),
                _loggable(path),
                status,
                (time.perf_counter() - started) * 1000,
            )

    def _response_headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        host = self._host_of(scope)
        policy = content_security_policy(
            connect_sources(self.config.address_mode, host, self.config.public_host)
        )
        headers = [(b"content-security-policy", policy.encode())]
        headers.extend((k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items())
        return headers

    def _host_of(self, scope: Scope) -> str | None:
        headers = _headers(scope)
        return public_host(
            headers.get("host"), headers.get("x-forwarded-host"), _peer(scope), self.trusted
        )

    # --- the access gate ----------------------------------------------------------------

    def _admitted(self, scope: Scope) -> bool:
        """The optional gate in front of everything but the probes."""
        mode = self.config.access
        if mode == "none" or scope["path"] in OPEN_PATHS:
            return True
        headers = _headers(scope)
        if mode == "password":
            scheme, _, encoded = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "basic":
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
        if _peer(scope) not in self.trusted:
            return False
        return bool(headers.get(self.config.access_header.lower(), "").strip())

    async def _refuse(self, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
        if self.config.access == "password":
            status = 401
            headers.append((b"www-authenticate", b'Basic realm="webterm", charset="UTF-8"'))
        else:
            status = 403
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"error":"not allowed"}'})

    # --- who is asking --------------------------------------------------------------------

    def _address(self) -> str:
        return remote_address(request.remote_addr, _header("X-Forwarded-For"), self.trusted)

    def _secure(self) -> bool:
        return is_secure(
            request.scheme,
            _header("X-Forwarded-Proto"),
            request.remote_addr,
            self.trusted,
        )

    def _identity(self, body: dict[str, Any], *, issue: bool) -> tuple[str | None, str | None]:
        """``(identity for the manager, id to hand the tab / cookie to set)``.

        A missing or forged id is replaced by a fresh one when ``issue``; otherwise
        (giving a terminal back) there is nobody to speak for: ``(None, None)``."""
        secret = self.config.secret
        mode = self.config.identity
        if mode == "ip":
            return manager_identity("ip", self._address()), None
        presented = request.cookies.get(COOKIE_NAME) if mode == "browser" else body.get("client")
        random_part = verified_id(secret, mode, presented)
        if random_part is not None:
            return manager_identity(mode, random_part), presented if mode == "tab" else None
        if not issue:
            return None, None
        fresh = issue_id(secret, mode)
        random_part = fresh.partition(".")[0]
        return manager_identity(mode, random_part), fresh

    def _foreign_origin(self) -> bool:
        """A browser request from another site's page (defence in depth against CSRF:
        browsers send Origin with every POST and DELETE)."""
        origin = request.headers.get("Origin")
        if origin is None or origin in self.allowed_origins:
            return False
        host = self._host_of_request()
        return host is None or not same_origin(origin, host)

    # --- limits ---------------------------------------------------------------------------

    def _limited(self, identity: str, address: str) -> Response | None:
        """A 429 if this request is over a rate or the address is over its cap."""
        now = trio.current_time()
        key = limit_key(address)
        for limiter, bucket in ((self.per_address, key), (self.per_client, identity)):
            verdict = limiter.take(bucket, now)
            if not verdict.allowed:
                return _error(
                    429, "too many terminal requests", math.ceil(verdict.retry_after) or 1
                )
        if self.config.max_per_address > 0:
            held = self._held.get(key, {})
            for other in [i for i, seen in held.items() if now - seen > HOLD_SECONDS]:
                if self._hashes.get(other) not in self.proxy.relaying:
                    del held[other]
                    self._hashes.pop(other, None)
            if identity not in held and len(held) >= self.config.max_per_address:
                return _error(429, "too many terminals from your address", RETRY_AFTER_CAP)
        return None

    def _hold(self, identity: str, address: str) -> bool:
        """Count ``identity`` against ``address``'s cap from now; True if it was not
        counted before."""
        if self.config.max_per_address <= 0:
            return False
        now = trio.current_time()
        if len(self._held) >= MAX_HELD_ADDRESSES:
            for key in [k for k, held in self._held.items() if not _fresh(held, now)]:
                for identity_held in self._held.pop(key):
                    self._hashes.pop(identity_held, None)
        held = self._held.setdefault(limit_key(address), {})
        new = identity not in held
        held[identity] = now
        return new

    def _release(self, identity: str, address: str) -> None:
        held = self._held.get(limit_key(address))
        if held is not None:
            held.pop(identity, None)
            self._hashes.pop(identity, None)
            if not held:
                del self._held[limit_key(address)]

    # --- the manager ----------------------------------------------------------------------

    async def _allocate_counted(self, identity: str, address: str) -> dict[str, Any] | Response:
        """:meth:`_allocate`, with ``identity`` counted against ``address``'s cap while
        the manager answers (which can take minutes while a terminal starts) and after a
        success: requests sent in parallel cannot all pass the check made before."""
        new = self._hold(identity, address)
        allocated = False
        try:
            got = await self._allocate(identity)
            allocated = not isinstance(got, Response)
            if allocated and self.config.max_per_address > 0:
                assert not isinstance(got, Response)
                self._hashes[identity] = got["client_hash"]
            return got
        finally:
            if new and not allocated:
                self._release(identity, address)

    async def _allocate(self, identity: str) -> dict[str, Any] | Response:
        """The manager's allocation for ``identity`` (validated), or the error answer."""
        started = trio.current_time()
        try:
            answer = await self.manager.post("/v1/allocations", json={"client": identity})
        except httpx.HTTPError as exc:
            self.m_allocation.labels("unreachable").observe(trio.current_time() - started)
            log.warning("manager unreachable: %s", type(exc).__name__)
            return _error(503, "terminal manager unavailable", RETRY_AFTER_MANAGER_DOWN)
        outcome = "ok" if answer.status_code == 200 else str(answer.status_code)
        self.m_allocation.labels(outcome).observe(trio.current_time() - started)
        if answer.status_code != 200:
            return _passthrough_error(answer)
        got = _allocation(answer)
        if got is None:
            log.warning("manager answered an allocation with an unexpected body")
            return _error(503, "terminal manager answered badly", RETRY_AFTER_MANAGER_DOWN)
        return got

    def _terminal_url(self, name: str, address: str, host: str | None) -> str:
        """What the browser dials for terminal ``name`` at ``address``; ``host`` is the
        page's own (validated) host, needed in proxy mode."""
        if self.config.address_mode == "nodeport":
            terminal_host, _, port = address.rpartition(":")
            if self.config.public_host:
                terminal_host = self.config.public_host
            if ":" in terminal_host and not terminal_host.startswith("["):
                terminal_host = f"[{terminal_host}]"
            return f"ws://{terminal_host}:{port}/ws"
        scheme = "wss" if self._secure() else "ws"
        return f"{scheme}://{host}/terminals/{name}/ws"

    # --- the app --------------------------------------------------------------------------

    def _create_app(self) -> QuartTrio:
        app = QuartTrio("webterm.webserver", static_folder=None)
        app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
        app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False

        @app.get("/")
        async def index() -> Response:
            asset = self.site.index()
            if asset is None:
                return _error(404, "the page is not built (no index.html)")
            return _asset_response(asset, CACHE_INDEX)

        @app.get("/static/<path:filename>")
        async def static_file(filename: str) -> Response:
            asset = self.site.asset(filename)
            if asset is None:
                return _error(404, "not found")
            versioned = request.args.get(VERSION_PARAM) == asset.version
            return _asset_response(asset, CACHE_VERSIONED if versioned else CACHE_UNVERSIONED)

        @app.post("/api/terminal")
        async def terminal() -> Response:
            try:
                if self._foreign_origin():
                    return _error(403, "origin not allowed")
                host = self._host_of_request()
                if self.config.address_mode == "proxy" and host is None:
                    return _error(400, "bad Host header")
                body = await _json_body()
                if "client" in body and not _short_string_or_null(body["client"]):
                    return _error(400, "'client' must be a string")
                identity, handed = self._identity(body, issue=True)
                assert identity is not None
                address = self._address()
                refusal = self._limited(identity, address)
                if refusal is not None:
                    return refusal
                got = await self._allocate_counted(identity, address)
                if isinstance(got, Response):
                    return got
                response = _json(
                    {
                        "terminal": got["terminal"],
                        "url": self._terminal_url(got["terminal"], got["address"], host),
                        "token": got["token"],
                        "reconnect": got["reconnect"],
                        "client": handed if self.config.identity == "tab" else None,
                    }
                )
            except _BadRequest as bad:
                return bad.response
            if self.config.identity == "browser" and handed is not None:
                response.set_cookie(
                    COOKIE_NAME,
                    handed,
                    max_age=COOKIE_MAX_AGE,
                    path="/",
                    secure=self._secure(),
                    httponly=True,
                    samesite="Strict",
                )
            return response

        @app.delete("/api/terminal")
        async def give_back() -> Response:
            try:
                if self._foreign_origin():
                    return _error(403, "origin not allowed")
                body = await _json_body()
            except _BadRequest as bad:
                return bad.response
            if "client" in body and not _short_string_or_null(body["client"]):
                return _error(400, "'client' must be a string")
            identity, _ = self._identity(body, issue=False)
            if identity is None:
                return _json({"released": False})
            self._release(identity, self._address())
            try:
                answer = await self.manager.delete(f"/v1/allocations/{quote(identity, safe='')}")
            except httpx.HTTPError:
                return _error(503, "terminal manager unavailable", RETRY_AFTER_MANAGER_DOWN)
            return _json({"released": answer.status_code == 200})

        @app.post("/getPseudoTerminalAddress")
        async def legacy() -> Response:
            """The original project's call, kept for its clients. The ``IP`` it sends
            was the caller's own address; it is not believed (anyone could name anyone):
            the caller's identity is its real remote address, exactly as in ``ip``
            mode, and it can never name a tab's or browser's terminal."""
            try:
                if self._foreign_origin():
                    return _error(403, "origin not allowed")
                body = await _json_body()
            except _BadRequest as bad:
                return bad.response
            if not isinstance(body.get("IP"), str) or len(body["IP"]) > MAX_CLIENT_FIELD:
                return _error(400, "'IP' must be a string")
            address = self._address()
            identity = manager_identity("ip", address)
            refusal = self._limited(identity, address)
            if refusal is not None:
                return refusal
            got = await self._allocate_counted(identity, address)
            if isinstance(got, Response):
                return got
            return _json({"podName": got["terminal"], "ip": got["address"]})

        @app.get("/healthz")
        async def healthz() -> Response:
            return _json({"status": "ok"})

        @app.get("/readyz")
        async def readyz() -> Response:
            answer = None
            with trio.move_on_after(READY_TIMEOUT):
                with contextlib.suppress(httpx.HTTPError):
                    answer = await self.manager.get("/readyz")
            if answer is None or answer.status_code != 200:
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

    def _host_of_request(self) -> str | None:
        return public_host(
            _header("Host"),
            _header("X-Forwarded-Host"),
            request.remote_addr,
            self.trusted,
        )


def _fresh(held: dict[str, float], now: float) -> bool:
    return any(now - seen <= HOLD_SECONDS for seen in held.values())


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers, lowercased names; a header sent on several lines is one
    comma-separated list (RFC 9110, 5.3), as :func:`_header` reads it."""
    return joined_headers(scope.get("headers", []))


def _header(name: str) -> str | None:
    """The current request's header ``name``, its lines joined (see :func:`_headers`):
    a client's own ``X-Forwarded-For`` line cannot hide the one a proxy added after it."""
    values = request.headers.getlist(name)
    return ", ".join(values) if values else None


def _peer(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _loggable(path: str) -> str:
    return path[:200].encode("unicode_escape").decode("ascii")


def _short_string_or_null(value: object) -> bool:
    return value is None or (isinstance(value, str) and len(value) <= MAX_CLIENT_FIELD)


def _allocation(answer: httpx.Response) -> dict[str, Any] | None:
    """The manager's allocation if it has the contract's shape, else None."""
    try:
        got = answer.json()
    except ValueError:
        return None
    if not isinstance(got, dict):
        return None
    name, address, token = got.get("terminal"), got.get("address"), got.get("token")
    hashed = got.get("client_hash")
    if not isinstance(name, str) or TERMINAL_PATH.match(f"/terminals/{name}/ws") is None:
        return None
    if not isinstance(address, str) or ":" not in address or not isinstance(token, str):
        return None
    if not isinstance(hashed, str):
        return None
    return {
        "terminal": name,
        "address": address,
        "token": token,
        "client_hash": hashed,
        "reconnect": bool(got.get("reconnect")),
    }


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


def _passthrough_error(answer: httpx.Response) -> Response:
    """The manager's refusal, as the page expects it: 429 stays 429, anything else is
    "no terminal now" (503), each with the manager's message and retry delay."""
    try:
        body = answer.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    message = body.get("error")
    if not isinstance(message, str) or not message:
        message = "no terminal available"
    retry_after = RETRY_AFTER_MANAGER_DOWN
    for raw in (body.get("retry_after"), answer.headers.get("Retry-After")):
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            continue
        try:
            retry_after = math.ceil(float(raw))
            break
        except (ValueError, OverflowError):
            continue
    status = 429 if answer.status_code == 429 else 503
    return _error(status, message[:200], retry_after)


def _error_handler(status: int, message: str) -> Callable[[Exception], Awaitable[Response]]:
    async def handler(_: Exception) -> Response:
        return _error(status, message)

    return handler


async def _json_body() -> dict[str, Any]:
    """The request's JSON object ({} for an empty body), or raise :class:`_BadRequest`."""
    raw = await request.get_data(as_text=False)
    if len(raw) > MAX_BODY_BYTES:
        raise _BadRequest(_error(413, "request body too large"))
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise _BadRequest(_error(400, "request body must be JSON")) from None
    if not isinstance(body, dict):
        raise _BadRequest(_error(400, "request body must be a JSON object"))
    return body


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
