"""The allocation routes: ``POST /v1/allocations`` (a terminal for a client, and its
signed token) and ``DELETE /v1/allocations/<client>`` (the client gives it back)."""

from __future__ import annotations

from typing import Final

from quart import Response

from webterm.manager.backend import Unconfirmed
from webterm.manager.core import RETRY_AFTER_UNCONFIRMED, Manager
from webterm.manager.credentials import require_webserver
from webterm.manager.pool import Reject, UnknownClient
from webterm.protocol import Allocation, encode_allocation
from webterm.service.answers import json_body, json_response
from webterm.service.errors import Refusal

MAX_CLIENT_ID: Final = 512
"""Client ids are the webserver's identity strings (~60 characters)."""


class Allocations:
    """The routes' handlers (Quart views, bound to this object)."""

    def __init__(self, manager: Manager) -> None:
        self.manager = manager

    async def allocate(self) -> Response:
        require_webserver(self.manager)
        client = (await json_body()).get("client")
        if not isinstance(client, str) or not client or len(client) > MAX_CLIENT_ID:
            raise Refusal(400, f"'client' must be a string of 1-{MAX_CLIENT_ID} characters")
        answer = await self.manager.allocate(client)
        if isinstance(answer, Reject):
            raise Refusal(503, answer.reason, answer.retry_after)
        allocation = Allocation(
            terminal=answer.name,
            address=answer.address,
            token=self.manager.token_for(answer),
            reconnect=answer.reconnect,
            client_hash=answer.client,
        )
        return Response(encode_allocation(allocation), content_type="application/json")

    async def release(self, client: str) -> Response:
        require_webserver(self.manager)
        try:
            await self.manager.release(client)
        except UnknownClient:
            raise Refusal(404, "this client holds no terminal") from None
        except Unconfirmed as exc:
            raise Refusal(503, str(exc), RETRY_AFTER_UNCONFIRMED) from None
        return json_response({"released": True})


__all__ = ["MAX_CLIENT_ID", "Allocations"]
