"""The share route: ``POST /v1/shares`` mints a share link's token for the terminal a
client holds (the webserver's credential required, as for allocations).

A share token (:class:`~webterm.protocol.ShareClaims`, audience ``webterm-share``)
names the terminal and its current *instance*, so it dies with the terminal's recycle,
however long before its expiry (:data:`SHARE_TTL`); it survives the owner's reconnects,
which keep the instance. The link id is random: the owner revokes a link by it at the
terminal, which keeps the revoked ids for the instance's life."""

from __future__ import annotations

import secrets
import time
from typing import Final

from quart import Response

from webterm.manager.allocations import MAX_CLIENT_ID
from webterm.manager.core import Manager
from webterm.manager.credentials import require_webserver
from webterm.manager.pool import State
from webterm.protocol import SHARE_MODES, ShareClaims, client_hash, sign_share_token
from webterm.service.answers import json_body, json_response
from webterm.service.errors import Refusal

SHARE_TTL: Final = 8 * 3600
"""Seconds a share link is valid for, at most: a working day (a recycle ends it first)."""


class Shares:
    """The route's handler (a Quart view, bound to this object)."""

    def __init__(self, manager: Manager) -> None:
        self.manager = manager

    async def share(self) -> Response:
        require_webserver(self.manager)
        body = await json_body()
        client, mode = body.get("client"), body.get("mode")
        if not isinstance(client, str) or not client or len(client) > MAX_CLIENT_ID:
            raise Refusal(400, f"'client' must be a string of 1-{MAX_CLIENT_ID} characters")
        if mode not in SHARE_MODES:
            raise Refusal(400, "'mode' must be view or type")
        config = self.manager.config
        terminal = self.manager.pool.terminal_of(client_hash(config.secret, client))
        if terminal is None or terminal.state is not State.IN_USE or not terminal.instance:
            raise Refusal(404, "this client holds no terminal to share")
        claims = ShareClaims(
            terminal=terminal.name,
            instance=terminal.instance,
            link=secrets.token_urlsafe(12),
            mode=mode,
            expires_at=int(time.time()) + SHARE_TTL,
        )
        return json_response(
            {
                "terminal": claims.terminal,
                "link": claims.link,
                "mode": claims.mode,
                "token": sign_share_token(config.signing_key, claims),
                "expires_at": claims.expires_at,
            }
        )


__all__ = ["SHARE_TTL", "Shares"]
