"""The tasks that serve one attached WebSocket, around :mod:`webterm.protocol`.

:func:`serve_connection` says hello, replays the scrollback, then runs two tasks: the
*input loop* (frames from the client: binary to the pty, text to control messages),
the one reader of the socket, and the *pump* (:func:`_pump`), the one writer: output
from the terminal's log at this connection's offset, as fast as its flow-control
window (:mod:`webterm.pty.window`) allows, and the notices other tasks post to it.
After the shell's exit the pump finishes the session (:func:`_finish`).

A viewer (a share link's connection, :mod:`webterm.pty.sharing`) is served the same
way, except that its input reaches the shell only if its link allows typing (else each
frame is refused with an ``error``), its ``resize`` is ignored (the size is the
owner's), and when its unsent output falls out of the log it is skipped ahead
(:func:`resync`) rather than holding the shell up.
"""

from __future__ import annotations

import contextlib
from typing import Final

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from webterm.protocol import (
    Ack,
    CloseCode,
    Error,
    Exit,
    Flush,
    Hello,
    MalformedMessage,
    Ping,
    Pong,
    Resize,
    Revoke,
    ShareClaims,
    decode_client_message,
    encode_message,
)
from webterm.pty.attachment import CLOSE_TIMEOUT, Attachment, Phase, close, send_whole
from webterm.pty.session import ExitStatus
from webterm.pty.terminal import FRAME_BYTES, SPAWN_FAILED, ShellUnavailable, Terminal

VIEW_ONLY: Final = "this share link is view only: your keys do not reach the shell"
"""The ``error`` a view-only viewer's input is refused with."""

NOT_OWNER: Final = "only the terminal's owner can revoke a share link"

RESET: Final = b"\x1bc"
"""RIS: a viewer skipped ahead starts from a clean screen, as a reattach does."""


async def serve_connection(
    terminal: Terminal, ws: WebSocketConnection, share: ShareClaims | None = None
) -> bool:
    """Attach ``ws`` (as a viewer of share link ``share``, else as the owner) until
    either side goes away. True if its stream is broken (a send was cut short): then it
    must be dropped, not closed with a close frame."""
    try:
        reattached = await terminal.ensure_shell()
    except ShellUnavailable:
        with contextlib.suppress(ConnectionClosed):
            await ws.send_message(encode_message(Error(message=SPAWN_FAILED)))
        await close(ws, CloseCode.INTERNAL_ERROR)
        return False
    offset, restore = terminal.log.replay()
    att = Attachment(ws, offset=offset, share=share)
    terminal.attach(att)  # an older owner's connection is taken over
    try:
        role = "owner" if share is None else share.mode
        await ws.send_message(
            encode_message(Hello(terminal=terminal.config.name, reattached=reattached, role=role))
        )
        if restore:  # the modes in force where the replay starts, then the replay
            att.flow.on_send(len(restore), trio.current_time())
            await ws.send_message(restore)
        if (
            reattached
            and not att.viewer  # a viewer's attach must not disturb the owner's program
            and terminal.log.modes().alternate_screen
            and terminal.shell is not None
        ):
            terminal.shell.redraw()  # a full-screen program repaints what the replay lacks
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pump, terminal, att, nursery.cancel_scope)
            with trio.CancelScope() as att.input_scope:
                if att.phase is Phase.ATTACHED:  # else taken over while it said hello
                    await _input_loop(terminal, att)
            if att.phase is not Phase.ATTACHED:
                terminal.notify()  # the pump ends on its own: closing, or its last frame
            else:
                nursery.cancel_scope.cancel()
        if att.phase is Phase.TAKEN_OVER:
            await close(ws, att.end_code)
    except ConnectionClosed:
        pass
    finally:
        terminal.detach(att)
    return att.phase is Phase.BROKEN


