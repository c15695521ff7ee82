"""What every HTTP answer gets on its way out, however it was made (route, framework
error, access gate): the security headers, a Content-Security-Policy naming this very
host for WebSockets, one count in ``webterm_http_requests``, and one log line
``method=M path=P status=S ms=T`` (never a query string, body, token or identity)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter

from webterm.config import AddressMode
from webterm.webserver.asgi import Scope, Send, loggable_path, peer, scope_headers
from webterm.webserver.forwarding import TrustedProxies, public_host
from webterm.webserver.security import (
    SECURITY_HEADERS,
    connect_sources,
    content_security_policy,
)

log = logging.getLogger("webterm.webserver")

ROUTES: Final = frozenset(
    {"/", "/api/terminal", "/getPseudoTerminalAddress", "/healthz", "/readyz", "/metrics"}
)
"""Paths counted under their own label in the request metric; others are ``/static/*``
or ``other``, so a scan of random paths cannot explode the metric's cardinality."""

_STATIC_HEADERS: Final = tuple(
    (name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()
)


class Envelope:
    """Headers, metric and log line around each HTTP answer."""

    def __init__(
        self,
        *,
        address_mode: AddressMode,
        public_host: str | None,
        trusted: TrustedProxies,
        registry: CollectorRegistry,
    ) -> None:
        self.address_mode = address_mode
        self.public_host = public_host
        self.trusted = trusted
        self.m_requests = Counter(
            "webterm_http_requests", "HTTP requests", ["route", "status"], registry=registry
        )

    async def answer(
        self, scope: Scope, send: Send, respond: Callable[[Send], Awaitable[None]]
    ) -> None:
        """Run ``respond`` with a ``send`` that adds the headers (those it sets itself
        stay), then count and log the answer's status (0: none was sent)."""
        started = time.perf_counter()
        status = 0
        extra = self.headers(scope)

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
            await respond(send_wrapped)
        finally:
            path = scope.get("path", "")
            self.m_requests.labels(_route(path), str(status)).inc()
            log.info(
                "method=%s path=%s status=%d ms=%.1f",
                scope.get("method", "?"),
                loggable_path(path),
                status,
                (time.perf_counter() - started) * 1000,
            )

    def headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """The security headers for an answer to ``scope``."""
        headers = scope_headers(scope)
        host = public_host(
            headers.get("host"), headers.get("x-forwarded-host"), peer(scope), self.trusted
        )
        policy = content_security_policy(connect_sources(self.address_mode, host, self.public_host))
        return [(b"content-security-policy", policy.encode()), *_STATIC_HEADERS]


def _route(path: str) -> str:
    """The request metric's label for ``path`` (see :data:`ROUTES`)."""
    if path in ROUTES:
        return path
    return "/static/*" if path.startswith("/static/") else "other"


__all__ = ["ROUTES", "Envelope"]
