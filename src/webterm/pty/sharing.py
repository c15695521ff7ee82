"""The viewers a terminal's owner shared it with: who is attached by which share link,
the links the owner revoked, and the terminal's size as viewers are told it.

A viewer is an :class:`~webterm.pty.attachment.Attachment` with a share link's claims
(``att.share``). Viewers never take the terminal over: any number of them (up to
:data:`~webterm.protocol.MAX_VIEWERS`) are attached beside the one owner, each pulling
output from the log at its own offset, under its own flow window. The pty reader waits
for the owner only (:meth:`webterm.pty.terminal.Terminal._read_room`), so a slow viewer
never slows the shell, the owner or another viewer: when the output it has not been
sent falls out of the log, its pump skips it ahead to the newest scrollback
(:func:`webterm.pty.connection.resync`).

Pure bookkeeping over the attachments (no I/O): what to tell whom goes out as notices
through each attachment's own pump. Revoked links are kept for the terminal's life,
which is the instance's: a recycled terminal is a new instance, whose tokens every old
link's token fails anyway.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from webterm.protocol import MAX_VIEWERS, CloseCode, Size, Viewer, Viewers
from webterm.pty.attachment import Attachment, Phase
from webterm.pty.session import DEFAULT_COLS, DEFAULT_ROWS


@dataclass(eq=False)
class Sharing:
    """The viewers attached now, the revoked links and the size viewers are shown."""

    viewers: list[Attachment] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    cols: int = DEFAULT_COLS
    rows: int = DEFAULT_ROWS
    _next_id: int = 1

    @property
    def full(self) -> bool:
        """As many viewers as one terminal serves are attached."""
        return len(self.viewers) >= MAX_VIEWERS

    def add(self, att: Attachment) -> None:
        """Attach viewer ``att`` (its share claims set) and tell it the size."""
        att.id, self._next_id = self._next_id, self._next_id + 1
        self.viewers.append(att)
        att.post(Size(cols=self.cols, rows=self.rows))

    def remove(self, att: Attachment) -> bool:
        """``att`` went away; True if it was a viewer here."""
        if att in self.viewers:
            self.viewers.remove(att)
            return True
        return False

    def listing(self) -> Viewers:
        """The ``viewers`` message for the owner."""
        return Viewers(
            viewers=tuple(
                Viewer(id=att.id, link=att.share.link, mode=att.share.mode)
                for att in self.viewers
                if att.share is not None
            )
        )

    def revoke(self, link: str) -> list[Attachment]:
        """Refuse ``link`` from now on and end its viewers' connections at once (input
        stops, the frame being sent is finished, close 4410); returns them."""
        self.revoked.add(link)
        ended = [att for att in self._of(link) if att.phase is Phase.ATTACHED]
        for att in ended:
            att.take_over(CloseCode.REVOKED)
        return ended

    def resize(self, cols: int, rows: int) -> bool:
        """The owner's terminal is now ``cols`` by ``rows``; True if that changed it, and
        then every viewer is told."""
        if (cols, rows) == (self.cols, self.rows):
            return False
        self.cols, self.rows = cols, rows
        for att in self.viewers:
            att.post(Size(cols=cols, rows=rows))
        return True

    def _of(self, link: str) -> Iterator[Attachment]:
        return (att for att in list(self.viewers) if att.share and att.share.link == link)


__all__ = ["Sharing"]
