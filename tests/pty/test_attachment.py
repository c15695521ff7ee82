"""An attachment's phases and notices, without a socket."""

from __future__ import annotations

import pytest
import trio

from webterm.protocol import Flush, Idle, Pong
from webterm.pty.attachment import CLOSE_TIMEOUT, PHASE_CHANGES, Attachment, Phase


def attachment() -> Attachment:
    return Attachment(ws=None)  # type: ignore[arg-type]  # never sent on here


def test_an_unlisted_phase_change_raises_and_changes_nothing() -> None:
    att = attachment()
    att.enter(Phase.FINISHING)
    for phase in Phase:
        if phase not in PHASE_CHANGES[Phase.FINISHING]:
            with pytest.raises(RuntimeError, match="FINISHING cannot become"):
                att.enter(phase)
            assert att.phase is Phase.FINISHING
    att.enter(Phase.TAKEN_OVER)
    att.enter(Phase.BROKEN)
    assert not PHASE_CHANGES[Phase.BROKEN]


def test_only_a_taken_over_or_shut_down_attachment_is_superseded() -> None:
    superseded = {Phase.TAKEN_OVER, Phase.SHUTTING_DOWN, Phase.BROKEN}
    for phase in Phase:
        att = attachment()
        att.phase = phase
        assert att.superseded is (phase in superseded), phase


async def test_a_takeover_stops_input_and_gives_the_frame_in_progress_a_deadline() -> None:
    att = attachment()
    att.input_scope, att.sending = trio.CancelScope(), trio.CancelScope()
    att.take_over()
    assert att.phase is Phase.TAKEN_OVER
    assert att.input_scope.cancel_called
    assert not att.sending.cancel_called
    assert att.sending.deadline == pytest.approx(trio.current_time() + CLOSE_TIMEOUT)


def test_a_newer_idle_warning_replaces_a_queued_one() -> None:
    att = attachment()
    att.post(Idle(seconds_left=30))
    att.post(Flush())
    att.post(Idle(seconds_left=29))
    att.post(Pong())
    assert list(att.notices) == [Flush(), Idle(seconds_left=29), Pong()]
