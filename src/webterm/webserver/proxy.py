"""The terminal WebSocket proxy: ``/terminals/{name}/ws`` → the terminal's ``/ws``.

A raw ASGI handler, not a Quart route: the proxy is on the hot path of every byte a
terminal prints, and Quart's websocket layer adds queues and per-message work we do
not need. Each direction is one loop that awaits its send before receiving again, so
backpressure crosses the proxy: a slow browser stalls the terminal's socket, and the
terminal stops reading its pty (see ``webterm.pty.server``).

Before anything is dialed, the token offered as a subprotocol must be genuine,
unexpired and for this terminal, and the Origin must be the page's own (or listed):
unauthenticated floods never reach a terminal. Refusals are sent as close codes
after the handshake (4401, 4403, 4404) so the page can tell them apart; a browser
sees nothing of an HTTP rejection.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import trio
from prometheus_client import CollectorRegistry, Counter, Gauge
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket

from webterm.protocol import (
    CLOSE_REASONS,
    MAX_FRAME_BYTES,
    SUBPROTOCOL,
    CloseCode,
    TokenError,
    read_token,
    token_from_subprotocols,
)

log = logging.getLogger("webterm.webserver.proxy")

PATH: Final = re.compile(r"^/terminals/([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)/ws$")
"""Terminal names are DNS labels (pod names); anything else never reaches a lookup."""

ADDRESS_TTL: Final = 5.0
"""Seconds a terminal's address is cached; a failed dial forgets it at once."""

DIAL_TIMEOUT: Final = 10.0
"""Seconds to open the WebSocket to the terminal (TCP + handshake)."""

CLOSE_TIMEOUT: Final = 2.0

_RESERVED_CLOSE_CODES: Final = frozenset({1005, 1006, 1015})
"""Codes that describe a close but may not be sent in a close frame."""

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class AddressBook:
    """Terminal name and instance → ``host:port``, asked of the manager and cached
    briefly. Keyed by instance too: a recycled terminal keeps its name but not its
    address (a local terminal gets a new port, a pod a new IP)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self._cache: dict[tuple[str, str], tuple[float, str]] = {}

    async def lookup(self, name: str, instance: str) -> str | None:
        """The address of ``instance`` of ``name``, or None if that instance is not
        the terminal's current one (or the manager cannot say)."""
        now = trio.current_time()
        cached = self._cache.get((name, instance))
        if cached is not None and now - cached[0] < ADDRESS_TTL:
            return cached[1]
        try:
            response = await self.http.get(f"/v1/terminals/{name}")
        except httpx.HTTPError as exc:
            log.warning("manager unreachable for %s: %s", name, exc)
            return None
        if response.status_code != 200:
            return None
        described = response.json()
        address = described.get("address")
        if described.get("instance") != instance or not isinstance(address, str) or not address:
            return None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[(name, instance)] = (now, address)
        return address

    def forget(self, name: str, instance: str) -> None:
        self._cache.pop((name, instance), None)


def origin_allowed(headers: dict[bytes, bytes], allowed: tuple[str, ...]) -> bool:
    """Same origin as the Host the browser dialed, or explicitly allowed. A request
    without Origin is not from a browser page, and carries its token anyway."""
    origin = headers.get(b"origin")
    if origin is None:
        return True
    text = origin.decode("latin-1")
    if text in allowed:
        return True
    host = headers.get(b"host", b"").decode("latin-1")
    return bool(host) and urlsplit(text).netloc == host


