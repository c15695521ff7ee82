"""The terminal server's two small calls to the manager (recycle me; a client came or
went), as one HTTP/1.1 POST per connection with h11 over trio.

Not httpx: a terminal pod runs one of these servers per user, and httpx with its
dependencies (certificate bundle, CLI, encodings) is a quarter of an idle server's
memory. h11 is the HTTP/1.1 state machine httpx itself uses underneath.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import h11
import trio

from webterm.errors import WebtermError
from webterm.http1 import ExchangeError, exchange


class ReportError(WebtermError):
    """The manager could not be reached or did not answer in HTTP."""

    error_status_hint = 502


async def post_json(url: str, body: dict[str, Any], headers: dict[str, str]) -> int:
    """POST ``body`` as JSON to ``url``; the response's status code. The caller sets
    the deadline. Raises :class:`ReportError` for anything but an HTTP answer."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ReportError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    payload = json.dumps(body, separators=(",", ":")).encode()
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers_out = [
        ("Host", parts.netloc),
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(payload))),
        ("Connection", "close"),
        ("User-Agent", "webterm-pty"),
        *headers.items(),
    ]
    try:
        stream: trio.abc.Stream = await trio.open_tcp_stream(parts.hostname, port)
        if parts.scheme == "https":
            import ssl  # only then: the module and its context cost memory

            stream = trio.SSLStream(
                stream, ssl.create_default_context(), server_hostname=parts.hostname
            )
        async with stream:
            connection = h11.Connection(h11.CLIENT)
            answer = await exchange(stream, connection, "POST", target, headers_out, payload)
            return answer.status
    except (OSError, ExchangeError) as exc:
        raise ReportError(str(exc) or type(exc).__name__) from exc
