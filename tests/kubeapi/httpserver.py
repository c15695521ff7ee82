"""A small HTTP/1.1 server: trio + h11, nothing else.

Why not hypercorn: a watch stream must be able to end three ways — cleanly (the
terminating chunk, as when ``timeoutSeconds`` runs out), because the client went
away, and *abruptly* (TCP reset in the middle of the chunked body, as when an
apiserver or a load balancer dies). ASGI has no way to say "reset this connection",
and hypercorn leaves a half-written response hanging when an app raises mid-body.
With h11 we own the socket: one task per connection, request/response cycles with
keep-alive, chunked streaming (h11 frames it), a reader task during a stream that
notices the client hanging up, and SO_LINGER=0 + close for an abort.

Resource handling: each connection's stream is closed in ``finally`` whatever
happens; cancelling :meth:`HttpServer.run` closes the listeners and every connection."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Final, NoReturn
from urllib.parse import parse_qs, unquote

import h11
import trio

from tests.httphead import BadRequest, receive_request

MAX_HEADER_BYTES: Final = 64 * 1024  # an apiserver accepts up to 1 MiB headers; ours are tiny
MAX_BODY_BYTES: Final = 3 * 1024 * 1024  # apiserver's default --max-request-bytes-ish (3 MiB)
RECEIVE_BYTES: Final = 64 * 1024


@dataclass
class Request:
    method: str
    path: str  # percent-decoded path, no query
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    client: str = ""

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


class StreamWriter:
    """What a streaming handler writes to. ``send`` raises trio.BrokenResourceError
    once the client is gone; the handler's cancel scope is cancelled then too."""

    def __init__(self, conn: h11.Connection, stream: trio.abc.Stream) -> None:
        self._conn = conn
        self._stream = stream
        self.aborted = False

    async def send(self, data: bytes) -> None:
        if data:
            await self._stream.send_all(self._conn.send(h11.Data(data=data)))


@dataclass
class StreamResponse:
    """Chunked response; ``produce(writer)`` writes the body and returns to end it
    cleanly, or calls :func:`abort_connection` to reset the TCP connection."""

    status: int
    headers: list[tuple[str, str]]
    produce: Callable[[StreamWriter], Awaitable[None]]


class AbortConnection(Exception):
    """Raised by a streaming producer: reset the connection instead of finishing."""


def abort_connection() -> NoReturn:
    raise AbortConnection


Handler = Callable[[Request], Awaitable[Response | StreamResponse]]


