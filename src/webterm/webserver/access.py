"""The optional access gate (``--access``) in front of everything but the probes.

* ``none``: everyone may use the page;
* ``password``: HTTP Basic with the shared password (any user name), compared in
  constant time as SHA-256 digests; a refusal is 401 with a ``Basic`` challenge;
* ``header``: a trusted proxy authenticated the user and set ``--access-header``;
  believed only from a trusted proxy, which must have set it; otherwise 403.

WebSocket scopes the gate refuses are closed before the handshake (HTTP 403). Refusals
are the services' one early refusal (:func:`webterm.service.asgi.refuse_early`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final

from webterm.config import AccessMode
from webterm.protocol import CloseCode
from webterm.service.asgi import refuse_early
from webterm.service.errors import Refusal
from webterm.webserver.asgi import Scope, Send, peer, scope_headers
from webterm.webserver.forwarding import TrustedProxies

OPEN_PATHS: Final = frozenset({"/healthz", "/readyz"})
"""Probes stay reachable behind the access gate."""

CHALLENGE: Final = (b"www-authenticate", b'Basic realm="webterm", charset="UTF-8"')

NOT_ALLOWED: Final = "not allowed"


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

    async def refuse(self, scope: Scope, send: Send) -> None:
        """The answer to a request the gate does not admit (a WebSocket: closed with
        :attr:`~webterm.protocol.CloseCode.UNAUTHORIZED` before its handshake)."""
        if self.mode == "password":
            refusal, headers = Refusal(401, NOT_ALLOWED), [CHALLENGE]
        else:
            refusal, headers = Refusal(403, NOT_ALLOWED), []
        await refuse_early(scope, send, refusal, close_code=CloseCode.UNAUTHORIZED, headers=headers)


__all__ = ["OPEN_PATHS", "AccessGate"]
