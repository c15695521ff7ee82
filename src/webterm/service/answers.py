"""JSON answers for the Quart apps (manager, webserver), their request bodies, and the
one error handler: a raised :class:`~webterm.service.errors.Refusal` (or any of its
subclasses) and the framework's own errors answer with the one JSON error body. Every
JSON answer is ``no-store``: answers carry tokens."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

from quart import Response, request
from quart_trio import QuartTrio

from webterm.service.errors import Refusal, encode_json, error_body, error_headers

MAX_BODY_BYTES: Final = 16 * 1024
"""Request bodies: the APIs' are ~100 bytes; 16 KiB is h11's own header cap."""

FRAMEWORK_ERRORS: Final = (
    (400, "bad request"),
    (404, "not found"),
    (405, "method not allowed"),
    (413, "request body too large"),
    (500, "internal error"),
)
"""The answers Quart's own errors become."""


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(
        encode_json(body), status=status, content_type="application/json", headers=headers or {}
    )
    response.headers.setdefault("Cache-Control", "no-store")  # answers carry tokens
    return response


def error_response(status: int, message: str, retry_after: int | None = None) -> Response:
    if status == 413:
        retry_after = None
    return json_response(
        error_body(message, retry_after), status, error_headers(status, retry_after)
    )


async def json_body() -> dict[str, Any]:
    """The current request's JSON object ({} for an empty body), or raise
    :class:`Refusal` (413 too large, 400 not a JSON object)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise Refusal(413, "request body too large")
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
    """:class:`Refusal` (and its subclasses) and the framework's own errors answer as
    JSON; request bodies are capped at :data:`MAX_BODY_BYTES`."""
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

    async def refused(refusal: Refusal) -> Response:
        return error_response(refusal.error_status_hint, refusal.message, refusal.retry_after)

    def framework(status: int, message: str) -> Callable[[Exception], Awaitable[Response]]:
        async def handler(_: Exception) -> Response:
            return error_response(status, message)

        return handler

    app.register_error_handler(Refusal, refused)
    for status, message in FRAMEWORK_ERRORS:
        app.register_error_handler(status, framework(status, message))


__all__ = [
    "MAX_BODY_BYTES",
    "error_response",
    "install_error_handlers",
    "json_body",
    "json_response",
]
