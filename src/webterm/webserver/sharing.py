"""The share routes: ``POST /api/terminal/share`` (the owner's page asks for a share
link to its terminal) and ``POST /api/terminal/shared`` (a viewer's page asks where to
dial with the share token its link carries).

A link is the page's own URL with the share token in the fragment (``#share=TOKEN``),
so it never reaches a server's logs; the page sends it here in a body. The token is
minted by the manager (``POST /v1/shares``) for the caller's own terminal, identified
as ``POST /api/terminal`` identifies it. ``shared`` checks the token (signed, unexpired,
the share audience), asks the manager where that terminal is (the same cached lookup
as the proxy's, asked afresh: a recycled terminal is refused with 410), and answers in the shape of
``POST /api/terminal``'s answer, so the page connects a viewer as it connects an owner.
Revocations are the terminal's to enforce: it refuses a revoked link (the page sees
4401 through the proxy)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from quart import Response

from webterm.config import WebserverConfig
from webterm.keys import PublicKeys
from webterm.protocol import SHARE_MODES, ShareClaims, TokenError
from webterm.service.answers import json_body, json_response
from webterm.service.errors import Refusal
from webterm.webserver.addresses import AddressBook, Lookup
from webterm.webserver.api import TerminalApi
from webterm.webserver.managerclient import ManagerClient
from webterm.webserver.urls import terminal_url

MAX_TOKEN_FIELD = 2048
"""A ``token`` longer than a token may be is refused unread."""


@dataclass
class ShareApi:
    """The routes' handlers (Quart views, bound to this object)."""

    config: WebserverConfig
    api: TerminalApi  # how the caller is checked and identified
    manager: ManagerClient
    keys: PublicKeys
    addresses: AddressBook

    async def share(self) -> Response:
        """``POST /api/terminal/share`` ``{"mode": "view"|"type", "client"?}``."""
        caller = self.api._caller()
        body = await json_body()
        if body.get("mode") not in SHARE_MODES:
            raise Refusal(400, "'mode' must be view or type")
        identity, _ = self.api._identify(caller, body, issue=False)
        if identity is None:
            raise Refusal(404, "there is no terminal of yours to share")
        got = await self.manager.share(identity, body["mode"])
        return json_response(
            {
                "terminal": got.get("terminal"),
                "link": got.get("link"),
                "mode": got.get("mode"),
                "token": got["token"],
                "expires_at": got.get("expires_at"),
            }
        )

    async def shared(self) -> Response:
        """``POST /api/terminal/shared`` ``{"token": SHARE_TOKEN}``."""
        caller = self.api._caller()
        if self.config.address_mode == "proxy" and caller.host is None:
            raise Refusal(400, "bad Host header")
        token = (await json_body()).get("token")
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_FIELD:
            raise Refusal(400, "'token' must be a share link's token")
        try:
            claims = await self.keys.read_any(token, now=time.time())
        except TokenError:
            raise Refusal(401, "this share link is not valid (or has expired)") from None
        if not isinstance(claims, ShareClaims):
            raise Refusal(401, "this is not a share link's token")
        self.addresses.forget(claims.terminal, claims.instance)  # a page load: ask afresh
        found = await self.addresses.lookup(claims.terminal, claims.instance)
        if found is Lookup.STALE or found is Lookup.UNKNOWN:
            raise Refusal(410, "the shared terminal was recycled: this link has ended")
        if isinstance(found, Lookup):
            raise Refusal(503, "terminal manager unavailable", 5)
        url = terminal_url(
            address_mode=self.config.address_mode,
            public_host=self.config.public_host,
            name=claims.terminal,
            address=found,
            host=caller.host,
            secure=caller.secure,
        )
        return json_response(
            {
                "terminal": claims.terminal,
                "url": url,
                "token": token,
                "reconnect": True,  # a viewer never starts a shell of its own
                "client": None,
                "mode": claims.mode,
                "link": claims.link,
            }
        )


__all__ = ["MAX_TOKEN_FIELD", "ShareApi"]
