"""The one way to a terminal, shared by ``POST /api/terminal`` and the original
project's ``/getPseudoTerminalAddress``: rate limits, the per-address cap, the manager.

In order: the source address's rate (per limit key: IPv6 per /64, so one host cannot
spread over its prefix), the client identity's rate, and the address's cap on held
terminals, each a 429 with a retry delay. Then the identity is counted against the
address while the manager answers (which can take minutes while a terminal starts)
and after a success, so requests sent in parallel cannot all pass the check made
before them; a failed or dropped request is not counted."""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass
from typing import Final

import trio

from webterm.protocol import Allocation
from webterm.ratelimit import TokenBucketLimiter
from webterm.service.errors import Refusal
from webterm.webserver.forwarding import limit_key
from webterm.webserver.holds import AddressHolds
from webterm.webserver.managerclient import ManagerClient

RETRY_AFTER_CAP: Final = 60
"""Seconds before asking again when this address already holds its share of terminals."""


@dataclass(frozen=True, slots=True)
class Allocator:
    """Limits in front of the manager's allocations (see the module docstring)."""

    manager: ManagerClient
    _: KW_ONLY
    per_address: TokenBucketLimiter
    per_client: TokenBucketLimiter
    holds: AddressHolds

    async def allocate(self, identity: str, address: str) -> Allocation:
        """The manager's allocation for ``identity`` asking from ``address``; raises
        :class:`Refusal` (429) over a limit, and the manager client's errors."""
        now = trio.current_time()
        key = limit_key(address)
        for limiter, bucket in ((self.per_address, key), (self.per_client, identity)):
            verdict = limiter.take(bucket, now)
            if not verdict.allowed:
                retry_after = math.ceil(verdict.retry_after) or 1
                raise Refusal(429, "too many terminal requests", retry_after)
        if self.holds.full(key, identity, now):
            raise Refusal(429, "too many terminals from your address", RETRY_AFTER_CAP)
        new = self.holds.hold(key, identity, now)
        allocated = False
        try:
            got = await self.manager.allocate(identity)
            allocated = True
            self.holds.tag(key, identity, got.client_hash)  # how the proxy knows its sessions
            return got
        finally:
            if new and not allocated:
                self.holds.release(key, identity)

    async def give_back(self, identity: str, address: str) -> bool:
        """``identity`` gives its terminal back (it no longer counts against
        ``address``); False if the manager says it held none."""
        self.holds.release(limit_key(address), identity)
        return await self.manager.release(identity)


__all__ = ["RETRY_AFTER_CAP", "Allocator"]
