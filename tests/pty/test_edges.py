"""The terminal server at its edges: sockets that are gone, clients that are behind when
the shell ends, shells that will not start, handshakes that go wrong, and Host headers
from DNS-rebinding pages. Real shells, real ptys, real WebSocket clients."""

from __future__ import annotations

import fcntl
import json
import os
import re
import struct
import termios

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, wrap_client_stream

import webterm.pty.server as server_module
import webterm.pty.terminal as terminal_module
from tests.pty.test_terminal import (
    Client,
    connect,
    make_token,
    pty_config,
    running_server,
)
from webterm.protocol import CloseCode, subprotocols_for
from webterm.pty.server import TerminalServer
from webterm.pty.session import shell_environment, spawn_shell
from webterm.pty.terminal import SPAWN_FAILED


async def read_until_closed(client: Client, seconds: float = 60) -> int:
    """Collect everything until the server closes; the close code."""
    with trio.fail_after(seconds), pytest.raises(ConnectionClosed) as closed:
        while True:
            await client.next()
    return closed.value.reason.code


def lines(output: bytes) -> list[int]:
    return [int(x) for x in re.findall(rb"(\d+)\r\n", output)]


# --- a send to a socket that is already closed --------------------------------------------


async def test_an_idle_warning_for_a_closed_socket_leaves_the_server_running() -> None:
    # The tab closes while its paste waits on a full pty (the program reads nothing),
    # so the input loop cannot see the close; the idle warning is what finds it.
    config = pty_config(
        shell=("/bin/sh", "-c", "stty raw -echo; sleep 60"), idle_timeout=3.0, idle_warning=2.5
    )
    async with running_server(config) as port:
        async with connect(port) as client:
            await client.expect_control("hello")
            await trio.sleep(0.3)  # let stty switch to raw mode
            await client.ws.send_message(b"x" * 200_000)
            await trio.sleep(0.3)
        await trio.sleep(4.0)  # past the warnings and the idle timeout
        async with connect(port) as again:
            assert await again.expect_control("hello") == {
                "type": "hello",
                "terminal": "terminal-0",
                "reattached": True,
            }
            assert (await again.expect_control("exit"))["type"] == "exit"
            assert await read_until_closed(again) == CloseCode.NORMAL


# --- a slow client gets every byte ----------------------------------------------------------


@pytest.mark.parametrize(
    ("scrollback", "count", "acking"),
    [(256 * 1024, 300_000, True), (256 * 1024, 300_000, False), (16 * 1024, 60_000, True)],
)
async def test_a_slow_client_loses_no_output(scrollback: int, count: int, acking: bool) -> None:
    config = pty_config(scrollback_bytes=scrollback)
    async with running_server(config) as port, connect(port) as client:
        await client.expect_control("hello")
        await client.ws.send_message(b"stty -echo; seq 1 %d; echo DONE-'MARK'\n" % count)
        with trio.fail_after(120):
            while b"DONE-MARK" not in client.output:
                message = await client.ws.get_message()
                if isinstance(message, bytes):
                    client.output += message
                    await trio.sleep(len(message) / 2_000_000)  # renders ~2 MB/s
                    if acking:
                        await client.send_json({"type": "ack", "bytes": len(message)})
        received = lines(bytes(client.output))
        assert received[received.index(1) :] == list(range(1, count + 1))


# --- the end of a session, for a client that is behind ----------------------------------


async def test_a_client_behind_at_exit_gets_the_tail_then_exit_then_1000() -> None:
    count = 100_000
    async with running_server(pty_config(scrollback_bytes=8 << 20)) as port:
        async with connect(port) as client, trio.open_nursery() as nursery:
            await client.expect_control("hello")

            async def keep_pinging() -> None:  # the client keeps talking while behind
                try:
                    while True:
                        await client.send_json({"type": "ping"})
                        await trio.sleep(0.005)
                except ConnectionClosed:
                    pass

            nursery.start_soon(keep_pinging)
            await client.ws.send_message(b"stty -echo; seq 1 %d; exit 7\n" % count)
            with trio.fail_after(120), pytest.raises(ConnectionClosed) as closed:
                while True:
                    message = await client.ws.get_message()
                    if isinstance(message, str):
                        client.controls.append(json.loads(message))
                        continue
                    client.output += message
                    await trio.sleep(len(message) / 400_000)  # renders ~400 KB/s
                    await client.send_json({"type": "ack", "bytes": len(message)})
            nursery.cancel_scope.cancel()
        assert lines(bytes(client.output))[-1] == count
        assert {"type": "exit", "status": 7} in client.controls
        assert closed.value.reason.code == CloseCode.NORMAL


