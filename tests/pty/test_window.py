"""The flow-control window on its own: no sockets, no shell, no clock (times are given)."""

from __future__ import annotations

import pytest

from webterm.pty.window import (
    ACK_HIGH_WATER,
    DELAY_SAMPLE_BYTES,
    MIN_WINDOW,
    QUEUE_DELAY_TARGET,
    FlowWindow,
)

FRAME = DELAY_SAMPLE_BYTES  # each frame below is timed


def acking() -> FlowWindow:
    """A window whose client has said it acks (``ack`` of 0 bytes, as the page does)."""
    window = FlowWindow()
    window.on_ack(0, now=0.0)
    return window


def round_trip(window: FlowWindow, *, sent_at: float, delay: float, held_back: bool) -> None:
    """One timed frame: sent at ``sent_at`` and acked ``delay`` later, after the window
    was (``held_back``) or was not what held output back."""
    window.on_send(FRAME, now=sent_at)
    window.limited |= held_back
    window.on_ack(FRAME, now=sent_at + delay)


def test_a_client_that_never_acks_has_no_window() -> None:
    window = FlowWindow()
    window.on_send(10 * ACK_HIGH_WATER, now=0.0)
    assert window.room() is None  # TCP alone paces it
    assert not window.samples  # nothing to time


def test_room_opens_as_soon_as_an_ack_arrives() -> None:
    """No hysteresis: with 33 KB unacknowledged of a 100 KB window, the rest may go at
    once (a client acking in 64 KiB batches would otherwise wait for it forever)."""
    window = FlowWindow(acking=True, size=100_000)
    assert window.room() == 100_000
    window.sent = 100_000
    assert window.room() == 0
    window.on_ack(67_000, now=1.0)
    assert window.room() == 67_000
    assert FlowWindow().room() is None  # no acks: TCP paces


def test_slow_start_then_growth_by_half_per_ack_up_to_the_cap() -> None:
    window = acking()
    assert window.size == MIN_WINDOW
    sizes = []
    for i in range(12):
        round_trip(window, sent_at=float(i), delay=0.01, held_back=True)
        sizes.append(window.size)
    assert sizes[:3] == [MIN_WINDOW * 3 // 2, MIN_WINDOW * 9 // 4, MIN_WINDOW * 27 // 8]
    assert sizes[-1] == ACK_HIGH_WATER
    assert max(sizes) == ACK_HIGH_WATER


def test_no_growth_while_the_window_held_nothing_back() -> None:
    """A client that keeps up with a shell printing little never had a full window: the
    window says nothing about how much more it could take, so it does not grow."""
    window = acking()
    for i in range(10):
        round_trip(window, sent_at=float(i), delay=0.01, held_back=False)
    assert window.size == MIN_WINDOW


def test_output_waiting_in_the_client_shrinks_the_window_by_30_percent_to_the_floor() -> None:
    window = FlowWindow(acking=True, size=ACK_HIGH_WATER)
    round_trip(window, sent_at=0.0, delay=0.02, held_back=True)  # the least delay seen
    assert window.size == ACK_HIGH_WATER  # capped
    round_trip(window, sent_at=1.0, delay=0.02 + QUEUE_DELAY_TARGET + 0.1, held_back=True)
    assert window.size == int(ACK_HIGH_WATER * 0.7)
    for i in range(20):
        round_trip(window, sent_at=2.0 + i, delay=1.0, held_back=True)
    assert window.size == MIN_WINDOW


def test_a_long_steady_round_trip_is_not_queueing() -> None:
    """The min-RTT rule: only the delay above the least send-to-ack time seen counts. A
    far client (300 ms away) that keeps up grows; 200 ms more than that shrinks it."""
    window = acking()
    for i in range(3):
        round_trip(window, sent_at=float(i), delay=0.3, held_back=True)
    assert window.base_delay == pytest.approx(0.3)
    grown = window.size
    assert grown == MIN_WINDOW * 27 // 8
    round_trip(window, sent_at=10.0, delay=0.3 + QUEUE_DELAY_TARGET * 0.75, held_back=True)
    assert window.size == grown  # between half the target and the target: unchanged
    round_trip(window, sent_at=11.0, delay=0.5, held_back=True)
    assert window.size == int(grown * 0.7)
    round_trip(window, sent_at=12.0, delay=0.1, held_back=True)  # a shorter path seen
    assert window.base_delay == pytest.approx(0.1)


def test_acks_time_the_sends_they_cover() -> None:
    """One send time per :data:`DELAY_SAMPLE_BYTES`; an ack times the latest send it
    covers, and a partial ack times nothing (the window stays as it was)."""
    window = acking()
    for i in range(4):
        window.on_send(DELAY_SAMPLE_BYTES // 2, now=float(i))
    assert [sent for sent, _ in window.samples] == [
        DELAY_SAMPLE_BYTES // 2,
        DELAY_SAMPLE_BYTES * 3 // 2,
    ]
    window.limited = True
    window.on_ack(DELAY_SAMPLE_BYTES // 4, now=10.0)  # covers no timed send
    assert (window.size, window.limited) == (MIN_WINDOW, True)
    window.on_ack(DELAY_SAMPLE_BYTES * 2, now=10.0)  # all four, more than was sent
    assert window.acked == window.sent
    assert window.in_flight == 0
    assert not window.samples
    assert window.base_delay == pytest.approx(10.0 - 2.0)


@pytest.mark.parametrize("size", [MIN_WINDOW, 100_000, 300_000, ACK_HIGH_WATER])
def test_a_client_acking_in_batches_never_stalls(size: int) -> None:
    """The stall of a4e326e: a client acks only whole 64 KiB batches (the page's, with no
    timer). The server sends all the window allows; then the client gets it and acks
    each complete batch. Whatever it then holds unacknowledged (under one batch) must
    leave room: it will not ack again before it gets more. Resuming only once the window
    had drained to a quarter stalled such a client for good (here from 100 KB)."""
    batch = MIN_WINDOW
    window = FlowWindow(acking=True, size=size)
    received = unacked = 0
    now = 0.0
    while received < 8 << 20:
        room = window.room()
        assert room, (received, unacked, window)  # 0: both sides wait for ever
        while room:  # frames as the pump cuts them (40 kB of output piled up each)
            frame = max(4096, min(room, 40_000))
            window.on_send(frame, now)
            room = window.room()
            window.limited |= room == 0
            received += frame
            unacked += frame
        now += 0.1
        while unacked >= batch:
            window.on_ack(batch, now)
            unacked -= batch
        now += 1.0  # the window adapts as it will: no size may stall the client
