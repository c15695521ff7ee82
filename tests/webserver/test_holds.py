"""The per-address hold bookkeeping, pure: every time is an argument."""

from __future__ import annotations

from webterm.webserver.holds import HOLD_SECONDS, AddressHolds

A, B = "10.0.0.1", "10.0.0.2"


def test_an_address_at_its_cap_is_full_for_newcomers_only() -> None:
    holds = AddressHolds(2)
    assert not holds.full(A, "one", 0)
    assert holds.hold(A, "one", 0) is True
    assert holds.hold(A, "two", 1) is True
    assert holds.full(A, "three", 2)
    assert not holds.full(A, "one", 2)  # a holder asking again is no newcomer
    assert not holds.full(B, "three", 2)  # each address has its own share
    assert holds.hold(A, "one", 3) is False  # already counted: nothing to undo later
    assert holds.holders(A) == 2


def test_a_release_frees_a_place_and_the_last_one_forgets_the_address() -> None:
    holds = AddressHolds(1)
    holds.hold(A, "one", 0)
    assert holds.full(A, "two", 0)
    holds.release(A, "one")
    assert not holds.full(A, "two", 0)
    assert len(holds) == 0
    holds.release(A, "nobody")  # releasing what is not held is harmless
    holds.release(B, "one")


def test_a_hold_expires_after_hold_seconds_without_a_new_request() -> None:
    holds = AddressHolds(1)
    holds.hold(A, "one", 100)
    assert holds.full(A, "two", 100 + HOLD_SECONDS)  # exactly the hold time: still held
    assert not holds.full(A, "two", 100 + HOLD_SECONDS + 1)
    assert len(holds) == 0  # the expired holder was forgotten


def test_asking_again_renews_the_hold() -> None:
    holds = AddressHolds(1, hold_seconds=10)
    holds.hold(A, "one", 0)
    holds.hold(A, "one", 8)
    assert holds.full(A, "two", 15)
    assert not holds.full(A, "two", 19)


def test_a_terminal_in_use_stays_held_however_long_ago_it_was_asked_for() -> None:
    relaying = {"one"}
    holds = AddressHolds(1, in_use=relaying.__contains__, hold_seconds=10)
    holds.hold(A, "one", 0)
    assert holds.full(A, "two", 1000)
    relaying.clear()  # the session ended
    assert not holds.full(A, "two", 1000)


def test_no_cap_tracks_nothing() -> None:
    holds = AddressHolds(0)
    assert holds.hold(A, "one", 0) is False
    assert not holds.full(A, "two", 0)
    assert len(holds) == 0


def test_a_flood_of_addresses_sweeps_only_the_stale_ones() -> None:
    holds = AddressHolds(1, hold_seconds=10, max_addresses=3)
    holds.hold("a", "x", 0)
    holds.hold("b", "x", 0)
    holds.hold("c", "x", 95)
    holds.hold("d", "x", 100)  # at the bound: a and b are stale, c is fresh
    assert len(holds) == 2
    assert holds.full("c", "y", 100)
    assert not holds.full("a", "y", 100)
