"""The DNS-rebinding guard: a webserver listening on loopback only answers only
requests whose ``Host`` names this machine (or a host of ``--allowed-origin``).

On loopback, a request for any other name is another site's page whose DNS name now
points here (see :mod:`webterm.hosts`): HTTP gets a JSON 403, a WebSocket is closed
before the handshake (also a 403)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Final

from webterm.hosts import listens_on_loopback_only, origin_hosts, rebinding_safe
from webterm.webserver.asgi import Scope, Send, scope_headers, send_json

log = logging.getLogger("webterm.webserver")

WRONG_HOST: Final = (
    "this server answers only for localhost or this machine's IP address; "
    "serve other names with --allowed-origin"
)
"""The 403 for a ``Host`` that a loopback-only webserver does not answer for."""


class RebindingGuard:
    """Active only when the webserver listens on loopback only."""

    def __init__(self, bind_host: str, allowed_origins: Iterable[str]) -> None:
        self.active = listens_on_loopback_only(bind_host)
        self._allowed_hosts = origin_hosts(allowed_origins)

    def allows(self, scope: Scope) -> bool:
        if not self.active or scope["type"] not in ("http", "websocket"):
            return True
        return rebinding_safe(scope_headers(scope).get("host"), self._allowed_hosts)

    async def refuse(self, scope: Scope, send: Send) -> None:
        log.warning("refused a request for a Host that is not this machine (DNS rebinding?)")
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
            return
        await send_json(send, 403, json.dumps({"error": WRONG_HOST}).encode())


__all__ = ["WRONG_HOST", "RebindingGuard"]
