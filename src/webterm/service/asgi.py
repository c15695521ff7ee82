"""The raw ASGI types and the one way to refuse before (instead of) an app:
:func:`refuse_early`. The guards in front of the Quart apps work on raw scopes and
messages, loosely typed as Hypercorn hands them over."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from webterm.service.errors import Refusal, encode_json, error_body, error_headers

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

POLICY_VIOLATION: Final = 1008
"""The close code of a WebSocket refused before its handshake (the client sees an HTTP
403 either way: Hypercorn answers a close before accept with 403)."""


def header_lines(scope: Scope, name: bytes) -> list[str]:
    """Every line of header ``name`` (lowercase) in ``scope``, in order."""
    return [v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == name]


async def refuse_early(
    scope: Scope,
    send: Send,
    refusal: Refusal,
    *,
    close_code: int = POLICY_VIOLATION,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer ``refusal`` instead of the app: an HTTP request gets the one JSON error
    body (and ``headers``), a WebSocket is closed with ``close_code`` before its
    handshake."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": close_code})
        return
    status, retry_after = refusal.error_status_hint, refusal.retry_after
    extra = [
        (k.lower().encode(), v.encode()) for k, v in error_headers(status, retry_after).items()
    ]
    body = encode_json(error_body(refusal.message, retry_after))
    await send_json(send, status, body, [*extra, *(headers or [])])


async def send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A JSON answer sent before (instead of) the app: the guards' refusals."""
    head = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
    head.extend(headers or [])
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


__all__ = [
    "POLICY_VIOLATION",
    "App",
    "Receive",
    "Scope",
    "Send",
    "header_lines",
    "refuse_early",
    "send_json",
]
