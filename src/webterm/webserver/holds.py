"""How many terminals each source address holds, for ``--max-per-address``. Pure: no
I/O, no clock (the current time is always an argument, as in :mod:`webterm.ratelimit`).

An address holds a terminal for each identity that asked for one within
:data:`HOLD_SECONDS` (pages ask again on every reconnect), or whose terminal is in use
right now (``in_use``: the proxy is relaying it), however long ago it asked. The proxy
knows sessions by the client hash in their tokens, which only the manager can compute:
:meth:`AddressHolds.tag` records the one the manager's answer carried. Addresses
are limit keys (:func:`webterm.webserver.forwarding.limit_key`: IPv6 per /64)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

HOLD_SECONDS: Final = 15 * 60
"""An address is counted as holding a terminal for a client that asked for one within
this long (pages ask again on every reconnect), or whose terminal the proxy is relaying
now, however long ago it asked."""

MAX_HELD_ADDRESSES: Final = 100_000
"""Addresses tracked for the per-address cap before expired entries are swept."""


def _never(identity: str) -> bool:
    return False


class AddressHolds:
    """Per address, the identities holding a terminal and when each last asked.

    ``cap`` is how many one address may hold (0 or less: no cap, nothing is tracked);
    ``in_use(key)`` says whether a holder's terminal is in use now, ``key`` being the
    holder's tag (:meth:`tag`: its client hash) or, untagged, its identity."""

    def __init__(
        self,
        cap: int,
        *,
        in_use: Callable[[str], bool] = _never,
        hold_seconds: float = HOLD_SECONDS,
        max_addresses: int = MAX_HELD_ADDRESSES,
    ) -> None:
        self.cap = cap
        self.in_use = in_use
        self.hold_seconds = hold_seconds
        self.max_addresses = max_addresses
        self._held: dict[str, dict[str, float]] = {}  # address -> identity -> last asked
        self._tags: dict[str, dict[str, str]] = {}  # address -> identity -> its tag

    def __len__(self) -> int:
        """Addresses tracked."""
        return len(self._held)

    def holders(self, address: str) -> int:
        return len(self._held.get(address, {}))

    def full(self, address: str, identity: str, now: float) -> bool:
        """Whether ``address`` already holds its share without ``identity`` among the
        holders (so one more would be over the cap). Holders whose hold expired and whose
        terminal is not in use are forgotten first."""
        if self.cap <= 0:
            return False
        held = self._held.get(address)
        if held is None:
            return False
        tags = self._tags.get(address, {})
        for other in [i for i, seen in held.items() if now - seen > self.hold_seconds]:
            if not self.in_use(tags.get(other, other)):
                del held[other]
                tags.pop(other, None)
        if not held:
            self._forget(address)
            return False
        return identity not in held and len(held) >= self.cap

    def hold(self, address: str, identity: str, now: float) -> bool:
        """Count ``identity`` against ``address``'s cap from ``now``; True if it was not
        counted before (then :meth:`release` undoes it if the allocation fails)."""
        if self.cap <= 0:
            return False
        if len(self._held) >= self.max_addresses:  # a flood of addresses: forget the
            # stale ones (forgetting a hold only ever forgives an address)
            for key in [k for k, held in self._held.items() if not self._fresh(held, now)]:
                self._forget(key)
        held = self._held.setdefault(address, {})
        new = identity not in held
        held[identity] = now
        return new

    def tag(self, address: str, identity: str, tag: str) -> None:
        """What :attr:`in_use` is asked about for ``identity``'s hold at ``address``
        (the client hash the manager answered with); nothing if it holds nothing."""
        if identity in self._held.get(address, {}):
            self._tags.setdefault(address, {})[identity] = tag

    def release(self, address: str, identity: str) -> None:
        """``identity`` holds nothing at ``address`` any more."""
        held = self._held.get(address)
        if held is not None:
            held.pop(identity, None)
            self._tags.get(address, {}).pop(identity, None)
            if not held:
                self._forget(address)

    def _forget(self, address: str) -> None:
        self._held.pop(address, None)
        self._tags.pop(address, None)

    def _fresh(self, held: dict[str, float], now: float) -> bool:
        return any(now - seen <= self.hold_seconds for seen in held.values())


__all__ = ["HOLD_SECONDS", "MAX_HELD_ADDRESSES", "AddressHolds"]
