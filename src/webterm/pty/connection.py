"""The tasks that serve one attached WebSocket, around :mod:`webterm.protocol`.

:func:`serve_connection` says hello, replays the scrollback, then runs two tasks: the
*input loop* (frames from the client: binary to the pty, text to control messages),
the one reader of the socket, and the *pump* (:func:`_pump`), the one writer: output
from the terminal's log at this connection's offset, as fast as its flow-control
window (:mod:`webterm.pty.window`) allows, and the notices other tasks post to it.
After the shell's exit the pump finishes the session (:func:`_finish`).
"""

from __future__ import annotations

import contextlib

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
    decode_client_message,
    encode_message,
)
from webterm.pty.attachment import CLOSE_TIMEOUT, Attachment, Phase, close, send_whole
from webterm.pty.session import ExitStatus
from webterm.pty.terminal import FRAME_BYTES, SPAWN_FAILED, ShellUnavailable, Terminal


async def serve_connection(terminal: Terminal, ws: WebSocketConnection) -> bool:
    """Attach ``ws`` until either side goes away. True if its stream is broken (a
    send was cut short): then it must be dropped, not closed with a close frame."""
    try:
        reattached = await terminal.ensure_shell()
    except ShellUnavailable:
        with contextlib.suppress(ConnectionClosed):
            await ws.send_message(encode_message(Error(message=SPAWN_FAILED)))
        await close(ws, CloseCode.INTERNAL_ERROR)
        return False
    offset, restore = terminal.log.replay()
    att = Attachment(ws, offset=offset)
    terminal.attach(att)  # an older connection is taken over
    try:
        await ws.send_message(
            encode_message(Hello(terminal=terminal.config.name, reattached=reattached))
        )
        if restore:  # the modes in force where the replay starts, then the replay
            att.flow.on_send(len(restore), trio.current_time())
            await ws.send_message(restore)
        if reattached and terminal.log.modes().alternate_screen and terminal.shell is not None:
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
            await close(ws, CloseCode.SUPERSEDED)
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
        size = control.clamped()
        if terminal.shell is not None:
            terminal.shell.resize(size.cols, size.rows)
    elif isinstance(control, Ping):
        att.post(Pong())
        terminal.notify()


__all__ = ["serve_connection"]