def _raw_socket(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    if isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        return stream.socket
    return None


async def _reset(stream: trio.abc.Stream) -> None:
    sock = _raw_socket(stream)
    if sock is not None and sock.fileno() != -1:  # not closed by its handler already
        # SO_LINGER on with 0 s: close() sends RST and drops unsent data.
        with contextlib.suppress(OSError):  # the peer went first (EBADF, ENOTCONN)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    await trio.aclose_forcefully(stream)


class HttpServer:
    """Serves ``handler`` until cancelled. Outage switches, consulted per request and
    woken by ``changed()``: ``unreachable()`` answers each request with a TCP reset;
    ``refusing()`` closes the listening socket (connections are refused) and resets
    every open connection, reopening the same port once it turns false;
    ``hanging()`` reads requests and answers none until it turns false (then resets)."""

    def __init__(
        self,
        handler: Handler,
        *,
        ssl_context: ssl.SSLContext | None = None,
        unreachable: Callable[[], bool] = lambda: False,
        refusing: Callable[[], bool] = lambda: False,
        hanging: Callable[[], bool] = lambda: False,
        changed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._handler = handler
        self._ssl_context = ssl_context
        self._unreachable = unreachable
        self._refusing = refusing
        self._hanging = hanging
        self._changed = changed or trio.sleep_forever
        self._connections: set[trio.abc.Stream] = set()

    async def run(
        self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Serve until cancelled; ``task_status.started(bound_port)``."""
        started = False
        async with trio.open_nursery() as handlers:
            while True:
                try:
                    listeners: list[trio.abc.Listener[trio.abc.Stream]] = list(
                        await trio.open_tcp_listeners(port, host=host)
                    )
                except OSError:
                    if not started:
                        raise
                    await trio.sleep(0.05)  # the old socket is not quite gone yet
                    continue
                port = listeners[0].socket.getsockname()[1]  # type: ignore[attr-defined]
                if self._ssl_context is not None:
                    listeners = [
                        trio.SSLListener(lst, self._ssl_context, https_compatible=True)
                        for lst in listeners
                    ]
                async with trio.open_nursery() as accepting:
                    accepting.start_soon(
                        partial(
                            trio.serve_listeners,
                            self._connection,
                            listeners,
                            handler_nursery=handlers,
                        )
                    )
                    if not started:
                        started = True
                        task_status.started(port)
                    while not self._refusing():
                        await self._changed()
                    accepting.cancel_scope.cancel()  # closes the listening sockets
                for stream in list(self._connections):
                    await _reset(stream)
                while self._refusing():
                    await self._changed()

    async def _connection(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        client = ""
        sock = _raw_socket(stream)
        if sock is not None:
            with contextlib.suppress(OSError):
                client = "{}:{}".format(*sock.getpeername()[:2])
        self._connections.add(stream)
        try:
            while True:
                request = await self._receive_request(conn, stream, client)
                if request is None:
                    return
                if self._unreachable() or self._refusing():
                    await _reset(stream)
                    return
                if self._hanging():
                    while self._hanging():
                        await self._changed()
                    await _reset(stream)
                    return
                response = await self._handler(request)
                if isinstance(response, StreamResponse):
                    if not await self._stream(conn, stream, response):
                        await _reset(stream)
                        return
                else:
                    await self._send(conn, stream, response)
                if h11.MUST_CLOSE in (conn.our_state, conn.their_state):
                    return
                try:
                    conn.start_next_cycle()
                except h11.LocalProtocolError:
                    return
        except (h11.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return
        finally:
            self._connections.discard(stream)
            await trio.aclose_forcefully(stream)

    async def _receive_request(
        self, conn: h11.Connection, stream: trio.abc.Stream, client: str
    ) -> Request | None:
        try:
            received = await receive_request(conn, stream, max_body=MAX_BODY_BYTES)
        except BadRequest as exc:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await self._send(conn, stream, Response(exc.status, [("connection", "close")]))
            return None
        if received is None:
            return None
        head, body = received
        target = head.target.decode("latin-1")
        raw_path, _, query = target.partition("?")
        headers: dict[str, str] = {}
        for name, value in head.headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        return Request(
            method=head.method.decode("ascii"),
            path=unquote(raw_path),
            query=parse_qs(query, keep_blank_values=True),
            headers=headers,
            body=body,
            client=client,
        )

    async def _send(
        self, conn: h11.Connection, stream: trio.abc.Stream, response: Response
    ) -> None:
        headers = [*response.headers, ("content-length", str(len(response.body)))]
        data = conn.send(h11.Response(status_code=response.status, headers=headers))
        data += conn.send(h11.Data(data=response.body)) if response.body else b""
        data += conn.send(h11.EndOfMessage())
        await stream.send_all(data)

    async def _stream(
        self, conn: h11.Connection, stream: trio.abc.Stream, response: StreamResponse
    ) -> bool:
        """Run the producer; True when the response ended cleanly, False to reset."""
        await stream.send_all(
            conn.send(h11.Response(status_code=response.status, headers=response.headers))
        )
        writer = StreamWriter(conn, stream)
        gone = aborted = False
        async with trio.open_nursery() as nursery:

            async def watch_client() -> None:
                nonlocal gone
                while True:
                    try:
                        data = await stream.receive_some(RECEIVE_BYTES)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        data = b""
                    if not data:
                        gone = True
                        nursery.cancel_scope.cancel()
                        return
                    conn.receive_data(bytes(data))  # a pipelined next request: keep it for later

            nursery.start_soon(watch_client)
            try:
                await response.produce(writer)
            except AbortConnection:
                aborted = True
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                gone = True
            nursery.cancel_scope.cancel()
        if aborted:
            return False
        if gone:
            raise trio.ClosedResourceError("client went away")
        await stream.send_all(conn.send(h11.EndOfMessage()))
        return True
