"""The terminal server end to end: a real shell on a real pty, real WebSocket clients."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import psutil
import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
)

from tests.httphead import RequestReader
from webterm.config import KeySource, PtyConfig
from webterm.protocol import CloseCode, SigningKey, subprotocols_for
from webterm.pty import parse_listening_line
from webterm.pty.server import serve

from ..credentials import KEY, KEY_SOURCE, KEYS_ENV, token

NAME, INSTANCE = "terminal-0", "uid-1"


def make_token(
    terminal: str = NAME, instance: str = INSTANCE, ttl: int = 60, key: SigningKey = KEY
) -> str:
    return token(terminal, instance, client="client-a", ttl=ttl, key=key)


def pty_config(**overrides: object) -> PtyConfig:
    base = PtyConfig(
        keys=KEY_SOURCE,
        name=NAME,
        instance=INSTANCE,
        host="127.0.0.1",
        port=0,
        shell=("/bin/bash", "--norc", "--noprofile", "-i"),
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@asynccontextmanager
async def running_server(config: PtyConfig) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, config)
        yield port
        nursery.cancel_scope.cancel()


@dataclass
class Client:
    """A test client: collects output and control messages."""

    ws: WebSocketConnection
    output: bytearray = field(default_factory=bytearray)
    controls: list[dict[str, object]] = field(default_factory=list)

    async def next(self) -> None:
        message = await self.ws.get_message()
        if isinstance(message, bytes):
            self.output += message
        else:
            self.controls.append(json.loads(message))

    async def expect(self, marker: bytes) -> bytes:
        with trio.fail_after(15):
            while marker not in self.output:
                await self.next()
        return bytes(self.output)

    async def expect_control(self, kind: str) -> dict[str, object]:
        with trio.fail_after(15):
            while True:
                for control in self.controls:
                    if control["type"] == kind:
                        self.controls.remove(control)
                        return control
                await self.next()

    async def run(self, command: str, marker: str) -> bytes:
        await self.ws.send_message(command.encode() + b"\n")
        return await self.expect(marker.encode())

    async def send_json(self, body: object) -> None:
        await self.ws.send_message(json.dumps(body))


@asynccontextmanager
async def connect(port: int, token: str | None = None) -> AsyncIterator[Client]:
    token = make_token() if token is None else token
    async with open_websocket_url(
        f"ws://127.0.0.1:{port}/ws", subprotocols=subprotocols_for(token)
    ) as ws:
        assert ws.subprotocol == "webterm.v1"
        yield Client(ws)


async def test_echo_round_trip_and_hello() -> None:
    async with running_server(pty_config()) as port, connect(port) as client:
        hello = await client.expect_control("hello")
        assert hello == {"type": "hello", "terminal": NAME, "reattached": False}
        out = await client.run("echo hello-$((6*7))", "hello-42")
        assert b"hello-42" in out


async def test_resize_is_seen_by_stty_and_tput() -> None:
    async with running_server(pty_config()) as port, connect(port) as client:
        await client.send_json({"type": "resize", "cols": 132, "rows": 43})
        await client.run("stty size; echo SIZE-'DONE'", "SIZE-DONE\r\n")
        assert b"43 132" in client.output
        await client.run("tput cols; echo COLS-'DONE'", "COLS-DONE\r\n")
        assert b"132\r\n" in client.output


async def test_absurd_resize_is_clamped_and_garbage_resize_refused() -> None:
    async with running_server(pty_config()) as port, connect(port) as client:
        await client.send_json({"type": "resize", "cols": 60000, "rows": 0})
        error = await client.expect_control("error")  # rows 0 is not a size at all
        assert "rows" in str(error["message"])
        await client.send_json({"type": "resize", "cols": 60000, "rows": 60000})
        await client.run("stty size; echo S-'DONE'", "S-DONE\r\n")
        assert b"500 1000" in client.output


async def test_reattach_keeps_shell_state_and_replays_scrollback() -> None:
    async with running_server(pty_config()) as port:
        async with connect(port) as first:
            await first.run("export X=42; echo FIRST-'MARK'", "FIRST-MARK\r\n")
        async with connect(port) as second:
            hello = await second.expect_control("hello")
            assert hello["reattached"] is True
            await second.expect(b"FIRST-MARK")  # scrollback replayed
            await second.run("echo X=$X", "X=42")


async def test_newer_connection_takes_over_and_old_is_closed_4409() -> None:
    async with running_server(pty_config()) as port, connect(port) as old:
        await old.expect_control("hello")
        async with connect(port) as new:
            await new.expect_control("hello")
            with trio.fail_after(10), pytest.raises(ConnectionClosed) as closed:
                while True:
                    await old.next()
            assert closed.value.reason.code == CloseCode.SUPERSEDED
            await new.run("echo STILL-'HERE'", "STILL-HERE")


async def test_takeover_while_the_older_tab_waits_on_a_full_pty(tmp_path: Path) -> None:
    """The older tab's typing blocked on a full pty neither breaks the newer tab's
    input (one writer at a time) nor comes after it: once superseded, no more of it
    is written."""
    go = tmp_path / "go"
    # a raw, silent tty and a reader that only starts once the newer tab is attached, so
    # the older tab's flood fills the pty and its writer waits in the middle of it
    script = f"stty raw -echo; while [ ! -e {go} ]; do sleep 0.02; done; exec cat"
    config = pty_config(shell=("/bin/sh", "-c", script))
    async with running_server(config) as port, connect(port) as old, trio.open_nursery() as n:
        await old.expect_control("hello")

        async def flood() -> None:
            with contextlib.suppress(ConnectionClosed):
                for _ in range(400):
                    await old.ws.send_message(b"a" * 1000)

        n.start_soon(flood)
        await trio.sleep(0.5)  # let the flood reach the pty (a slow start only weakens it)
        async with connect(port) as new:
            await new.expect_control("hello")
            await new.ws.send_message(b"B-MARK\n")
            await trio.sleep(0.2)  # so that it waits behind the older tab's write
            go.touch()
            await new.expect(b"B-MARK")
            await new.ws.send_message(b"C-MARK\n")
            output = await new.expect(b"C-MARK")
            between = output[output.index(b"B-MARK") : output.index(b"C-MARK")]
            assert b"a" not in between, "the superseded tab's input came after the new"


async def test_shell_exit_status_then_close_1000() -> None:
    async with running_server(pty_config()) as port, connect(port) as client:
        await client.expect_control("hello")
        await client.ws.send_message(b"exit 3\n")
        assert await client.expect_control("exit") == {"type": "exit", "status": 3}
        with trio.fail_after(10), pytest.raises(ConnectionClosed) as closed:
            while True:
                await client.next()
        assert closed.value.reason.code == CloseCode.NORMAL


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (make_token(key=SigningKey.generate()), "another key"),
        (make_token(ttl=-5), "expired"),
        (make_token(terminal="terminal-9"), "other terminal"),
        (make_token(instance="uid-old"), "recycled instance"),
        ("not-a-token", "garbage"),
    ],
)
async def test_bad_tokens_are_refused_and_spawn_no_shell(token: str, why: str) -> None:
    async with running_server(pty_config()) as port:
        with trio.fail_after(10), pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(
                f"ws://127.0.0.1:{port}/ws", subprotocols=subprotocols_for(token)
            ):
                pass
        assert rejected.value.status_code in (401, 403), why
        assert not _bash_children(), "a refused client must not get a shell"


async def test_a_token_of_an_unknown_or_retired_key_is_refused_with_the_reason() -> None:
    retired = SigningKey.generate()
    async with running_server(pty_config()) as port:
        with trio.fail_after(10), pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(
                f"ws://127.0.0.1:{port}/ws", subprotocols=subprotocols_for(make_token(key=retired))
            ):
                pass
        assert rejected.value.status_code == 401
        assert b"unknown or retired key" in (rejected.value.body or b"")
        assert not _bash_children()


async def test_keys_from_a_file_are_re_read_for_a_new_key_id(tmp_path: Path) -> None:
    """A rotation with a ConfigMap: the file gains the new key after the server
    started; a token of that key makes the server re-read the file and accept it."""
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps(KEY.key_set().to_jwks()))
    new = SigningKey.generate()
    async with running_server(pty_config(keys=KeySource(file=str(keys_file)))) as port:
        async with connect(port) as client:
            await client.expect_control("hello")
        keys_file.write_text(json.dumps(new.key_set(KEY.key_set()).to_jwks()))
        async with connect(port, make_token(key=new)) as client:
            await client.run("echo NEW-'KEY'", "NEW-KEY")


async def test_missing_token_is_refused() -> None:
    async with running_server(pty_config()) as port:
        with trio.fail_after(10), pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(f"ws://127.0.0.1:{port}/ws", subprotocols=["webterm.v1"]):
                pass
        assert rejected.value.status_code == 401


async def test_garbage_frames_never_crash_the_server() -> None:
    async with running_server(pty_config()) as port:
        async with connect(port) as client:
            await client.expect_control("hello")
            for garbage in [
                "\x00\xff not json",
                "{",
                "[]",
                '{"type": 5}',
                '{"type": "nope"}',
                '{"type":"ack","bytes":-1}',
                "x" * 10_000,
            ]:
                await client.ws.send_message(garbage)
                await client.expect_control("error")
            await client.run("echo ALIVE-'1'", "ALIVE-1")
        # a frame over the 1 MiB limit ends that connection (1009, or a reset while the
        # client is still sending), never the server
        async with connect(port) as client:
            with trio.fail_after(10), pytest.raises(ConnectionClosed) as closed:
                await client.ws.send_message(b"x" * (10 * 1024 * 1024))
                while True:
                    await client.next()
            assert closed.value.reason.code in (
                CloseCode.MESSAGE_TOO_BIG,
                1006,
            )  # 1006: no close frame
        async with connect(port) as client:
            await client.ws.send_message(b"\x15")  # Ctrl-U: drop the junk typed so far
            await client.run("echo ALIVE-'2'", "ALIVE-2")


async def test_healthz_and_unknown_paths() -> None:
    async with running_server(pty_config()) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        response = await _read_all(stream)
        assert response.startswith(b"HTTP/1.1 200")
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET /etc/passwd HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert (await _read_all(stream)).startswith(b"HTTP/1.1 404")
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"\x16\x03\x01 garbage\r\n\r\n")
        assert (await _read_all(stream)).startswith(b"HTTP/1.1 400")


async def _read_all(stream: trio.abc.Stream) -> bytes:
    data = bytearray()
    with trio.fail_after(10):
        while chunk := await stream.receive_some():
            data += chunk
    return bytes(data)


async def test_shell_gets_clean_signals_and_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBTERM_SECRET", "must-not-leak-0123456789")
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        async with running_server(pty_config()) as port, connect(port) as client:
            out = await client.run(
                "grep -E '^Sig(Blk|Ign)' /proc/$$/status; env | grep -c WEBTERM_; echo TERM=$TERM; echo ENV-'DONE'",
                "ENV-DONE\r\n",
            )
    finally:
        signal.signal(signal.SIGINT, old)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    text = out.decode()
    blocked = int(text.split("SigBlk:")[1].split()[0], 16)
    ignored = int(text.split("SigIgn:")[1].split()[0], 16)
    assert blocked & (1 << (signal.SIGHUP - 1)) == 0
    # an interactive bash ignores SIGQUIT/SIGTERM itself, but SIGINT and SIGHUP it must see
    assert ignored & (1 << (signal.SIGHUP - 1)) == 0
    assert "\r\n0\r\n" in text  # no WEBTERM_* variable at all
    assert "TERM=xterm-256color" in text


async def test_idle_timeout_warns_ends_shell_and_asks_for_recycle() -> None:
    recycled: list[tuple[str, dict[str, object], str]] = []
    got_recycle = trio.Event()

    async def manager(stream: trio.SocketStream) -> None:
        request = await RequestReader(stream).next()
        assert request is not None
        path = request.target
        scheme, _, auth = request.headers["authorization"].partition(" ")
        assert scheme.lower() == "bearer"
        recycled.append((path, json.loads(request.body), auth))
        await stream.send_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        await stream.aclose()
        if path.endswith("/recycle"):
            got_recycle.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, manager, 0, host="127.0.0.1"))
        manager_port = listeners[0].socket.getsockname()[1]
        config = pty_config(
            idle_timeout=3.0, idle_warning=2.0, manager_url=f"http://127.0.0.1:{manager_port}"
        )
        browser_token = make_token()
        async with running_server(config) as port, connect(port, browser_token) as client:
            idle = await client.expect_control("idle")
            assert 0 < int(idle["seconds_left"]) <= 2  # type: ignore[call-overload]
            exit_message = await client.expect_control("exit")
            assert exit_message["status"] == 128 + signal.SIGHUP
            with trio.fail_after(15):
                await got_recycle.wait()
        nursery.cancel_scope.cancel()
    path, body, _ = next(r for r in recycled if r[0].endswith("/recycle"))
    assert path == f"/v1/terminals/{NAME}/recycle"
    assert body == {"reason": "idle"}
    # the server signs nothing: it reports with the token its browser connected with
    assert all(r[2] == browser_token for r in recycled)
    assert any(r[0].endswith("/connection") and r[1] == {"connected": True} for r in recycled)


async def test_connect_disconnect_cycles_leave_no_zombie_and_no_fd_growth() -> None:
    me = psutil.Process()
    async with running_server(pty_config()) as port:
        async with connect(port) as client:
            await client.run("echo wa''rm", "warm")
        baseline = me.num_fds()
        for _ in range(50):
            async with connect(port) as client:
                await client.expect_control("hello")
        with trio.fail_after(10):
            while me.num_fds() > baseline:  # closing handshakes may still be finishing
                await trio.sleep(0.05)
        assert me.num_fds() <= baseline
    assert not [c for c in me.children(recursive=True) if c.status() == psutil.STATUS_ZOMBIE]
    assert not _bash_children()


def start_cli_server(*extra: str) -> tuple[subprocess.Popen[str], int]:
    """`webterm pty` as a subprocess on a free port; returns it and its port."""
    server = subprocess.Popen(
        [sys.executable, "-m", "webterm", "pty", "--host", "127.0.0.1", "--port", "0",
         "--name", NAME, "--instance", INSTANCE, *extra],
        env={**os.environ, **KEYS_ENV},
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    host, port = parse_listening_line(server.stdout.readline())
    assert host == "127.0.0.1"
    return server, port


def _bash_children() -> list[psutil.Process]:
    return [c for c in psutil.Process().children(recursive=True) if c.name() == "bash"]


async def test_flood_with_slow_reader_keeps_memory_bounded(tmp_path: Path) -> None:
    """`yes` prints without end; the client reads slowly and never acks. The server's
    buffers must stay bounded: the shell is made to wait instead."""
    server, port = start_cli_server("--shell", "/bin/bash --norc -i")
    try:
        proc = psutil.Process(server.pid)
        async with connect(port) as client:
            await client.expect_control("hello")
            await client.ws.send_message(b"yes 'flood flood flood flood'\n")
            received = 0
            samples = []
            with trio.fail_after(60):
                while received < 40 * 1024 * 1024:
                    message = await client.ws.get_message()
                    received += len(message)
                    await trio.sleep(0.002)  # a slow reader
                    if len(samples) < 1000 and received > 4 * 1024 * 1024:
                        samples.append(proc.memory_info().rss)
            await client.ws.send_message(b"\x03")
        # growth while 36 MB streamed through must be far below what was streamed
        assert max(samples) - min(samples) < 8 * 1024 * 1024
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=15) == 0


async def test_cli_sigterm_closes_clients_with_1001_and_exits_0(tmp_path: Path) -> None:
    server, port = start_cli_server()
    (tmp_path / "signing.pem").write_bytes(KEY.to_pem())
    try:
        cli_token = subprocess.run(
            [
                sys.executable,
                "-m",
                "webterm",
                "token",
                "--terminal",
                NAME,
                "--instance",
                INSTANCE,
                "--signing-key-file",
                str(tmp_path / "signing.pem"),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        async with connect(port, cli_token) as client:
            await client.run("echo VIA-CLI-'TOKEN'", "VIA-CLI-TOKEN")
            shell_pids = [c.pid for c in psutil.Process(server.pid).children(recursive=True)]
            assert shell_pids
            server.send_signal(signal.SIGTERM)
            with trio.fail_after(15), pytest.raises(ConnectionClosed) as closed:
                while True:
                    await client.next()
            assert closed.value.reason.code == CloseCode.GOING_AWAY
        assert server.wait(timeout=15) == 0
        assert not [
            p
            for p in shell_pids
            if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        ]
    finally:
        if server.poll() is None:
            server.kill()


async def test_shell_runs_under_resource_limits() -> None:
    config = pty_config(max_processes=200, max_open_files=256)
    async with running_server(config) as port, connect(port) as client:
        out = await client.run(
            "echo LIM $(ulimit -u) $(ulimit -n) $(ulimit -c) END-'LIM'", "END-LIM"
        )
    assert b"LIM 200 256 0 END-LIM" in out


async def test_session_ends_at_its_maximum_lifetime_despite_activity() -> None:
    async with running_server(pty_config(max_session=2.0)) as port, connect(port) as client:
        await client.expect_control("hello")
        with trio.fail_after(15), pytest.raises(ConnectionClosed):
            while True:
                await client.ws.send_message(b"\n")  # activity does not extend a lifetime
                with trio.move_on_after(0.3):
                    while True:
                        await client.next()
        with trio.fail_after(5), contextlib.suppress(ConnectionClosed):
            while True:  # messages that arrived before the close are still readable
                await client.next()
        kinds = [c["type"] for c in client.controls]
        assert "exit" in kinds
        error = next(c for c in client.controls if c["type"] == "error")
        assert "maximum lifetime" in str(error["message"])


async def test_an_empty_input_frame_counts_as_activity() -> None:
    """The page's "stay" button sends an empty binary frame: activity, no keystroke."""
    async with (
        running_server(pty_config(idle_timeout=2.0, idle_warning=1.0)) as port,
        connect(port) as client,
    ):
        await client.expect_control("hello")
        with trio.move_on_after(4.0):
            while True:  # twice the idle timeout, kept alive by empty frames only
                await client.ws.send_message(b"")
                with trio.move_on_after(0.3):
                    while True:
                        await client.next()
        assert not any(c["type"] == "exit" for c in client.controls)
        await client.run("echo STILL-'ALIVE'", "STILL-ALIVE")


