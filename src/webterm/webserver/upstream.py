"""The webserver's HTTP/1.1 transport to the manager: keep-alive connections over h11,
one request per connection at a time, no pool queue.

httpx's default pool (httpcore) rescans every queued request and connection on each
change; with 200 allocations in flight that was most of the webserver's CPU and served
requests in no useful order. Here a request takes an idle connection or opens one, and
gives it back when the answer is read. An idle connection the manager has meanwhile
closed is noticed before any answer arrives, and the request is sent once more on a new
connection (every manager call is safe to repeat: an allocation for the same client is
the same terminal). Plain ``http://`` only: the manager is an in-cluster service.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Final

import h11
import httpx
import trio

from webterm.http1 import BrokenAnswer, NoAnswer, exchange

IDLE_SECONDS: Final = 30.0
"""An idle connection is closed after this: well inside the manager's 75 s keep-alive."""

MAX_IDLE: Final = 256
"""Idle connections kept per upstream; more are closed when given back."""


class _Connection:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0

    async def exchange(self, request: httpx.Request, body: bytes) -> httpx.Response:
        headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"transfer-encoding"]
        if not any(k.lower() == b"content-length" for k, _ in headers) and (
            body or request.method not in ("GET", "HEAD", "DELETE")
        ):
            headers.append((b"Content-Length", str(len(body)).encode()))
        try:
            answer = await exchange(
                self.stream, self.h11, request.method, request.url.raw_path, headers, body
            )
        except BrokenAnswer as exc:
            raise httpx.RemoteProtocolError(f"the manager's answer: {exc}") from exc
        return httpx.Response(
            answer.status, headers=answer.headers, content=answer.body, request=request
        )

    def reusable(self) -> bool:
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            return True
        return False


class UpstreamTransport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 for an :class:`httpx.AsyncClient` to the manager."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = defaultdict(list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"the manager is reached over http://, not {url}")
        key = (url.host, url.port or 80)
        timeout = request.extensions.get("timeout", {})
        body = await request.aread()
        for attempt in range(2):
            # the second attempt never takes another idle connection: it may be as stale
            connection = self._take(key) if attempt == 0 else None
            reused = connection is not None
            if connection is None:
                connection = await self._open(key, timeout.get("connect"))
            try:
                with trio.fail_after(timeout.get("read") or math.inf):
                    response = await connection.exchange(request, body)
            except NoAnswer:
                await trio.aclose_forcefully(connection.stream)
                if reused:
                    continue  # the manager had closed that idle connection: a fresh one
                raise httpx.RemoteProtocolError("the manager closed the connection") from None
            except trio.TooSlowError:
                await trio.aclose_forcefully(connection.stream)
                raise httpx.ReadTimeout("the manager did not answer in time") from None
            except BaseException:
                await trio.aclose_forcefully(connection.stream)
                raise
            if connection.reusable() and len(self._idle[key]) < MAX_IDLE:
                connection.idle_since = trio.current_time()
                self._idle[key].append(connection)
            else:
                await trio.aclose_forcefully(connection.stream)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _take(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle[key]
        cutoff = trio.current_time() - IDLE_SECONDS
        while idle:
            connection = idle.pop()  # the most recently used: the least likely closed
            if connection.idle_since >= cutoff:
                return connection
            connection.stream.socket.close()
        return None

    async def _open(self, key: tuple[str, int], deadline: float | None) -> _Connection:
        try:
            with trio.fail_after(deadline or math.inf):
                stream = await trio.open_tcp_stream(*key)
        except trio.TooSlowError:
            raise httpx.ConnectTimeout(f"connecting to the manager at {key[0]}:{key[1]}") from None
        except OSError as exc:
            raise httpx.ConnectError(f"the manager at {key[0]}:{key[1]}: {exc}") from exc
        return _Connection(stream)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                await trio.aclose_forcefully(connection.stream)
        self._idle.clear()
