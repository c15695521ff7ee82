"""What a terminal reports, under the latest token its browser sent it (see
:mod:`webterm.manager.credentials`):
``POST /v1/terminals/<name>/recycle`` (recycle me) and
``POST /v1/terminals/<name>/connection`` (a browser attached or detached)."""

from __future__ import annotations

import logging
from typing import Any

import trio
from quart import Response

from webterm.manager.backend import Unconfirmed
from webterm.manager.core import RETRY_AFTER_UNCONFIRMED, Manager
from webterm.manager.credentials import terminal_claims
from webterm.manager.pool import Connection, PoolError
from webterm.protocol import TokenClaims
from webterm.service.answers import json_body, json_response
from webterm.service.errors import Refusal

log = logging.getLogger("webterm.manager")


class TerminalReports:
    """The routes' handlers (Quart views, bound to this object)."""

    def __init__(self, manager: Manager) -> None:
        self.manager = manager

    async def recycle(self, name: str) -> Response:
        claims, body = await self._report(name)
        try:
            await self.manager.recycle(name, claims.instance)
        except Unconfirmed as exc:
            raise Refusal(503, str(exc), RETRY_AFTER_UNCONFIRMED) from None
        except PoolError as exc:
            raise Refusal(exc.error_status_hint, str(exc)) from None
        log.info("recycling %s (%s)", name, str(body.get("reason", "requested"))[:40])
        return json_response({"recycling": True})

    async def connection(self, name: str) -> Response:
        claims, body = await self._report(name)
        connected = body.get("connected")
        if not isinstance(connected, bool):
            raise Refusal(400, "'connected' must be true or false")
        # the pool ignores a report from an instance that is no longer this terminal's
        self.manager.handle_quietly(
            Connection(
                name=name, instance=claims.instance, connected=connected, now=trio.current_time()
            )
        )
        # a backend that keeps state outside this process (the pods) records it, for
        # the terminal's current instance only (the pool ignored any other)
        current = self.manager.pool.terminals.get(name)
        note = getattr(self.manager.backend, "note_connection", None)
        if note is not None and current is not None and current.instance == claims.instance:
            note(name, claims.instance, connected)
        return json_response({"ok": True})

    async def _report(self, name: str) -> tuple[TokenClaims, dict[str, Any]]:
        """The claims of terminal ``name``'s token and the report's body, or raise
        :class:`Refusal` (401 no, a bad or an unknown key's token; 403 another
        terminal's or another instance's)."""
        claims = terminal_claims(self.manager, name)
        return claims, await json_body()


__all__ = ["TerminalReports"]
