"""Token-bucket rate limits keyed by client or source address. Pure: no I/O, no clock.

Each key has a bucket of ``burst`` tokens refilled at ``rate`` tokens per second; a
request takes one token or is refused with the seconds until one is available. Idle
buckets are forgotten once full again, so memory tracks only recently active keys and
a flood of distinct keys is bounded by ``max_keys`` (the oldest are evicted: evicting
a bucket only ever *forgives* a client, it never blocks an innocent one)."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

DEFAULT_MAX_KEYS: Final = 100_000
"""Buckets kept at most (~100 bytes each: ~10 MB worst case under a spoofed-key flood)."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after: float  # seconds until a token is available; 0 when allowed

    @property
    def retry_after_header(self) -> str:
        """``Retry-After`` wants whole seconds; never advertise 0 for a refusal."""
        return str(max(1, math.ceil(self.retry_after)))


class TokenBucketLimiter:
    def __init__(self, *, rate: float, burst: int, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate must be > 0, burst and max_keys >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, now: float) -> Verdict:
        """Spend one token of ``key``'s bucket at time ``now`` (seconds, monotonic)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), updated=now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
            bucket.updated = now
            self._buckets.move_to_end(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return Verdict(True, 0.0)
        return Verdict(False, (1.0 - bucket.tokens) / self.rate)

    def prune(self, now: float) -> None:
        """Forget buckets that have refilled completely (they are equal to a new one)."""
        full_after = self.burst / self.rate
        for key in [k for k, b in self._buckets.items() if now - b.updated >= full_after]:
            del self._buckets[key]
