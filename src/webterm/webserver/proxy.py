"""The terminal WebSocket proxy: ``/terminals/{name}/ws`` → the terminal's ``/ws``.

Theory of operation
-------------------
A raw ASGI handler, not a Quart route: the proxy is on the hot path of every byte a
terminal prints, and Quart's websocket layer adds queues, a task and per-message
work we do not need. The app's dispatcher hands it WebSocket scopes whose path starts
with ``/terminals/``.

*Admission*, before anything is dialed, so unauthenticated floods never reach a
terminal:

1. the path names a terminal (a DNS label), else 4404;
2. the ``Origin`` is the page's own host (scheme-agnostic ``host:port`` compare; a
   trusted proxy's ``X-Forwarded-Host`` counts) or listed in ``--allowed-origin``,
   else 4403 — a request without ``Origin`` is not from a browser and still needs a
   token;
3. the token offered as subprotocol ``webterm.token.<token>`` is genuine (signed by a
   key of the manager's published set, refreshed once for an unknown key id), unexpired,
   for the terminal audience (an owner's) or the share audience (a viewer's, by a share
   link) and names this terminal, else 4401
   (:func:`webterm.protocol.read_token`: the proxy cannot check the *instance*, the
   terminal does);
4. the manager knows the terminal (``GET /v1/terminals/{name}``, cached for
   :data:`~webterm.webserver.addresses.ADDRESS_TTL`) and its current instance is the token's, else 4404 (unknown)
   or 4401 (recycled since the token was issued: the page asks for a fresh one).

Refusals are close codes after an accepted handshake, because a page can read a close
code but sees nothing of an HTTP status; a client that does not even offer
``webterm.v1`` gets HTTP 403.

*Relay*: the terminal is dialed with trio-websocket offering the browser's own
subprotocols; the browser is accepted with ``webterm.v1``. Then one task per
direction, each awaiting its send before receiving again — no queue of our own, so
backpressure crosses the proxy: a slow browser stalls the terminal's socket (and the
terminal stops reading its pty); a fast typist is paced by the terminal. The only
buffers are trio-websocket's bounded message queue (:data:`UPSTREAM_QUEUE` messages)
and Hypercorn's bounded app queue. Binary stays binary, text stays text, bytes are
not touched.

*Closes*: the terminal's close code and reason go to the browser as they are (4409,
1000, ...; a close without a frame, 1006, becomes 4404 so the page reconnects). The
browser's close goes to the terminal as 1001: Hypercorn reports every client close as
1000 or 1006 whatever the code was (pgjones/hypercorn#127), and "going away" is what
it means for a terminal. When the webserver shuts down, both sides get 1001.
"""

from __future__ import annotations

import collections
import logging
import re
import time
from typing import Final

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    open_websocket,
)

from webterm.keys import PublicKeys
from webterm.protocol import (
    CLOSE_REASONS,
    MAX_FRAME_BYTES,
    SUBPROTOCOL,
    TERMINAL_NAME,
    CloseCode,
    ShareClaims,
    TokenClaims,
    TokenError,
    UnknownKey,
    token_from_subprotocols,
)
from webterm.webserver.addresses import AddressBook, Lookup, split_address
from webterm.webserver.asgi import Receive, Scope, Send, loggable_path, peer, scope_headers
from webterm.webserver.forwarding import (
    TrustedProxies,
    public_host,
    same_origin,
)

log = logging.getLogger("webterm.webserver.proxy")

PATH: Final = re.compile(rf"^/terminals/({TERMINAL_NAME.pattern})/ws$")
"""Terminal names are DNS labels (pod names); anything else never reaches a lookup."""

LOOKUP_TIMEOUT: Final = 5.0
"""Seconds to wait for the manager's ``GET /v1/terminals/{name}``: it answers from
memory, so a slow answer means it is in trouble and the page should retry later
(4404, which the page answers by reconnecting)."""

DIAL_TIMEOUT: Final = 10.0
"""Seconds to open the WebSocket to the terminal (TCP + handshake). A live terminal
answers in milliseconds; a pod that is gone may leave a SYN unanswered."""

CLOSE_TIMEOUT: Final = 2.0
"""Seconds to wait for the terminal's side of a closing handshake before dropping TCP."""

UPSTREAM_QUEUE: Final = 4
"""Messages trio-websocket may buffer from the terminal ahead of the browser: a little
slack so one slow send does not stall the terminal's reader, and bounded."""

UPSTREAM_RECEIVE_BYTES: Final = 256 * 1024
"""Bytes per socket read from the terminal: big reads keep floods cheap (trio-websocket's
default is 4 KiB)."""

_RESERVED_CLOSE_CODES: Final = frozenset({1005, 1006, 1015})
"""Codes that describe a close but may not be sent in a close frame (RFC 6455 7.4.1)."""


