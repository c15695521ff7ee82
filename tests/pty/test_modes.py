"""Terminal modes across a reattach: the pure tracker (webterm.pty.modes), and a real
shell whose program switched modes long before the scrollback a reattaching page gets."""

from __future__ import annotations

import pytest
import trio

from tests.pty.test_terminal import connect, pty_config, running_server
from webterm.pty.modes import TerminalModes
from webterm.pty.session import OutputLog


def modes_after(*chunks: bytes) -> TerminalModes:
    modes = TerminalModes()
    for chunk in chunks:
        modes.feed(chunk)
    return modes


def test_a_reset_terminal_needs_nothing_restored() -> None:
    assert modes_after(b"plain text \x1b[1;31mred\x1b[0m \x1b[2J").restore() == b""


def test_what_vim_sets_is_restored() -> None:
    # vim: alternate screen, application cursor keys and keypad, bracketed paste, mouse
    modes = modes_after(b"\x1b[?1049h\x1b[?1h\x1b=\x1b[?2004h\x1b[?1000h\x1b[?1006h\x1b[?25l")
    assert modes.alternate_screen
    assert modes.restore() == (
        b"\x1b[?1049h\x1b[?1h\x1b[?1006h\x1b[?2004h\x1b[?1000h\x1b[?25l\x1b="
    )


def test_modes_set_and_reset_in_one_sequence_and_across_chunks() -> None:
    modes = modes_after(b"abc\x1b[?10", b"49;1h", b"x\x1b", b"[?1l\x1b", b"=")
    assert modes.restore() == b"\x1b[?1049h\x1b="
    modes.feed(b"\x1b[?1049l\x1b>")  # the program quit: back to the shell
    assert modes.restore() == b""
    assert not modes.alternate_screen


@pytest.mark.parametrize(
    "noise", [b"\x1b[?h", b"\x1b[?;;h", b"\x1b[?12345678901234567890", b"\x1b[?1x", b"\x1b"]
)
def test_malformed_sequences_change_nothing(noise: bytes) -> None:
    assert modes_after(noise, b"tail").restore() == b""


def test_a_full_reset_clears_every_mode() -> None:
    assert modes_after(b"\x1b[?1049h\x1b[?2004h", b"\x1bc").restore() == b""


def test_the_log_knows_the_modes_where_its_replay_starts() -> None:
    log = OutputLog(capacity=1024)
    log.append(b"\x1b[?1049h\x1b[?1h")  # a program starts...
    log.append(b"line\n" * 1000)  # ...and its switch falls out of the log
    offset, restore = log.replay()
    assert offset > log.start  # after the first newline
    assert restore == b"\x1b[?1049h\x1b[?1h"
    log.append(b"\x1b[?1049l\x1b[?1l" + b"shell\n" * 300)  # it quit, long ago too
    assert log.replay()[1] == b""
    assert not log.modes().alternate_screen


async def test_a_page_reattaching_to_a_full_screen_program_gets_its_modes_and_a_redraw() -> None:
    """A program enters the alternate screen with application cursor keys, paints more
    than the scrollback holds, and waits; a reattaching client first gets the modes (the
    switches themselves fell out of the scrollback long ago), and the program is asked to
    redraw (SIGWINCH), as after a resize."""
    program = (
        "trap 'printf REDRAWN-%s \"$((6*7))\"' WINCH; "
        "printf '\\033[?1049h\\033[?1h'; head -c 300000 /dev/zero | tr '\\0' x; "
        'printf PAINTED-%s "$((6*7))"; while :; do sleep 0.05; done'
    )
    config = pty_config(shell=("/bin/bash", "-c", program), scrollback_bytes=64 * 1024)
    async with running_server(config) as port:
        async with connect(port) as first:
            await first.expect_control("hello")
            await first.expect(b"PAINTED-42")
        async with connect(port) as again:
            hello = await again.expect_control("hello")
            assert hello["reattached"] is True
            with trio.fail_after(15):
                while not again.output:
                    await again.next()
            assert bytes(again.output).startswith(b"\x1b[?1049h\x1b[?1h")
            await again.expect(b"REDRAWN-42")
