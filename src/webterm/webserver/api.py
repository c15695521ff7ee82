"""The terminal API's routes: ``POST``/``DELETE /api/terminal`` and the original
project's ``POST /getPseudoTerminalAddress``.

Identity (``--identity``): ``tab`` — the server issues each tab a signed id in the
answer's ``client`` field and the page sends it back; ``browser`` — a signed id in an
HttpOnly, SameSite=Strict cookie (Secure over https), never shown to scripts (the
answer's ``client`` is null); ``ip`` — the remote address. The manager sees
``tab:<id>``, ``browser:<id>`` or ``ip:<address>`` (see
:mod:`webterm.webserver.identity`). Both allocating routes take the one path of
:class:`~webterm.webserver.allocator.Allocator`; a refusal is raised, never returned
(:class:`~webterm.service.errors.Refusal`, the manager client's errors)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from quart import Response

from webterm.config import WebserverConfig
from webterm.service.answers import json_body, json_response
from webterm.service.errors import Refusal
from webterm.webserver.allocator import Allocator
from webterm.webserver.caller import Caller
from webterm.webserver.forwarding import TrustedProxies
from webterm.webserver.identity import COOKIE_NAME, identify, manager_identity
from webterm.webserver.urls import terminal_url

COOKIE_MAX_AGE: Final = 30 * 24 * 3600
"""Seconds a browser-mode identity cookie lives: a month of coming back to the same
terminal (which the manager recycles after its idle timeout anyway)."""

MAX_CLIENT_FIELD: Final = 200
"""A ``client`` or ``IP`` field longer than this is not an id we could have issued."""


@dataclass
class TerminalApi:
    """The routes' handlers (Quart views, bound to this object)."""

    config: WebserverConfig
    allocator: Allocator
    trusted: TrustedProxies
    allowed_origins: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.allowed_origins = frozenset(self.config.allowed_origins)

    async def terminal(self) -> Response:
        """``POST /api/terminal``: a terminal for the caller, and where to dial it."""
        caller = self._caller()
        if self.config.address_mode == "proxy" and caller.host is None:
            raise Refusal(400, "bad Host header")
        identity, handed = self._identify(caller, await json_body(), issue=True)
        assert identity is not None
        got = await self.allocator.allocate(identity, caller.address)
        url = terminal_url(
            address_mode=self.config.address_mode,
            public_host=self.config.public_host,
            name=got.terminal,
            address=got.address,
            host=caller.host,
            secure=caller.secure,
        )
        response = json_response(
            {
                "terminal": got.terminal,
                "url": url,
                "token": got.token,
                "reconnect": got.reconnect,
                "client": handed if self.config.identity == "tab" else None,
            }
        )
        if self.config.identity == "browser" and handed is not None:
            response.set_cookie(
                COOKIE_NAME,
                handed,
                max_age=COOKIE_MAX_AGE,
                path="/",
                secure=caller.secure,
                httponly=True,
                samesite="Strict",
            )
        return response

    async def give_back(self) -> Response:
        """``DELETE /api/terminal``: the caller's own terminal goes back to the pool."""
        caller = self._caller()
        identity, _ = self._identify(caller, await json_body(), issue=False)
        if identity is None:
            return json_response({"released": False})
        released = await self.allocator.give_back(identity, caller.address)
        return json_response({"released": released})

    async def legacy(self) -> Response:
        """The original project's call, kept for its clients. The ``IP`` it sends
        was the caller's own address; it is not believed (anyone could name anyone):
        the caller's identity is its real remote address, exactly as in ``ip``
        mode, and it can never name a tab's or browser's terminal."""
        caller = self._caller()
        body = await json_body()
        if not isinstance(body.get("IP"), str) or len(body["IP"]) > MAX_CLIENT_FIELD:
            raise Refusal(400, "'IP' must be a string")
        identity = manager_identity("ip", caller.address)
        got = await self.allocator.allocate(identity, caller.address)
        return json_response({"podName": got.terminal, "ip": got.address})

    def _caller(self) -> Caller:
        """The caller of the request being handled; another site's page is refused."""
        caller = Caller.of_request(self.trusted)
        if caller.foreign(self.allowed_origins):
            raise Refusal(403, "origin not allowed")
        return caller

    def _identify(
        self, caller: Caller, body: dict[str, Any], *, issue: bool
    ) -> tuple[str | None, str | None]:
        """``(identity for the manager, id to hand the tab / cookie to set)``: see
        :func:`webterm.webserver.identity.identify`."""
        if "client" in body and not _short_string_or_null(body["client"]):
            raise Refusal(400, "'client' must be a string")
        mode = self.config.identity
        return identify(
            self.config.secret,
            mode,
            presented=caller.cookie if mode == "browser" else body.get("client"),
            address=caller.address,
            issue=issue,
        )


def _short_string_or_null(value: object) -> bool:
    return value is None or (isinstance(value, str) and len(value) <= MAX_CLIENT_FIELD)


__all__ = ["COOKIE_MAX_AGE", "TerminalApi"]
