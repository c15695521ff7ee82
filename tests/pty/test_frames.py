"""Output frames written by webterm.pty.frames, read by a real WebSocket client."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from trio_websocket import WebSocketConnection, open_websocket, serve_websocket

from webterm.pty.frames import binary_header, raw_socket, send_binary


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 300_000])
def test_the_header_carries_the_length_in_the_shortest_form(size: int) -> None:
    header = binary_header(size)
    assert header[0] == 0x82  # FIN, binary
    length = header[1] & 0x7F
    assert not header[1] & 0x80  # a server's frames are not masked
    if size < 126:
        assert (len(header), length) == (2, size)
    elif size < 65536:
        assert (len(header), length) == (4, 126)
        assert int.from_bytes(header[2:], "big") == size
    else:
        assert (len(header), length) == (10, 127)
        assert int.from_bytes(header[2:], "big") == size


async def test_messages_in_parts_arrive_whole_and_in_order_among_others() -> None:
    sizes = [0, 5, 125, 126, 70_000, 1_000_000]
    got: list[str | bytes] = []

    async def handler(request: object) -> None:
        ws: WebSocketConnection = await request.accept()  # type: ignore[attr-defined]
        assert raw_socket(ws) is not None  # the fast path, not the fallback
        for size in sizes:
            data = bytes(i % 251 for i in range(size))
            parts = [memoryview(data)[i : i + 40_000] for i in range(0, size, 40_000)]
            await send_binary(ws, parts)
            await ws.send_message(f"after {size}")
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        port = server.port
        async with open_websocket(
            "127.0.0.1", port, "/", use_ssl=False, max_message_size=1 << 24
        ) as client:
            with trio.fail_after(30):
                for _ in range(2 * len(sizes)):
                    got.append(await client.get_message())
        nursery.cancel_scope.cancel()
    expected: list[str | bytes] = []
    for size in sizes:
        expected += [bytes(i % 251 for i in range(size)), f"after {size}"]
    assert got == expected


async def test_a_send_after_the_close_raises_connection_closed() -> None:
    from trio_websocket import ConnectionClosed

    outcome: list[BaseException] = []
    closed = trio.Event()

    async def handler(request: object) -> None:
        ws: WebSocketConnection = await request.accept()  # type: ignore[attr-defined]
        await closed.wait()
        with trio.fail_after(10):
            while ws.closed is None:
                await trio.sleep(0.01)
        try:
            await send_binary(ws, [b"late"])
        except ConnectionClosed as exc:
            outcome.append(exc)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        async with open_websocket("127.0.0.1", server.port, "/", use_ssl=False):
            pass
        closed.set()
        with trio.fail_after(10):
            while not outcome:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert isinstance(outcome[0], ConnectionClosed)


async def test_the_pty_servers_replay_stream_exposes_its_socket() -> None:
    from webterm.pty.http import ReplayStream

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        assert ReplayStream(stream, b"").socket is stream.socket
        assert ReplayStream(trio.testing.MemorySendStream(), b"").socket is None  # type: ignore[arg-type]
    for listener in listeners:
        await listener.aclose()
