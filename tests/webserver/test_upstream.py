"""The webserver's keep-alive transport to the manager, against real sockets: reuse,
a connection the server closed while idle, concurrency, and errors that say what broke."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

import httpx
import pytest
import trio

from tests.httphead import RequestReader
from webterm.webserver.upstream import UpstreamTransport


@dataclass
class Upstream:
    """A minimal HTTP/1.1 server: answers {"path", "body"}; counts connections."""

    close_after_answer: bool = False  # close without saying so, as an idle timeout does
    delay: float = 0.0
    connections: int = 0
    requests: list[str] = field(default_factory=list)

    async def serve(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        requests = RequestReader(stream)
        while (request := await requests.next()) is not None:
            self.requests.append(f"{request.method} {request.target}")
            await trio.sleep(self.delay)
            answer = json.dumps({"path": request.target, "body": request.body.decode()}).encode()
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer)
            )
            if self.close_after_answer:
                await stream.aclose()
                return


@asynccontextmanager
async def client_for(upstream: Upstream, **kwargs: object) -> AsyncIterator[httpx.AsyncClient]:
    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(
            partial(trio.serve_tcp, upstream.serve, 0, host="127.0.0.1")
        )
        port = listener.socket.getsockname()[1]
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", transport=UpstreamTransport(), **kwargs
        ) as client:
            yield client
        nursery.cancel_scope.cancel()


async def test_requests_reuse_one_connection() -> None:
    upstream = Upstream()
    async with client_for(upstream) as client:
        for i in range(5):
            answer = await client.post("/v1/allocations", json={"client": f"c{i}"})
            assert answer.status_code == 200
            assert answer.json() == {"path": "/v1/allocations", "body": f'{{"client":"c{i}"}}'}
        assert (await client.delete("/v1/allocations/c%2F1")).json()["path"] == (
            "/v1/allocations/c%2F1"
        )
    assert upstream.connections == 1


async def test_a_connection_closed_while_idle_is_replaced_without_an_error() -> None:
    upstream = Upstream(close_after_answer=True)
    async with client_for(upstream) as client:
        for _ in range(3):
            await trio.sleep(0.05)  # the close arrives while the connection sits idle
            assert (await client.get("/readyz")).status_code == 200
    assert upstream.requests == ["GET /readyz"] * 3  # each sent once: no duplicate
    assert upstream.connections == 3


async def test_when_every_idle_connection_was_closed_the_retry_dials_afresh() -> None:
    upstream = Upstream(close_after_answer=True, delay=0.05)
    async with client_for(upstream) as client:
        async with trio.open_nursery() as nursery:  # three connections, then all idle
            for _ in range(3):
                nursery.start_soon(client.get, "/readyz")
        await trio.sleep(0.05)  # the closes arrive while they sit idle
        assert (await client.get("/again")).status_code == 200
    assert upstream.requests.count("GET /again") == 1
    assert upstream.connections == 4


async def test_concurrent_requests_each_get_their_own_answer() -> None:
    upstream = Upstream(delay=0.01)
    answers: dict[int, str] = {}
    async with client_for(upstream) as client:

        async def ask(i: int) -> None:
            answers[i] = (await client.post("/x", content=str(i))).json()["body"]

        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(ask, i)
    assert answers == {i: str(i) for i in range(100)}
    assert upstream.connections <= 100


async def test_errors_are_httpx_errors_that_say_what_broke() -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with httpx.AsyncClient(transport=UpstreamTransport()) as client:
        with pytest.raises(httpx.ConnectError, match="the manager at"):
            await client.get(f"http://127.0.0.1:{port}/readyz")
        with pytest.raises(httpx.UnsupportedProtocol):
            await client.get("https://127.0.0.1:1/readyz")
    upstream = Upstream(delay=5.0)
    async with client_for(upstream, timeout=httpx.Timeout(0.2)) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/slow")
