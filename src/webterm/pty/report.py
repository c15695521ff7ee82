"""The terminal server's two small calls to the manager (recycle me; a client came or
went), as one HTTP/1.1 POST per connection with h11 over trio: :func:`report` retries,
:func:`post_json` sends one. This server can sign nothing: a report carries the latest
token a browser opened the terminal with, which the manager accepts (long past its
expiry) for this terminal's own reports only.

Not httpx: a terminal pod runs one of these servers per user, and httpx with its
dependencies (certificate bundle, CLI, encodings) is a quarter of an idle server's
memory. h11 is the HTTP/1.1 state machine httpx itself uses underneath.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final
from urllib.parse import urlsplit

import h11
import trio

from webterm.config import PtyConfig
from webterm.errors import WebtermError
from webterm.http1 import ExchangeError, exchange

log = logging.getLogger("webterm.pty")

REPORT_TIMEOUT: Final = 5.0
"""Seconds one attempt may take; the session never waits on a report."""

RECYCLE_BUDGET: Final = 900.0
"""Seconds a ``recycle`` report keeps being retried (a failed call, or a 5xx: the
manager answers 503 until the pod's delete is durable, and an API outage of a zonal
control-plane upgrade lasts minutes). A ``connection`` report is tried once: the next
one says the same, and the manager learns it from the pod too."""

REPORT_BACKOFF: Final = 0.5
"""Seconds before the second attempt; each later wait doubles, up to REPORT_BACKOFF_CAP."""

REPORT_BACKOFF_CAP: Final = 10.0


async def report(config: PtyConfig, token: str | None, action: str, body: dict[str, Any]) -> None:
    """Best effort: POST ``body`` to the manager's ``/v1/terminals/<name>/<action>``
    with ``token`` (the latest a browser opened us with), retried on a failed call or a
    5xx (``recycle`` only, for RECYCLE_BUDGET); failures are logged."""
    assert config.manager_url
    if token is None:
        log.warning("no token to report %s with (no client connected yet)", action)
        return
    url = f"{config.manager_url.rstrip('/')}/v1/terminals/{config.name}/{action}"
    budget = RECYCLE_BUDGET if action == "recycle" else 0.0
    deadline = trio.current_time() + budget
    wait = REPORT_BACKOFF
    while True:
        with trio.move_on_after(REPORT_TIMEOUT):
            try:
                status = await post_json(url, body, {"Authorization": f"Bearer {token}"})
                if status < 500:
                    if status >= 400:
                        log.warning("manager refused %s: %d", action, status)
                    return
                log.info("manager answered %s with %d: trying again", action, status)
            except ReportError as exc:
                log.warning("manager call %s failed: %s", action, exc)
        if trio.current_time() + wait > deadline:
            if budget:
                log.error("gave up reporting %s after %.0f s", action, budget)
            return
        await trio.sleep(wait)
        wait = min(wait * 2, REPORT_BACKOFF_CAP)


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