class TerminalProxy:
    def __init__(
        self,
        *,
        secret: bytes,
        addresses: AddressBook,
        allowed_origins: tuple[str, ...],
        registry: CollectorRegistry,
    ) -> None:
        self.secret = secret
        self.addresses = addresses
        self.allowed_origins = allowed_origins
        self.m_open = Gauge(
            "webterm_proxied_connections", "Open proxied WebSockets", registry=registry
        )
        self.m_bytes = Counter(
            "webterm_proxied_bytes", "Bytes proxied", ["direction"], registry=registry
        )
        self._to_browser = self.m_bytes.labels("to_browser")
        self._to_terminal = self.m_bytes.labels("to_terminal")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        match = PATH.match(scope["path"])
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        offered: list[str] = list(scope.get("subprotocols", []))
        if match is None:
            await _refuse(send, CloseCode.TERMINAL_GONE)
            return
        name = match.group(1)
        if not origin_allowed(headers, self.allowed_origins):
            await _refuse(send, CloseCode.FORBIDDEN_ORIGIN)
            return
        token = token_from_subprotocols(offered)
        try:
            if token is None:
                raise TokenError("no token offered")
            claims = read_token(self.secret, token, now=time.time(), audience="terminal")
            if claims.terminal != name:
                raise TokenError("token is for another terminal")
        except TokenError:
            await _refuse(send, CloseCode.UNAUTHORIZED)
            return
        address = await self.addresses.lookup(name, claims.instance)
        if address is None:  # recycled since the token was issued: ask for a new one
            await _refuse(send, CloseCode.UNAUTHORIZED)
            return
        host, _, port = address.rpartition(":")
        connected = False
        try:
            async with open_websocket(
                host.strip("[]"),
                int(port),
                "/ws",
                use_ssl=False,
                subprotocols=offered,
                max_message_size=MAX_FRAME_BYTES,
                receive_buffer_size=256 * 1024,
                message_queue_size=4,
                connect_timeout=DIAL_TIMEOUT,
                disconnect_timeout=CLOSE_TIMEOUT,
            ) as upstream:
                connected = True
                self.m_open.inc()
                try:
                    await send({"type": "websocket.accept", "subprotocol": SUBPROTOCOL})
                    await self._pump(upstream, receive, send)
                finally:
                    self.m_open.dec()
        except (HandshakeError, OSError, ValueError) as exc:
            if connected:
                log.info("proxied connection to %s ended: %s", name, type(exc).__name__)
                return
            self.addresses.forget(name, claims.instance)
            log.info("terminal %s unreachable: %s", name, type(exc).__name__)
            await _refuse(send, CloseCode.TERMINAL_GONE)

    async def _pump(self, upstream: Any, receive: Receive, send: Send) -> None:
        async with trio.open_nursery() as nursery:

            async def terminal_to_browser() -> None:
                to_browser = self._to_browser
                try:
                    while True:
                        data = await upstream.get_message()
                        if isinstance(data, bytes):
                            await send({"type": "websocket.send", "bytes": data})
                        else:
                            await send({"type": "websocket.send", "text": data})
                        to_browser.inc(len(data))
                except ConnectionClosed as closed:
                    reason = closed.reason
                    code = reason.code if reason is not None else CloseCode.TERMINAL_GONE
                    if code in _RESERVED_CLOSE_CODES:
                        code = CloseCode.TERMINAL_GONE
                    text = (reason.reason if reason is not None else None) or CLOSE_REASONS.get(
                        code, ""
                    )
                    await send({"type": "websocket.close", "code": code, "reason": text})
                nursery.cancel_scope.cancel()

            nursery.start_soon(terminal_to_browser)
            to_terminal = self._to_terminal
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    data = message.get("bytes")
                    if data is None:
                        data = message.get("text") or ""
                    try:
                        await upstream.send_message(data)
                    except ConnectionClosed:
                        break  # the other task reports the terminal's close
                    to_terminal.inc(len(data))
                elif kind == "websocket.disconnect":
                    code = int(message.get("code", 1000))
                    if code in _RESERVED_CLOSE_CODES or code < 1000:
                        code = CloseCode.GOING_AWAY
                    with trio.move_on_after(CLOSE_TIMEOUT):
                        await upstream.aclose(code)
                    nursery.cancel_scope.cancel()
                    return


async def _refuse(send: Send, code: int) -> None:
    """Accept, then close with ``code``: a page can read a close code, not an HTTP status."""
    await send({"type": "websocket.accept", "subprotocol": SUBPROTOCOL})
    await send({"type": "websocket.close", "code": code, "reason": CLOSE_REASONS.get(code, "")})
