"""The file relay: ``/terminals/{name}/files/...`` → the terminal's ``/files/...``.

Uploads (``PUT``) and downloads (``GET``) go to the terminal server's file endpoints
(:mod:`webterm.pty.filehttp`), streamed both ways (never held whole: an upload's body
goes to the terminal as it arrives, with its ``Content-Length``). Admission is the
WebSocket proxy's (:mod:`webterm.webserver.proxy`), before anything is dialed: an
allowed ``Origin``; ``Authorization: Bearer <token>`` genuine, unexpired and naming this
terminal (else 401 or 403); the manager knows the terminal at the token's instance (404,
or 401 for a recycled one). The terminal checks the token again, with its instance.
Its answers (statuses and bodies) go to the browser as they are.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Final

import httpx

from webterm.keys import PublicKeys
from webterm.protocol import TERMINAL_NAME, TokenError
from webterm.service.errors import encode_json, error_body
from webterm.webserver.addresses import AddressBook, Lookup
from webterm.webserver.asgi import Receive, Scope, Send, peer, scope_headers
from webterm.webserver.forwarding import TrustedProxies, public_host, same_origin

log = logging.getLogger("webterm.webserver.files")

PATH: Final = re.compile(rf"^/terminals/({TERMINAL_NAME.pattern})(/files/.+)$")

TIMEOUT: Final = httpx.Timeout(60.0, connect=10.0)
"""Seconds the terminal may take to connect (10) and between any two reads or writes."""

PASSED_REQUEST_HEADERS: Final = ("authorization", "content-length", "content-type")
PASSED_ANSWER_HEADERS: Final = (
    "content-type",
    "content-length",
    "content-disposition",
    "retry-after",
    "x-content-type-options",
)


class BrowserGone(Exception):
    """The browser went away during the upload."""


def is_files_path(path: str) -> bool:
    return PATH.match(path) is not None


class FilesRelay:
    """The ASGI handler for ``/terminals/{name}/files/...`` HTTP requests."""

    def __init__(
        self,
        *,
        keys: PublicKeys,
        addresses: AddressBook,
        allowed_origins: tuple[str, ...],
        trusted: TrustedProxies,
    ) -> None:
        self.keys = keys
        self.addresses = addresses
        self.allowed_origins = frozenset(allowed_origins)
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = PATH.match(scope.get("path", ""))
        if match is None:
            await _answer(send, 404, "not found")
            return
        name = match.group(1)
        headers = scope_headers(scope)
        if not self._origin_allowed(headers, scope):
            await _answer(send, 403, "origin not allowed")
            return
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            await _answer(send, 401, "missing token (send Authorization: Bearer <token>)")
            return
        try:
            claims = await self.keys.read(token.strip(), now=time.time())
        except TokenError:
            await _answer(send, 401, "invalid or expired token")
            return
        if claims.terminal != name:
            await _answer(send, 403, "the token is for another terminal")
            return
        found = await self.addresses.lookup(name, claims.instance)
        if found is Lookup.STALE:
            await _answer(send, 401, "the terminal was recycled: ask for a fresh token")
            return
        if isinstance(found, Lookup):
            await _answer(send, 404 if found is Lookup.UNKNOWN else 503, "no such terminal")
            return
        raw_path = scope.get("raw_path") or match.group(2).encode()
        target = raw_path.decode("latin-1")[len(f"/terminals/{name}") :]
        await self._relay(scope, receive, send, f"http://{found}{target}", headers)

    def _origin_allowed(self, headers: dict[str, str], scope: Scope) -> bool:
        origin = headers.get("origin")
        if origin is None or origin in self.allowed_origins:
            return True  # not a browser page: the token decides
        dialed = public_host(
            headers.get("host"), headers.get("x-forwarded-host"), peer(scope), self.trusted
        )
        return dialed is not None and same_origin(origin, dialed)

    async def _relay(
        self, scope: Scope, receive: Receive, send: Send, url: str, headers: dict[str, str]
    ) -> None:
        method = str(scope.get("method", "GET"))
        passed = {k: v for k, v in headers.items() if k in PASSED_REQUEST_HEADERS}
        content = _body(receive) if method == "PUT" else None
        started = False
        try:
            async with (
                httpx.AsyncClient(timeout=TIMEOUT) as http,
                http.stream(method, url, headers=passed, content=content) as answer,
            ):
                answered = [
                    (k.encode(), v.encode("latin-1"))
                    for k, v in answer.headers.items()
                    if k.lower() in PASSED_ANSWER_HEADERS
                ]
                await send(
                    {
                        "type": "http.response.start",
                        "status": answer.status_code,
                        "headers": [*answered, (b"cache-control", b"no-store")],
                    }
                )
                started = True
                async for chunk in answer.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
        except (httpx.HTTPError, BrowserGone) as exc:
            log.info("file relay to a terminal ended: %s", type(exc).__name__)
            if not started and not isinstance(exc, BrowserGone):
                await _answer(send, 502, "the terminal could not be reached")


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BrowserGone
        body = message.get("body", b"")
        if body:
            yield body
        if not message.get("more_body", False):
            return


async def _answer(send: Send, status: int, message: str) -> None:
    body = encode_json(error_body(message))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


__all__ = ["FilesRelay", "is_files_path"]
