"""The raw ASGI types and the one answer sent before (instead of) an app. Pure but
for ``send``: the guards in front of the Quart apps work on raw scopes and messages,
loosely typed as Hypercorn hands them over."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def header_lines(scope: Scope, name: bytes) -> list[str]:
    """Every line of header ``name`` (lowercase) in ``scope``, in order."""
    return [v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == name]


async def send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A JSON answer sent before (instead of) the app: the guards' refusals."""
    head = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
    head.extend(headers or [])
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


__all__ = ["App", "Receive", "Scope", "Send", "header_lines", "send_json"]