class _Refusal(Exception):
    """This connection must not reach a terminal: close the browser with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason  # for the log and the metric label; never a token


class _Browser:
    """The browser's side of one proxied connection: sends go through here so that
    nothing is sent after the close (Hypercorn raises on a send after a close)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.closed = False

    async def send(self, data: bytes | str) -> None:
        if self.closed:
            raise ConnectionClosed(None)
        if isinstance(data, bytes):
            await self._send({"type": "websocket.send", "bytes": data})
        else:
            await self._send({"type": "websocket.send", "text": data})

    async def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            await self._send({"type": "websocket.close", "code": code, "reason": reason})


class TerminalProxy:
    """The ASGI handler for ``/terminals/{name}/ws`` (see the module docstring).

    ``closing`` is set when the webserver shuts down: every relay then closes both
    sides with 1001 and returns, so Hypercorn's graceful shutdown finds it done."""

    def __init__(
        self,
        *,
        keys: PublicKeys,
        addresses: AddressBook,
        allowed_origins: tuple[str, ...],
        trusted: TrustedProxies,
        registry: CollectorRegistry,
        closing: trio.Event,
    ) -> None:
        self.keys = keys
        self.addresses = addresses
        self.allowed_origins = frozenset(allowed_origins)
        self.trusted = trusted
        self.closing = closing
        self.m_open = Gauge(
            "webterm_proxied_connections", "Open proxied WebSockets", registry=registry
        )
        self.m_bytes = Counter(
            "webterm_proxied_bytes", "Bytes proxied", ["direction"], registry=registry
        )
        self.m_refused = Counter(
            "webterm_proxy_refusals",
            "WebSocket connections refused before reaching a terminal",
            ["reason"],
            registry=registry,
        )
        self._to_browser = self.m_bytes.labels("to_browser")
        self._to_terminal = self.m_bytes.labels("to_terminal")
        self.relaying: collections.Counter[str] = collections.Counter()
        """Open relays per client (the token's client hash; ``share:LINK`` for a viewer):
        a session in use right now."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        started = time.perf_counter()
        offered = [str(p) for p in scope.get("subprotocols", [])]
        browser = _Browser(send)
        outcome = "relayed"
        try:
            name, claims = await self._admit(scope, offered)
            address = await self._address(name, claims)
            outcome = await self._relay(name, claims, address, offered, receive, browser)
        except _Refusal as refusal:
            outcome = f"refused {refusal.code} {refusal.reason}"
            self.m_refused.labels(refusal.reason).inc()
            await self._refuse(send, offered, refusal.code)
        finally:
            log.info(
                "WS %s %s %.0fms",
                loggable_path(scope.get("path", "")),
                outcome,
                (time.perf_counter() - started) * 1000,
            )

    # --- admission ----------------------------------------------------------------------

    async def _admit(
        self, scope: Scope, offered: list[str]
    ) -> tuple[str, TokenClaims | ShareClaims]:
        match = PATH.match(scope.get("path", ""))
        if match is None:
            raise _Refusal(CloseCode.TERMINAL_GONE, "bad-path")
        name = match.group(1)
        if not self._origin_allowed(scope):
            raise _Refusal(CloseCode.FORBIDDEN_ORIGIN, "origin")
        token = token_from_subprotocols(offered)
        if token is None:
            raise _Refusal(CloseCode.UNAUTHORIZED, "no-token")
        try:
            claims = await self.keys.read_any(token, now=time.time())
        except UnknownKey:
            raise _Refusal(CloseCode.UNAUTHORIZED, "unknown-key") from None
        except TokenError:
            raise _Refusal(CloseCode.UNAUTHORIZED, "bad-token") from None
        if claims.terminal != name:
            raise _Refusal(CloseCode.UNAUTHORIZED, "other-terminal")
        return name, claims

    def _origin_allowed(self, scope: Scope) -> bool:
        headers = scope_headers(scope)
        origin = headers.get("origin")
        host, forwarded_host = headers.get("host"), headers.get("x-forwarded-host")
        if origin is None:
            return True  # not a browser page; the token still decides
        if origin in self.allowed_origins:
            return True
        dialed = public_host(host, forwarded_host, peer(scope), self.trusted)
        return dialed is not None and same_origin(origin, dialed)

    async def _address(self, name: str, claims: TokenClaims | ShareClaims) -> str:
        with trio.move_on_after(LOOKUP_TIMEOUT):
            found = await self.addresses.lookup(name, claims.instance)
            if found is Lookup.STALE:
                raise _Refusal(CloseCode.UNAUTHORIZED, "stale-token")
            if isinstance(found, Lookup):
                raise _Refusal(CloseCode.TERMINAL_GONE, found.value)
            return found
        raise _Refusal(CloseCode.TERMINAL_GONE, "unavailable")

    async def _refuse(self, send: Send, offered: list[str], code: int) -> None:
        """Accept, then close with ``code`` (a page can read a close code, not an HTTP
        status); a client that does not speak webterm.v1 gets HTTP 403 instead."""
        if SUBPROTOCOL in offered:
            await send({"type": "websocket.accept", "subprotocol": SUBPROTOCOL})
            await send(
                {"type": "websocket.close", "code": code, "reason": CLOSE_REASONS.get(code, "")}
            )
        else:
            await send({"type": "websocket.close", "code": code})

    # --- relay --------------------------------------------------------------------------

    async def _relay(
        self,
        name: str,
        claims: TokenClaims | ShareClaims,
        address: str,
        offered: list[str],
        receive: Receive,
        browser: _Browser,
    ) -> str:
        """Dial the terminal and copy frames both ways until either side closes;
        returns how it ended, for the log."""
        host, port = split_address(address) or ("", 0)
        connected = False
        try:
            async with open_websocket(
                host,
                port,
                "/ws",
                use_ssl=False,
                subprotocols=offered,
                max_message_size=MAX_FRAME_BYTES,
                receive_buffer_size=UPSTREAM_RECEIVE_BYTES,
                message_queue_size=UPSTREAM_QUEUE,
                connect_timeout=DIAL_TIMEOUT,
                disconnect_timeout=CLOSE_TIMEOUT,
            ) as upstream:
                connected = True
                self.m_open.inc()
                who = claims.client if isinstance(claims, TokenClaims) else f"share:{claims.link}"
                self.relaying[who] += 1
                try:
                    await browser._send({"type": "websocket.accept", "subprotocol": SUBPROTOCOL})
                    return await self._pump(upstream, receive, browser)
                finally:
                    self.m_open.dec()
                    self.relaying[who] -= 1
                    if not self.relaying[who]:
                        del self.relaying[who]
        except ConnectionRejected as exc:
            if connected:
                raise
            # The terminal checks what we cannot (the instance): its refusal is the page's
            # cue to ask for a fresh token; anything else means it is not serving.
            if exc.status_code in (401, 403):
                raise _Refusal(CloseCode.UNAUTHORIZED, "terminal-refused") from None
            self.addresses.forget(name, claims.instance)
            raise _Refusal(CloseCode.TERMINAL_GONE, "terminal-refused") from None
        except (HandshakeError, OSError) as exc:
            if connected:
                return f"ended: {type(exc).__name__}"
            self.addresses.forget(name, claims.instance)
            raise _Refusal(CloseCode.TERMINAL_GONE, "unreachable") from None

    async def _pump(
        self, upstream: WebSocketConnection, receive: Receive, browser: _Browser
    ) -> str:
        ended = "browser closed"

        async def terminal_to_browser(cancel: trio.CancelScope) -> None:
            nonlocal ended
            count = self._to_browser.inc
            try:
                while True:
                    data = await upstream.get_message()
                    await browser.send(data)
                    count(len(data))
            except ConnectionClosed as closed:
                code, reason = _terminal_close(closed)
                ended = f"terminal closed {code}"
                await browser.close(code, reason)
            cancel.cancel()

        async def on_shutdown(cancel: trio.CancelScope) -> None:
            nonlocal ended
            await self.closing.wait()
            ended = "shutdown"
            reason = CLOSE_REASONS[CloseCode.GOING_AWAY]
            await browser.close(CloseCode.GOING_AWAY, reason)
            with trio.move_on_after(CLOSE_TIMEOUT):
                await upstream.aclose(CloseCode.GOING_AWAY, reason)
            cancel.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(terminal_to_browser, nursery.cancel_scope)
            nursery.start_soon(on_shutdown, nursery.cancel_scope)
            count = self._to_terminal.inc
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
                        # The terminal is closing: terminal_to_browser reports its code
                        # and ends the relay. Stop reading from the browser meanwhile.
                        await trio.sleep_forever()
                    count(len(data))
                elif kind == "websocket.disconnect":
                    browser.closed = True
                    with trio.move_on_after(CLOSE_TIMEOUT):
                        await upstream.aclose(CloseCode.GOING_AWAY, "browser went away")
                    nursery.cancel_scope.cancel()
                    return ended
        return ended


def _terminal_close(closed: ConnectionClosed) -> tuple[int, str]:
    """The close code and reason to show the browser for the terminal's close."""
    reason = closed.reason
    code = reason.code if reason is not None else CloseCode.TERMINAL_GONE
    if code in _RESERVED_CLOSE_CODES or not 1000 <= code < 5000:
        code = CloseCode.TERMINAL_GONE
    text = (reason.reason if reason is not None else None) or CLOSE_REASONS.get(code, "")
    return code, text


__all__ = ["TerminalProxy"]
