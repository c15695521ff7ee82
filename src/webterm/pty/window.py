"""The flow-control window: how much output may be in flight to a client that acks.

Pure bookkeeping, no I/O and no clock (every time is an argument), in the manner of
:mod:`webterm.ratelimit`. A client that acknowledges the bytes it has rendered (``ack``)
gets a window of unacknowledged bytes that adapts to how fast it renders:

* it starts at :data:`MIN_WINDOW` (slow start);
* it grows by half per timed ack while the window is what held output back and the
  client keeps up (its queueing delay under half of :data:`QUEUE_DELAY_TARGET`), up to
  :data:`ACK_HIGH_WATER`;
* it shrinks by 30 % whenever output waited in the client more than
  :data:`QUEUE_DELAY_TARGET`, down to :data:`MIN_WINDOW`. The queueing delay is a
  frame's send-to-ack time minus the least such time seen (the network's and an idle
  client's share), so a long but steady round trip does not shrink the window;
* output resumes as soon as an ack leaves room: no hysteresis (see :meth:`FlowWindow.room`).

A client that never acks has no window: TCP alone paces it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Final

ACK_HIGH_WATER: Final = 512 * 1024
"""Largest window of unacknowledged bytes in flight; a fast client never reaches it."""

MIN_WINDOW: Final = 64 * 1024
"""Smallest window, and the first: one of the page's ack batches."""

QUEUE_DELAY_TARGET: Final = 0.15
"""Seconds output may wait in the client before it is rendered: above this the window
shrinks, well below it (under half) it grows."""

DELAY_SAMPLE_BYTES: Final = 16 * 1024
"""One send time is remembered per this many bytes sent, to time the acks."""


@dataclass(eq=False, slots=True)
class FlowWindow:
    """One connection's output in flight: bytes sent, bytes acked, and the window."""

    size: int = MIN_WINDOW  # unacknowledged bytes allowed in flight
    sent: int = 0  # bytes of output sent on this connection
    acked: int = 0  # bytes the client says it rendered
    acking: bool = False  # the client does ack-based flow control (it has acked once)
    limited: bool = False  # the window held output back since the last timed ack
    base_delay: float = math.inf  # least send-to-ack time seen
    samples: deque[tuple[int, float]] = field(default_factory=deque)  # (sent, when)

    @property
    def in_flight(self) -> int:
        """Bytes sent and not yet acknowledged."""
        return self.sent - self.acked

    def room(self) -> int | None:
        """Bytes that may be sent now: ``None`` for a client that does not ack (TCP
        alone paces it), 0 while the window is full. No hysteresis: room opens as soon
        as an ack arrives. Waiting for the window to drain further would stall a client
        that acks in batches whenever what it holds unacknowledged is under its batch."""
        if not self.acking:
            return None
        return max(0, self.size - (self.sent - self.acked))

    def on_send(self, nbytes: int, now: float) -> None:
        """``nbytes`` of output were sent at ``now``."""
        self.sent += nbytes
        if self.acking and (
            not self.samples or self.sent - self.samples[-1][0] >= DELAY_SAMPLE_BYTES
        ):
            self.samples.append((self.sent, now))

    def on_ack(self, nbytes: int, now: float) -> None:
        """The client rendered ``nbytes`` more at ``now``: count them and adapt the
        window to its queueing delay, if the ack covers a timed send."""
        self.acking = True
        self.acked = min(self.sent, self.acked + nbytes)
        sent_at = None
        while self.samples and self.samples[0][0] <= self.acked:
            sent_at = self.samples.popleft()[1]
        if sent_at is None:
            return
        delay = now - sent_at
        self.base_delay = min(self.base_delay, delay)
        queued = delay - self.base_delay
        if queued > QUEUE_DELAY_TARGET:
            self.size = max(MIN_WINDOW, int(self.size * 0.7))
        elif queued < QUEUE_DELAY_TARGET / 2 and self.limited:
            # grow only when the window was what held output back (not while idle)
            self.size = min(ACK_HIGH_WATER, self.size * 3 // 2)
        self.limited = False


__all__ = ["ACK_HIGH_WATER", "DELAY_SAMPLE_BYTES", "MIN_WINDOW", "QUEUE_DELAY_TARGET", "FlowWindow"]
