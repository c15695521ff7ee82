"""The one way a service refuses a request, and the one JSON error body. Pure.

A route (or a guard in front of routes) raises :class:`Refusal` with the status, a
message fit to show, and for 429/503 the seconds to wait; each framework has one
handler that answers it (:func:`webterm.service.answers.install_error_handlers` for the
Quart apps, the terminal server's own for h11). The body is always
``{"error": MESSAGE}``, plus ``"retry_after": SECONDS`` (and a ``Retry-After``
header) when there is a delay, clamped to 1..:data:`MAX_RETRY_AFTER`.
"""

from __future__ import annotations

import json
from typing import Any, Final

from webterm.errors import WebtermError

MAX_RETRY_AFTER: Final = 3600
"""A Retry-After beyond an hour is a bug; clamp what we answer."""


class Refusal(WebtermError):
    """The answer to give instead of going on: ``error_status_hint`` (the status),
    ``message`` and ``retry_after`` (seconds, or None)."""

    error_status_hint: int = 400

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.error_status_hint = status
        self.message = message
        self.retry_after = retry_after


def clamp_retry_after(seconds: int) -> int:
    """``seconds`` within 1..:data:`MAX_RETRY_AFTER`."""
    return min(max(1, seconds), MAX_RETRY_AFTER)


def error_body(message: str, retry_after: int | None = None) -> dict[str, Any]:
    """The JSON error body: ``{"error": message}`` (+ ``retry_after``, clamped)."""
    if retry_after is None:
        return {"error": message}
    return {"error": message, "retry_after": clamp_retry_after(retry_after)}


def error_headers(status: int, retry_after: int | None = None) -> dict[str, str]:
    """The headers an error answer adds: ``Retry-After`` with a delay; ``Connection:
    close`` for 413 (the rest of the body is never read: the connection is done)."""
    if status == 413:
        return {"Connection": "close"}
    if retry_after is None:
        return {}
    return {"Retry-After": str(clamp_retry_after(retry_after))}


def encode_json(body: Any) -> bytes:
    """Compact JSON, as every service answers."""
    return json.dumps(body, separators=(",", ":")).encode()


__all__ = [
    "MAX_RETRY_AFTER",
    "Refusal",
    "clamp_retry_after",
    "encode_json",
    "error_body",
    "error_headers",
]
