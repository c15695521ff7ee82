"""The wildcard-host (DNS-rebinding) guard, one for the three services.

A service listening on loopback only answers only requests whose ``Host`` names this
machine, or a host of an allowed origin (the rule, pure, is :mod:`webterm.hosts`). On
loopback, a request for any other name is another site's page whose DNS name now
points here: HTTP gets the JSON 403 :data:`WRONG_HOST`, a WebSocket is closed before
its handshake (also a 403). The Quart services put :meth:`HostGuard.wrap` in front of
their app (or call :meth:`HostGuard.allows` and :meth:`HostGuard.refuse` from their own
dispatcher); the terminal server asks :meth:`HostGuard.allows_host` with the head it
read and answers through h11."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Final

from webterm.hosts import listens_on_loopback_only, origin_hosts, rebinding_safe
from webterm.service.asgi import App, Receive, Scope, Send, header_lines, refuse_early
from webterm.service.errors import Refusal

log = logging.getLogger("webterm.service")

WRONG_HOST: Final = (
    "host not allowed: this service listens on loopback only and answers only for "
    "localhost or this machine's IP address (or an allowed origin's host)"
)
"""The 403 for a ``Host`` that a loopback-only service does not answer for."""


class HostGuard:
    """Active only when the service listens on loopback only (``bind_host``)."""

    def __init__(self, bind_host: str, allowed_origins: Iterable[str] = ()) -> None:
        self.active = listens_on_loopback_only(bind_host)
        self._allowed_hosts = origin_hosts(allowed_origins)

    def allows_host(self, host_header: str | None) -> bool:
        """Whether a request with this ``Host`` (several lines joined with ``", "``;
        None: no header) may be answered."""
        return not self.active or rebinding_safe(host_header, self._allowed_hosts)

    def allows(self, scope: Scope) -> bool:
        """Whether the ASGI request ``scope`` may be answered."""
        if not self.active or scope["type"] not in ("http", "websocket"):
            return True
        return self.allows_host(", ".join(header_lines(scope, b"host")) or None)

    async def refuse(self, scope: Scope, send: Send) -> None:
        log.warning("refused a request for a Host that is not this machine (DNS rebinding?)")
        await refuse_early(scope, send, Refusal(403, WRONG_HOST))

    def wrap(self, app: Any) -> App:  # Any: Quart types its ASGI callable more narrowly
        """``app`` behind this guard (which lets everything pass when not active)."""

        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if self.allows(scope):
                await app(scope, receive, send)
            else:
                await self.refuse(scope, send)

        return guarded


__all__ = ["WRONG_HOST", "HostGuard"]
