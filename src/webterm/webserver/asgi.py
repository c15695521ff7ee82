"""The raw ASGI layer's types and the few things read off a scope. Pure: no I/O.

The dispatcher, the gates in front of the app and the WebSocket proxy work on raw
ASGI scopes and messages, loosely typed as Hypercorn hands them over."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from webterm.webserver.forwarding import joined_headers

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def scope_headers(scope: Scope) -> dict[str, str]:
    """The request's headers, lowercased names; a header sent on several lines is one
    comma-separated list (RFC 9110, 5.3), as Quart's ``getlist`` joined reads it."""
    return joined_headers(scope.get("headers", []))


def peer(scope: Scope) -> str | None:
    """The address of the other end of the TCP connection (maybe a proxy)."""
    client = scope.get("client")
    return str(client[0]) if client else None


def loggable_path(path: str) -> str:
    """``path`` as it may appear in a log line: bounded, escaped, one line."""
    return path[:200].encode("unicode_escape").decode("ascii")


async def send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A JSON answer sent before (instead of) the app: the gates' refusals."""
    head = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
    head.extend(headers or [])
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


__all__ = ["Receive", "Scope", "Send", "loggable_path", "peer", "scope_headers", "send_json"]
