"""The one HTTP/1.1 request reader for the small servers of the tests and benchmarks
(stand-in managers, the page's fake backend, a fake Kubernetes API), with h11 parsing.

Each request gets a fresh ``h11.Connection``, so the caller answers however it needs
to: raw bytes, a chunked stream it writes itself, or a WebSocket handshake replayed from
:attr:`Request.raw`. (A server that answers through h11 as well, as
``tests/kubeapi/httpserver.py`` does, keeps one connection instead.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import h11
import trio

MAX_HEAD_BYTES: Final = 64 * 1024
"""A test's request heads are a few hundred bytes; this refuses garbage early."""
RECEIVE_BYTES: Final = 64 * 1024


class BadRequest(ValueError):
    """The peer sent something that is not an acceptable HTTP/1.1 request;
    ``status`` is what to answer with (h11's ``error_status_hint``, or 413)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


async def receive_request(
    conn: h11.Connection, stream: trio.abc.ReceiveStream, *, max_body: int | None = None
) -> tuple[h11.Request, bytes] | None:
    """The next request on ``conn`` (a server-side h11 connection fed from ``stream``)
    with its whole body; None if the peer closed between requests. Raises
    :class:`BadRequest` for anything else."""
    head: h11.Request | None = None
    body = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise BadRequest(str(exc), exc.error_status_hint) from exc
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(RECEIVE_BYTES))  # b"": closed
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
            if max_body is not None and len(body) > max_body:
                raise BadRequest("request body too large", 413)
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            return head, bytes(body)
        elif head is None:  # ConnectionClosed (or PAUSED) between requests
            return None
        else:
            raise BadRequest("the connection closed mid-request")


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]  # names in lower case; a repeated header keeps the last
    body: bytes
    raw: bytes  # every byte read for it: for an upgrade, the head and what followed

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


class _Recording(trio.abc.ReceiveStream):
    def __init__(self, stream: trio.abc.ReceiveStream, raw: bytearray) -> None:
        self.stream, self.raw = stream, raw

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await self.stream.receive_some(max_bytes)
        self.raw += data
        return bytes(data)

    async def aclose(self) -> None:
        await self.stream.aclose()


class RequestReader:
    """Requests off one server-side stream, one after another (keep-alive), each with a
    fresh h11 connection so that the caller may answer as it likes."""

    def __init__(self, stream: trio.abc.ReceiveStream, *, max_body: int | None = None) -> None:
        self.stream = stream
        self.max_body = max_body
        self._buffer = b""

    async def next(self) -> Request | None:
        """The next request; None if the peer closed between requests."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        raw = bytearray(self._buffer)
        if self._buffer:  # (receiving b"" would tell h11 the peer has closed)
            conn.receive_data(self._buffer)
        received = await receive_request(conn, _Recording(self.stream, raw), max_body=self.max_body)
        if received is None:
            return None
        head, body = received
        self._buffer = conn.trailing_data[0]
        return Request(
            method=head.method.decode("ascii"),
            target=head.target.decode("latin-1"),
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in head.headers},
            body=body,
            raw=bytes(raw),
        )