async def test_a_tab_taken_over_in_the_middle_of_a_frame_still_gets_4409() -> None:
    """The older tab is behind in a flood, so the server's send of a big frame to it waits
    on a full socket, when a newer tab takes over. Its stream must stay well-formed and end
    in 4409: a frame cut short (and the close written after it) would read as a broken
    connection, which a page answers by reconnecting: two tabs taking it from each other."""
    async with running_server(pty_config()) as port, connect(port) as old:
        await old.expect_control("hello")
        await old.ws.send_message(b"yes 'older tab output line'\n")
        await trio.sleep(1.0)  # the older tab reads nothing: its socket fills up
        async with connect(port) as new:
            await new.expect_control("hello")
            with trio.fail_after(60), pytest.raises(ConnectionClosed) as closed:
                while True:
                    await old.ws.get_message()  # what it was sent, then the close
            assert closed.value.reason.code == CloseCode.SUPERSEDED
            await new.ws.send_message(b"\x03")
            await new.run("echo AFTER-'TAKEOVER'", "AFTER-TAKEOVER")


async def test_a_taken_over_tab_that_reads_nothing_holds_up_nobody() -> None:
    """The older tab reads nothing at all, so the frame it is being sent never completes:
    the newer tab works at once, and the older connection is dropped within the close
    timeout instead of being held open by its stuck send."""
    async with running_server(pty_config()) as port, connect(port) as old:
        await old.expect_control("hello")
        await old.ws.send_message(b"yes 'older tab output line'\n")
        await trio.sleep(1.0)
        async with connect(port) as new:
            await new.expect_control("hello")
            await new.ws.send_message(b"\x03")
            await new.run("echo NEW-'TAB'", "NEW-TAB")
            await trio.sleep(3.0)  # past the close timeout, the older tab still not reading
            with trio.fail_after(60), pytest.raises(ConnectionClosed):
                while True:
                    await old.ws.get_message()
            await new.run("echo STILL-'FINE'", "STILL-FINE")
