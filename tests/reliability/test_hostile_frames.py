"""Hostile WebSocket frames against a live terminal server: random text and binary
frames, valid and broken control messages, interleaved at random. The server answers
bad control frames with `error`, never crashes, keeps its shell, and leaks no fd."""

from __future__ import annotations

import json

import psutil
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pty.test_terminal import connect, pty_config, running_server

control_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["resize", "ack", "ping", "hello", "exit", "nope", ""])},
    optional={
        "cols": st.one_of(st.integers(-5, 100_000), st.text(max_size=5), st.none()),
        "rows": st.one_of(st.integers(-5, 100_000), st.booleans()),
        "bytes": st.one_of(st.integers(-(1 << 50), 1 << 50), st.floats(allow_nan=False)),
    },
).map(json.dumps)
frames = st.one_of(
    control_like,
    st.text(max_size=200),
    # Bytes as typed input: printable ASCII only. Control characters and stray UTF-8 drive
    # the shell's line editor (Enter runs the junk, ^S stops output, a lone lead byte waits
    # for its continuation), which would test bash, not us. ^C clears the line afterwards.
    st.binary(max_size=200).map(lambda b: bytes(0x20 + c % 95 for c in b)),
)


async def test_random_frames_never_break_the_server() -> None:
    """Each example gets a fresh server (no state leaks between examples); within it,
    random frames over one connection, then a reconnect that must still find the shell."""
    me = psutil.Process()
    fds = me.num_fds()
    sent: list[int] = []

    async def send_batch(batch: list[str | bytes]) -> None:
        sent.append(len(batch))
        async with running_server(pty_config()) as port:
            async with connect(port) as client:
                await client.expect_control("hello")
                # let bash finish starting: a ^C before it installs its handlers kills it
                await client.run("echo READY-$((1+1))", "READY-2")
                for frame in batch:
                    await client.ws.send_message(frame)
            async with connect(port) as client:
                # Each try: ^Q resumes output a stray ^S stopped, ^C abandons whatever was
                # typed, then the probe. Text typed while bash handles a ^C may be discarded
                # with the line (tty semantics, not ours), so try again until it answers.
                with trio.move_on_after(30) as waited:
                    while b"ALIVE-42" not in client.output:
                        await client.ws.send_message(b"\x11\x03")
                        with trio.move_on_after(0.3):  # let bash draw its new prompt
                            while True:
                                await client.next()
                        await client.ws.send_message(b"echo ALIVE-$((40+2))\n")
                        with trio.move_on_after(2):
                            await client.expect(b"ALIVE-42")
                tail = bytes(client.output[-400:])
                assert not waited.cancelled_caught, f"shell stopped answering; output: {tail!r}"

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(frames, min_size=1, max_size=15))
    def run(batch: list[str | bytes]) -> None:
        trio.from_thread.run(send_batch, batch)

    await trio.to_thread.run_sync(run)
    assert len(sent) >= 10, sent  # hypothesis really ran the batches
    with trio.fail_after(10):
        while me.num_fds() > fds:
            await trio.sleep(0.05)
