"""The optional access gate (``--access``) in front of everything but the probes.

* ``none``: everyone may use the page;
* ``password``: HTTP Basic with the shared password (any user name), compared in
  constant time as SHA-256 digests; a refusal is 401 with a ``Basic`` challenge;
* ``header``: a trusted proxy authenticated the user and set ``--access-header``;
  believed only from a trusted proxy, which must have set it; otherwise 403.

WebSocket scopes the gate refuses are closed before the handshake (HTTP 403)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final

from webterm.config import AccessMode
from webterm.webserver.asgi import Scope, Send, peer, scope_headers, send_json
from webterm.webserver.forwarding import TrustedProxies

OPEN_PATHS: Final = frozenset({"/healthz", "/readyz"})
"""Probes stay reachable behind the access gate."""

CHALLENGE: Final = (b"www-authenticate", b'Basic realm="webterm", charset="UTF-8"')

NOT_ALLOWED: Final = b'{"error":"not allowed"}'


class AccessGate:
    """Who may use the page at all (see the module docstring)."""

    def __init__(
        self,
        mode: AccessMode,
        *,
        password: bytes | None,
        header: str,
        trusted: TrustedProxies,
    ) -> None:
        self.mode = mode
        self._password_digest = hashlib.sha256(password or b"").digest()
        self._header = header.lower()
        self._trusted = trusted

    def admits(self, scope: Scope) -> bool:
        if self.mode == "none" or scope["path"] in OPEN_PATHS:
            return True
        headers = scope_headers(scope)
        if self.mode == "password":
            scheme, _, encoded = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "basic":
                return False
            try:
                _, _, password = base64.b64decode(encoded, validate=True).partition(b":")
            except ValueError:
                return False
            return hmac.compare_digest(hashlib.sha256(password).digest(), self._password_digest)
        if peer(scope) not in self._trusted:
            return False
        return bool(headers.get(self._header, "").strip())

    async def refuse(self, send: Send) -> None:
        """The HTTP answer to a request the gate does not admit."""
        if self.mode == "password":
            await send_json(send, 401, NOT_ALLOWED, [CHALLENGE])
        else:
            await send_json(send, 403, NOT_ALLOWED)


__all__ = ["OPEN_PATHS", "AccessGate"]
