"""One attached WebSocket's state: its :class:`Phase`, its output window, the notices
for its pump; and the two ways anything is sent or closed on it (:func:`send_whole`,
:func:`close`). The tasks that drive it are in :mod:`webterm.pty.connection`.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Final

import trio
from trio_websocket import WebSocketConnection

from webterm.protocol import (
    CloseCode,
    Download,
    Error,
    Flush,
    Idle,
    Pong,
    ShareClaims,
    Size,
    Viewers,
)
from webterm.pty.frames import send_binary
from webterm.pty.window import FlowWindow

CLOSE_TIMEOUT: Final = 2.0
"""Seconds we wait for a peer's close handshake before dropping the TCP connection,
and that a taken-over connection has to finish the frame it is sending."""

Notice = Idle | Error | Flush | Pong | Size | Viewers | Download
"""A control message another part of the server asks an attachment's pump to send."""


class Phase(enum.Enum):
    """Where an attached connection is in its life; :data:`PHASE_CHANGES` says what may
    follow what."""

    ATTACHED = enum.auto()
    """In charge of the terminal: hello and the replay, then input and output flow."""
    FINISHING = enum.auto()
    """The shell exited and all output is sent: the pump sends ``exit``, waits for the
    client's acks (its input loop goes on reading them) and closes 1000."""
    TAKEN_OVER = enum.auto()
    """A newer connection attached (or, for a viewer, its share link was revoked): input
    stops at once; the pump ends the frame it is sending (within :data:`CLOSE_TIMEOUT`),
    then the connection closes with :attr:`Attachment.end_code` (4409, or 4410)."""
    SHUTTING_DOWN = enum.auto()
    """The server is stopping: the socket is closed 1001 and input stops."""
    BROKEN = enum.auto()
    """A send was cut short (a takeover's deadline): the stream is dropped, no close
    frame after the partial one."""


PHASE_CHANGES: Final[dict[Phase, frozenset[Phase]]] = {
    Phase.ATTACHED: frozenset({Phase.FINISHING, Phase.TAKEN_OVER, Phase.SHUTTING_DOWN}),
    Phase.FINISHING: frozenset({Phase.TAKEN_OVER, Phase.SHUTTING_DOWN}),
    Phase.SHUTTING_DOWN: frozenset({Phase.TAKEN_OVER}),
    Phase.TAKEN_OVER: frozenset({Phase.BROKEN}),
    Phase.BROKEN: frozenset(),
}
"""The phases each phase may change to."""


@dataclass(eq=False)
class Attachment:
    """One connection's view of the terminal."""

    ws: WebSocketConnection
    offset: int = 0  # next log offset to send
    flow: FlowWindow = field(default_factory=FlowWindow)  # output in flight, if it acks
    phase: Phase = Phase.ATTACHED
    input_scope: trio.CancelScope | None = None  # its input loop, once running
    sending: trio.CancelScope | None = None  # the pump's send in progress
    notices: deque[Notice] = field(default_factory=deque)  # for the pump to send
    share: ShareClaims | None = None  # a viewer's share link; None: the owner
    id: int = 0  # a viewer's number on this terminal
    end_code: int = CloseCode.SUPERSEDED  # the close after TAKEN_OVER

    @property
    def viewer(self) -> bool:
        """Attached by a share link, beside the owner."""
        return self.share is not None

    @property
    def may_type(self) -> bool:
        """Its input reaches the shell: the owner's, or a ``type`` link's."""
        return self.share is None or self.share.mode == "type"

    def enter(self, phase: Phase) -> None:
        """Change to ``phase``; a change :data:`PHASE_CHANGES` does not list is a bug
        here, raised as :class:`RuntimeError` with the phase left as it was."""
        if phase not in PHASE_CHANGES[self.phase]:
            raise RuntimeError(f"an attachment {self.phase.name} cannot become {phase.name}")
        self.phase = phase

    def take_over(self, code: int = CloseCode.SUPERSEDED) -> None:
        """A newer connection attached. This one's input loop ends now, also a write
        stuck on a full pty: one writer to the shell at a time. Its pump finishes the
        frame it is sending (a frame cut short and the close after it would read as a
        broken connection, which a page answers by reconnecting), within
        :data:`CLOSE_TIMEOUT`, and it closes with ``code`` (4409; 4410 for a viewer
        whose link was revoked)."""
        self.enter(Phase.TAKEN_OVER)
        self.end_code = code
        if self.input_scope is not None:
            self.input_scope.cancel()
        if self.sending is not None:
            self.sending.deadline = trio.current_time() + CLOSE_TIMEOUT

    @property
    def superseded(self) -> bool:
        """Taken over or shut down: no longer in charge, its input is dropped."""
        return self.phase in (Phase.TAKEN_OVER, Phase.SHUTTING_DOWN, Phase.BROKEN)

    def post(self, notice: Notice) -> None:
        """Queue a control message for the pump, the one task that sends on this
        connection: no other task waits on its socket (the input loop goes on reading
        while a big frame is stuck), a cancellation never cuts a frame short, and a
        failed send ends the connection, not the server. A newer idle warning, size or
        viewer list replaces a queued one."""
        if isinstance(notice, Idle | Size | Viewers):
            kind = type(notice)
            self.notices = deque(n for n in self.notices if not isinstance(n, kind))
        self.notices.append(notice)


async def send_whole(att: Attachment, message: str | bytes | list[memoryview]) -> bool:
    """Send ``message`` on ``att`` (a list: the parts of one binary message, written by
    :func:`webterm.pty.frames.send_binary` without joining them) unless a takeover's deadline (``att.sending``) cuts it
    short: then the stream is broken (:attr:`Phase.BROKEN`) and False is returned."""
    scope = att.sending = trio.CancelScope()
    if att.phase is Phase.TAKEN_OVER:
        scope.deadline = trio.current_time() + CLOSE_TIMEOUT
    try:
        with scope:
            if isinstance(message, list):
                await send_binary(att.ws, message)
            else:
                await att.ws.send_message(message)
    finally:
        att.sending = None
    if scope.cancelled_caught:
        att.enter(Phase.BROKEN)
        return False
    return True


async def close(ws: WebSocketConnection, code: int) -> None:
    """Close with ``code``; a peer that does not answer within :data:`CLOSE_TIMEOUT`
    has its TCP connection dropped."""
    with trio.move_on_after(CLOSE_TIMEOUT):
        await ws.aclose(code)
    if ws.closed is None:  # the peer never answered: drop the TCP connection
        with trio.CancelScope() as scope:
            scope.cancel()
            await ws.aclose(code)


__all__ = [
    "CLOSE_TIMEOUT",
    "PHASE_CHANGES",
    "Attachment",
    "Notice",
    "Phase",
    "close",
    "send_whole",
]
