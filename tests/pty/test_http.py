"""The terminal server's request heads (h11) and answers, over an in-memory stream pair."""

from __future__ import annotations

import h11
import pytest
import trio
import trio.testing

from webterm.pty.http import HEAD_LIMIT, BadRequest, RequestHead, answer, read_head


async def head_of(*chunks: bytes, close: bool = False) -> RequestHead:
    client, server = trio.testing.memory_stream_pair()
    for chunk in chunks:
        await client.send_all(chunk)
    if close:
        await client.aclose()
    with trio.fail_after(5):
        return await read_head(server)


async def test_a_websocket_upgrade_in_pieces_keeps_every_byte_for_the_replay() -> None:
    chunks = (
        b"GET /ws?x=1 HTTP/1.1\r\nHost: local",
        b"host:7681\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n",
        b"\r\n\x81\x05early",  # a frame right behind the head
    )
    head = await head_of(*chunks)
    assert (head.method, head.path, head.upgrade) == ("GET", "/ws", True)
    assert head.headers["host"] == "localhost:7681"
    assert head.received == b"".join(chunks)


async def test_a_plain_request_is_no_upgrade() -> None:
    head = await head_of(b"GET /healthz HTTP/1.0\r\n\r\n")  # HTTP/1.0 needs no Host
    assert (head.path, head.upgrade, head.headers) == ("/healthz", False, {})


@pytest.mark.parametrize(
    "data",
    [
        b"\x16\x03\x01 garbage\r\n\r\n",  # TLS to a plain port
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",  # which Host to guard?
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nX: " + b"x" * 2 * HEAD_LIMIT + b"\r\n\r\n",
    ],
)
async def test_what_h11_refuses_is_a_bad_request(data: bytes) -> None:
    with pytest.raises(BadRequest):
        await head_of(data)


@pytest.mark.parametrize("data", [b"", b"GET /healthz HTTP/1.1\r\nHost: loc"])
async def test_a_peer_that_closes_before_the_end_is_a_bad_request(data: bytes) -> None:
    with pytest.raises(BadRequest):
        await head_of(data, close=True)


def test_an_answer_is_whole_and_closes() -> None:
    data = answer(403, b"no\n")
    assert data.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    response = client.next_event()
    assert isinstance(response, h11.Response)
    assert (b"cache-control", b"no-store") in list(response.headers)
    assert client.next_event() == h11.Data(data=b"no\n")
    assert isinstance(client.next_event(), h11.EndOfMessage)
    assert client.their_state is h11.MUST_CLOSE
