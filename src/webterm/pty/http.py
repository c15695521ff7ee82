"""HTTP on the terminal server's port: the request head, read with h11, and short answers.

The listener reads each request's head itself, to answer ``GET /healthz`` and refusals
here (JSON, the services' one error body: :mod:`webterm.service.errors`) and to hand ``/ws`` upgrades to trio-websocket with the bytes already read replayed
(:class:`ReplayStream`). h11 parses the head (the request line, header syntax, exactly
one ``Host`` in HTTP/1.1, the size cap); anything it refuses is a :class:`BadRequest`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final

import h11
import trio

from webterm.service.errors import Refusal, encode_json, error_body, error_headers

HEAD_LIMIT: Final = 16 * 1024
"""Largest HTTP request head we read (h11's own default cap)."""

HEAD_TIMEOUT: Final = 10.0
"""Seconds a client has to send its request head (slowloris guard)."""


class BadRequest(Exception):
    """The request head is not HTTP/1.x, is too large, or the peer closed before its end."""


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    path: str  # the target without its query
    headers: dict[str, str]  # lowercase names; of a repeated header, the last
    received: bytes  # every byte read: the head and whatever followed it
    parser: h11.Connection = field(compare=False, repr=False)  # reads on: the body

    @property
    def upgrade(self) -> bool:
        """Whether the client asks to switch to WebSocket."""
        return self.headers.get("upgrade", "").lower() == "websocket"


async def read_head(stream: trio.abc.Stream) -> RequestHead:
    """Read up to the end of a request head. The caller sets the deadline. Raises
    :class:`BadRequest` for anything h11 refuses or a peer that closed first."""
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=HEAD_LIMIT)
    received = bytearray()
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError as exc:
            raise BadRequest(str(exc)) from exc
        if event is h11.NEED_DATA:
            data = await stream.receive_some(4096)
            received += data
            connection.receive_data(bytes(data))  # b"": the peer closed
        elif isinstance(event, h11.Request):
            method, target = event.method.decode("latin-1"), event.target.decode("latin-1")
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in event.headers}
            path = target.split("?", 1)[0]
            return RequestHead(method, path, headers, bytes(received), connection)
        else:  # ConnectionClosed: nothing was sent at all
            raise BadRequest("the connection closed before the request head ended")


async def read_body(
    stream: trio.abc.Stream, head: RequestHead, chunk: int = 65536
) -> AsyncIterator[bytes]:
    """The request's body as it arrives (framed by h11: ``Content-Length`` or chunked).
    Raises :class:`BadRequest` if the peer closes before its end."""
    parser = head.parser
    while True:
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError as exc:
            raise BadRequest(str(exc)) from exc
        if event is h11.NEED_DATA:
            parser.receive_data(bytes(await stream.receive_some(chunk)))
        elif isinstance(event, h11.Data):
            yield bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return
        else:
            raise BadRequest("the connection closed before the request body ended")


def answer(
    status: int,
    body: bytes,
    content_type: str = "text/plain",
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    """A whole answer, after which the connection closes."""
    connection = h11.Connection(h11.SERVER)  # framed by h11: one answer, then close
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        ("Cache-Control", "no-store"),
        *(extra_headers or {}).items(),
    ]
    reason = HTTPStatus(status).phrase.encode()
    data = connection.send(h11.Response(status_code=status, headers=headers, reason=reason))
    data += connection.send(h11.Data(data=body))
    data += connection.send(h11.EndOfMessage())
    return data


def json_answer(status: int, body: Any) -> bytes:
    """A whole JSON answer (compact, as every service answers), then close."""
    return answer(status, encode_json(body), "application/json")


def refusal_answer(refusal: Refusal) -> bytes:
    """The answer to ``refusal``: the services' one JSON error body and headers."""
    status, retry_after = refusal.error_status_hint, refusal.retry_after
    return answer(
        status,
        encode_json(error_body(refusal.message, retry_after)),
        "application/json",
        error_headers(status, retry_after),
    )


class ReplayStream(trio.abc.Stream):
    """A stream that first yields ``prefix`` (bytes we already read), then ``stream``."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            if max_bytes is None:
                data, self._prefix = self._prefix, b""
            else:
                data, self._prefix = self._prefix[:max_bytes], self._prefix[max_bytes:]
            await trio.lowlevel.checkpoint()
            return data
        return await self._stream.receive_some(max_bytes)

    @property
    def socket(self) -> trio.socket.SocketType | None:
        """The TCP socket underneath, if any: :mod:`webterm.pty.frames` writes output
        frames to it directly."""
        sock = getattr(self._stream, "socket", None)
        return sock if isinstance(sock, trio.socket.SocketType) else None

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        if isinstance(self._stream, trio.abc.HalfCloseableStream):
            await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


__all__ = [
    "HEAD_LIMIT",
    "HEAD_TIMEOUT",
    "BadRequest",
    "ReplayStream",
    "RequestHead",
    "answer",
    "json_answer",
    "read_body",
    "read_head",
    "refusal_answer",
]
