"""The webserver's JSON answers, and the one way a route refuses: raise :class:`Refusal`.

Every error answer is JSON ``{"error": TEXT}``; 429 and 503 add ``retry_after``
(seconds, clamped to 1..:data:`MAX_RETRY_AFTER`) and a ``Retry-After`` header. Every
JSON answer is ``no-store``: answers carry tokens."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

from quart import Response, request
from quart_trio import QuartTrio

MAX_BODY_BYTES: Final = 16 * 1024
"""Request bodies: the API's are ~100 bytes; 16 KiB is h11's own header cap."""

MAX_RETRY_AFTER: Final = 3600
"""A Retry-After from the manager beyond an hour is a bug; clamp what we pass on."""

FRAMEWORK_ERRORS: Final = (
    (400, "bad request"),
    (404, "not found"),
    (405, "method not allowed"),
    (413, "request body too large"),
    (500, "internal error"),
)
"""The answers Quart's own errors become."""


class Refusal(Exception):
    """The answer to give instead of going on: raised in a route, answered by the one
    handler :func:`install_error_handlers` registers."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(
        json.dumps(body, separators=(",", ":")),
        status=status,
        content_type="application/json",
        headers=headers or {},
    )
    response.headers.setdefault("Cache-Control", "no-store")  # answers carry tokens
    return response


def error_response(status: int, message: str, retry_after: int | None = None) -> Response:
    if status == 413:  # the rest of the body is never read: this connection is done
        return json_response({"error": message}, status, {"Connection": "close"})
    if retry_after is None:
        return json_response({"error": message}, status)
    retry_after = min(max(1, retry_after), MAX_RETRY_AFTER)
    return json_response(
        {"error": message, "retry_after": retry_after},
        status,
        {"Retry-After": str(retry_after)},
    )


async def json_body() -> dict[str, Any]:
    """The current request's JSON object ({} for an empty body), or raise
    :class:`Refusal` (413 too large, 400 not a JSON object)."""
    raw = await request.get_data(as_text=False)
    if len(raw) > MAX_BODY_BYTES:
        raise Refusal(413, "request body too large")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise Refusal(400, "request body must be JSON") from None
    if not isinstance(body, dict):
        raise Refusal(400, "request body must be a JSON object")
    return body


def install_error_handlers(app: QuartTrio) -> None:
    """:class:`Refusal` and the framework's own errors answer as JSON."""

    async def refused(refusal: Refusal) -> Response:
        return error_response(refusal.status, refusal.message, refusal.retry_after)

    def framework(status: int, message: str) -> Callable[[Exception], Awaitable[Response]]:
        async def handler(_: Exception) -> Response:
            return error_response(status, message)

        return handler

    app.register_error_handler(Refusal, refused)
    for status, message in FRAMEWORK_ERRORS:
        app.register_error_handler(status, framework(status, message))


__all__ = [
    "MAX_BODY_BYTES",
    "Refusal",
    "error_response",
    "install_error_handlers",
    "json_body",
    "json_response",
]
