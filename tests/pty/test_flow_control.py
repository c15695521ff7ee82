"""Flow control against a real shell: the ack window adapts to a slow renderer, and
Ctrl-C drops the backlog (here and, by a `flush` message, in the client) exactly when the
tty's line discipline flushes: never for a raw-mode program, where ^C is just a key."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from tests.pty.test_terminal import Client, connect, pty_config, running_server
from webterm.pty.session import spawn_shell
from webterm.pty.window import ACK_HIGH_WATER, MIN_WINDOW


async def slow_renderer(client: Client, rate: float, seconds: float) -> list[int]:
    """Read for ``seconds``, "rendering" at ``rate`` bytes/s and acking each frame when
    rendered, as the page does. Returns the unacknowledged bytes seen at each frame
    (each one's size: the frames before it are acknowledged)."""
    in_flight: list[int] = []
    end = trio.current_time() + seconds
    # never cancelled between a frame and its ack: a lost ack would leave the server
    # counting bytes as in flight that the client believes acknowledged
    with trio.fail_after(seconds + 30):
        while trio.current_time() < end:
            message = await client.ws.get_message()
            if isinstance(message, str):
                continue
            in_flight.append(len(message))
            await trio.sleep(len(message) / rate)
            await client.ws.send_message(f'{{"type":"ack","bytes":{len(message)}}}')
    return in_flight


@asynccontextmanager
async def acking_client() -> AsyncIterator[Client]:
    """A client of a fresh server that announced flow control, at a ready prompt."""
    async with running_server(pty_config()) as port, connect(port) as client:
        await client.expect_control("hello")
        await client.ws.send_message('{"type":"ack","bytes":0}')
        await client.run("echo READY-$((1+1))", "READY-2")
        await client.ws.send_message(f'{{"type":"ack","bytes":{len(client.output)}}}')
        yield client


async def test_the_window_shrinks_to_what_a_slow_client_renders() -> None:
    async with acking_client() as client:
        await client.ws.send_message(b"yes 'a line of flood, the quick brown fox 0123456789'\n")
        in_flight = await slow_renderer(client, rate=200_000, seconds=4.0)
        assert len(in_flight) > 10, in_flight
        # a fast client may have up to ACK_HIGH_WATER in flight; this one, after the
        # window has adapted, never much more than the smallest window
        late = in_flight[len(in_flight) // 2 :]
        assert max(late) <= 2 * MIN_WINDOW < ACK_HIGH_WATER, late
        await client.ws.send_message(b"\x03")


async def test_ctrl_c_flushes_the_backlog_and_tells_the_client() -> None:
    async with acking_client() as client:
        await client.ws.send_message(b"yes flood-line\n")
        await slow_renderer(client, rate=200_000, seconds=1.0)  # a backlog builds up
        await client.ws.send_message(b"\x03")
        flushed = after = 0
        with trio.fail_after(20):
            while b"AFTER-42" not in client.output[-4096:]:
                with trio.move_on_after(1) as quiet:
                    message = await client.ws.get_message()
                if quiet.cancelled_caught:
                    # the tty drops typeahead with the output on ^C: type once it is quiet
                    await client.ws.send_message(b"echo AFTER-$((6*7))\n")
                    continue
                if isinstance(message, str):
                    flushed += '"flush"' in message
                    continue
                client.output += message
                after += len(message) * (flushed > 0)
                await client.ws.send_message(f'{{"type":"ack","bytes":{len(message)}}}')
        assert flushed == 1
        # what still came after the flush is the prompt and the answer (and perhaps the
        # pty read that raced the ^C, ~4 KiB), not the read-ahead backlog (256 KiB)
        assert after < 16 * 1024, after


async def test_ctrl_c_in_a_raw_mode_program_flushes_nothing() -> None:
    async with running_server(pty_config()) as port, connect(port) as client:
        await client.expect_control("hello")
        await client.ws.send_message('{"type":"ack","bytes":0}')
        # a raw-mode reader, as vim is: ^C arrives as a byte, no signal, no flush
        await client.run(
            "stty raw -echo; head -c 1 | od -An -c; stty sane; echo RAW-$((2*3))",
            "",
        )
        await trio.sleep(0.5)
        await client.ws.send_message(b"\x03")
        await client.expect(b"RAW-6")
        assert b"003" in client.output or b"^C" in client.output
        assert all(c["type"] != "flush" for c in client.controls), client.controls


async def test_the_shell_says_when_a_key_interrupts() -> None:
    shell = await spawn_shell(["/bin/sh", "-i"], env={**os.environ, "PS1": "$ "})
    try:
        with trio.fail_after(10):
            while not shell.interrupts(b"\x03"):  # once bash has set up its tty
                await trio.sleep(0.05)
        assert shell.interrupts(b"x\x1c")  # QUIT
        assert not shell.interrupts(b"plain text\r")
        await shell.write(b"stty -isig\n")
        with trio.fail_after(10):
            while shell.interrupts(b"\x03"):
                await trio.sleep(0.05)
        await shell.write(b"stty isig noflsh\n")
        await trio.sleep(0.5)
        assert not shell.interrupts(b"\x03")
    finally:
        await shell.hangup()
        shell.close()


async def test_a_client_that_acks_in_batches_never_stalls_the_output() -> None:
    """A client may ack only once a batch of output has arrived (here 64 KiB, the page's
    batch, with no timer). After the window has shrunk to its floor, whatever is in flight
    when it acks must not leave the server waiting for an ack the client will not send."""
    async with acking_client() as client:
        await client.ws.send_message(b"yes 'a line of flood, the quick brown fox 0123456789'\n")
        await slow_renderer(client, rate=200_000, seconds=2.0)  # the window shrinks
        total = 0
        unacked = 0
        with trio.fail_after(30):  # 4 MiB more, each 64 KiB acked at once
            while total < 4 << 20:
                message = await client.ws.get_message()
                if isinstance(message, str):
                    continue
                total += len(message)
                unacked += len(message)
                await trio.sleep(0.002)  # a little behind, so some output is in transit
                if unacked >= MIN_WINDOW:
                    await client.ws.send_message(f'{{"type":"ack","bytes":{unacked}}}')
                    unacked = 0
        await client.ws.send_message(b"\x03")