async def test_input_waiting_on_a_full_pty_ends_cleanly_at_exit() -> None:
    config = pty_config(shell=("/bin/sh", "-c", "stty raw -echo; sleep 2; exit 5"))
    async with running_server(config) as port, connect(port) as client:
        await client.expect_control("hello")
        await trio.sleep(0.3)  # let stty switch to raw mode
        await client.ws.send_message(b"x" * 200_000)  # waits on the full pty
        assert await client.expect_control("exit") == {"type": "exit", "status": 5}
        assert await read_until_closed(client) == CloseCode.NORMAL


def window_size(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(8)))
    return cols, rows


async def test_a_closed_shell_never_touches_its_old_fd_number() -> None:
    env = shell_environment(os.environ, home=None)
    shell = await spawn_shell(["/bin/sh", "-c", "stty raw -echo; sleep 30"], env=env)
    await trio.sleep(0.3)  # let stty switch to raw mode
    async with trio.open_nursery() as nursery:
        nursery.start_soon(shell.write, b"x" * 200_000)  # waits on the full pty
        await trio.sleep(0.3)
        shell.close()  # the write in progress ends quietly
    old = shell.master_fd
    # another live pty under the old number, as a reused fd number would be
    master, slave = os.openpty()
    if slave == old:
        slave = os.dup(slave)  # keep the slave: the number goes to the master below
    if master != old:
        os.dup2(master, old)
        os.close(master)
    try:
        before = window_size(old)
        await shell.write(b"must not arrive")
        shell.resize(132, 43)
        assert not shell.interrupts(b"\x03")
        assert await shell.read() == b""
        assert window_size(old) == before
        os.set_blocking(slave, False)
        with pytest.raises(BlockingIOError):
            os.read(slave, 100)
    finally:
        os.close(old)
        os.close(slave)
        await shell.wait()


# --- a shell that will not start, a handshake that goes wrong -------------------------------


async def test_every_connection_hears_when_the_shell_cannot_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_spawn = terminal_module.spawn_shell

    async def slow_spawn(*args: object, **kwargs: object) -> object:
        await trio.sleep(0.5)  # long enough for a second connection to arrive
        return await real_spawn(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(terminal_module, "spawn_shell", slow_spawn)
    codes: list[int] = []
    errors: list[dict[str, object]] = []

    async def one_client(port: int) -> None:
        async with connect(port) as client:
            codes.append(await read_until_closed(client, seconds=15))
            errors.extend(c for c in client.controls if c["type"] == "error")

    async with running_server(pty_config(shell=("/nonexistent/shell",))) as port:
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(one_client, port)
        await one_client(port)  # a later one tries again, and hears it too
    assert codes == [CloseCode.INTERNAL_ERROR] * 4
    assert errors == [{"type": "error", "message": SPAWN_FAILED}] * 4


async def test_a_rejected_handshake_leaves_no_handler_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server_module, "HEAD_TIMEOUT", 1.0)
    active = 0
    handle = TerminalServer.handle

    async def counted(self: TerminalServer, stream: trio.abc.Stream) -> None:
        nonlocal active
        active += 1
        try:
            await handle(self, stream)
        finally:
            active -= 1

    monkeypatch.setattr(TerminalServer, "handle", counted)
    bad = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\r\n"
    async with running_server(pty_config()) as port:
        for _ in range(5):
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                await stream.send_all(bad)
                answer = await stream.receive_some(65536)
                assert answer.startswith(b"HTTP/1.1 400")
        with trio.fail_after(15):
            while active:
                await trio.sleep(0.05)


# --- DNS rebinding ---------------------------------------------------------------------------


async def dial(port: int, host: str) -> dict[str, object]:
    """Open /ws with this Host header; the server's hello. A refusal raises
    :class:`ConnectionRejected` (out of the client's nursery)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        async with trio.open_nursery() as nursery:
            ws = await wrap_client_stream(
                nursery, stream, host, "/ws", subprotocols=subprotocols_for(make_token())
            )
            hello = json.loads(await ws.get_message())
            await ws.aclose()
    except BaseExceptionGroup as group:
        inner: BaseException = group
        while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
            inner = inner.exceptions[0]
        raise inner from None
    assert isinstance(hello, dict)
    return hello


async def test_a_loopback_server_refuses_a_rebound_host_name() -> None:
    config = pty_config(allowed_origins=("https://portal.example:8443",))
    async with running_server(config) as port:
        with trio.fail_after(10), pytest.raises(ConnectionRejected) as rejected:
            await dial(port, f"evil.example:{port}")
        assert rejected.value.status_code == 403
        assert b"host not allowed" in (rejected.value.body or b"")
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: evil.example\r\n\r\n")
            assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 403")
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"portal.example:{port}"):
            with trio.fail_after(10):
                assert (await dial(port, host))["type"] == "hello", host