async def _pump(terminal: Terminal, att: Attachment, done: trio.CancelScope) -> None:
    """Send output from the log to ``att`` at the pace the client allows, and the
    notices posted to it; after the shell's exit, :func:`_finish` the session."""
    try:
        while att.phase is Phase.ATTACHED:
            changed = terminal.changed
            if att.notices:
                if not await send_whole(att, encode_message(att.notices.popleft())):
                    return
                continue
            if att.offset < terminal.log.start:  # a viewer that fell out of the log
                if not await send_whole(att, resync(terminal, att)):
                    return
                continue
            room = att.flow.room()
            att.flow.limited |= room == 0
            if room != 0 and att.offset < terminal.log.end:
                # with acks, never far past the window
                limit = FRAME_BYTES if room is None else max(4096, min(FRAME_BYTES, room))
                start, chunk = terminal.log.read_views(att.offset, limit)
                att.offset = end = start + sum(len(view) for view in chunk)
                att.flow.on_send(end - start, trio.current_time())
                terminal.notify()  # the reader may be waiting for room
                if not await send_whole(att, chunk):
                    return
                continue
            if terminal.exit_status is not None and att.offset >= terminal.log.end:
                await _finish(terminal, att, terminal.exit_status)
                done.cancel()
                return
            await changed.wait()
    except ConnectionClosed:
        done.cancel()


def resync(terminal: Terminal, att: Attachment) -> bytes:
    """Skip ``att`` ahead: the output it was not sent has left the log (only a viewer's
    can: the reader waits for the owner). It starts again where a reattach would, from
    a clean screen (RIS) and the modes in force there; returns what to send it first."""
    att.offset, restore = terminal.log.replay()
    data = RESET + restore
    att.flow.on_send(len(data), trio.current_time())
    return data


async def _finish(terminal: Terminal, att: Attachment, status: ExitStatus) -> None:
    """All output is sent: ``exit``, then close 1000, once an acking client has
    rendered what it was sent. Till then its socket stays open (the input loop keeps
    reading acks): a socket closed under the acks it still sends would be reset,
    and a reset drops the output it has not read yet."""
    att.enter(Phase.FINISHING)
    if not await send_whole(att, encode_message(Exit(status=status.status))):
        return  # cut short by a takeover: the stream is broken, no close frame
    flow = att.flow
    while flow.acking and flow.in_flight and att.ws.closed is None:
        acked = flow.acked
        with trio.move_on_after(CLOSE_TIMEOUT):  # no ack for that long: it is gone
            while flow.acked == acked and att.ws.closed is None:
                await terminal.changed.wait()
        if flow.acked == acked:
            break
    await close(att.ws, CloseCode.NORMAL)


async def _input_loop(terminal: Terminal, att: Attachment) -> None:
    """Frames from the client until it goes away (returns on any close)."""
    try:
        while True:
            message = await att.ws.get_message()
            if att.superseded:
                # Another connection took over (and cancelled these tasks; this
                # message arrived just before): what this one still had buffered must
                # not reach the shell after, or in between, the newer one's input.
                return
            if isinstance(message, bytes):
                if not att.may_type:
                    if message:  # an empty frame ("stay") is no keystroke: no answer
                        _refuse(terminal, att, VIEW_ONLY)
                    continue
                if terminal.shell is not None and terminal.exit_status is None:
                    terminal.last_input = trio.current_time()
                    interrupts = terminal.shell.interrupts(message)
                    await terminal.shell.write(message)
                    if interrupts:
                        # Drop the backlog, here and (what was sent) in the client. After
                        # the write: the tty flushes what it holds as it reads the ^C,
                        # so output read from now on is what comes after it.
                        att.offset = max(att.offset, terminal.log.end)
                        if att.flow.acking:
                            att.post(Flush())
                        terminal.notify()
            else:
                await _control(terminal, att, message)
    except ConnectionClosed:
        return


def _refuse(terminal: Terminal, att: Attachment, why: str) -> None:
    """Answer a refused frame with an ``error`` (one queued at a time: a flood of
    refused frames queues no flood of answers)."""
    if not any(isinstance(n, Error) and n.message == why for n in att.notices):
        att.post(Error(message=why))
        terminal.notify()


async def _control(terminal: Terminal, att: Attachment, text: str) -> None:
    try:
        control = decode_client_message(text)
    except MalformedMessage as exc:
        att.post(Error(message=str(exc)))
        terminal.notify()
        return
    if isinstance(control, Ack):
        att.flow.on_ack(control.bytes, trio.current_time())
        terminal.notify()
    elif isinstance(control, Resize):
        if not att.viewer:  # the terminal's size is the owner's
            size = control.clamped()
            terminal.resize(size.cols, size.rows)
    elif isinstance(control, Revoke):
        if att.viewer:
            _refuse(terminal, att, NOT_OWNER)
        else:
            terminal.revoke(control.link)
    elif isinstance(control, Ping):
        att.post(Pong())
        terminal.notify()


__all__ = ["NOT_OWNER", "RESET", "VIEW_ONLY", "resync", "serve_connection"]
