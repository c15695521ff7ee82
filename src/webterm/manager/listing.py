"""What the manager knows of its terminals: ``GET /v1/terminals`` and
``GET /v1/terminals/<name>`` (the webserver's proxy asks where a terminal is)."""

from __future__ import annotations

from quart import Response

from webterm.manager.core import Manager
from webterm.manager.credentials import require_webserver
from webterm.service.answers import json_response
from webterm.service.errors import Refusal


class Listing:
    """The routes' handlers (Quart views, bound to this object)."""

    def __init__(self, manager: Manager) -> None:
        self.manager = manager

    async def terminals(self) -> Response:
        require_webserver(self.manager)
        pool = self.manager.pool
        names = sorted(pool.terminals, key=pool.ordinal_of)
        return json_response({"terminals": [self.manager.describe(n) for n in names]})

    async def terminal(self, name: str) -> Response:
        require_webserver(self.manager)
        described = self.manager.describe(name)
        if described is None:
            raise Refusal(404, "no such terminal")
        return json_response(described)


__all__ = ["Listing"]
