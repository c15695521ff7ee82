"""How the kubernetes backend retries: client-go's per-item exponential backoff for the
reconcile loop (:class:`ItemBackoff`), and stamina's retries for the calls a request or
the start-up waits on (:func:`retry_for_request`, :func:`retry_until_done`), both
honouring the server's ``Retry-After``."""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Hashable
from typing import Final, ParamSpec, TypeVar

import stamina

from webterm.manager.kube.client import Conflict, KubeError, NotFound

P = ParamSpec("P")
T = TypeVar("T")

BACKOFF_BASE: Final = 0.5
BACKOFF_CAP: Final = 30.0
"""Per work item: 0.5 s doubling to 30 s (client-go's ItemExponentialFailureRateLimiter
with a shorter cap), so a returning API sees convergence within 30 s."""

CLAIM_TIMEOUT: Final = 10.0
"""Seconds one claim (the owner annotation) is retried within a request: past it the
request fails cleanly (503 + Retry-After) and the assignment is undone."""


def retry_hint(exc: Exception) -> bool | float:
    """stamina's backoff hook: retry what may succeed later; the server's Retry-After
    (429/503) is the wait when it gives one."""
    if isinstance(exc, Conflict | NotFound) or not isinstance(exc, KubeError):
        return False
    if not exc.retryable:
        return False
    return float(exc.retry_after) if exc.retry_after else True


class ItemBackoff:
    """Per-item exponential backoff (client-go's workqueue rate limiter)."""

    def __init__(self, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> None:
        self.base, self.cap = base, cap
        self.failures: dict[Hashable, int] = {}
        self.not_before: dict[Hashable, float] = {}

    def due(self, key: Hashable, now: float) -> bool:
        return self.not_before.get(key, -math.inf) <= now

    def failed(self, key: Hashable, now: float, hint: float | None = None) -> float:
        count = self.failures.get(key, 0)
        self.failures[key] = count + 1
        delay: float = min(self.cap, self.base * 2.0**count) * random.uniform(0.9, 1.1)
        if hint:
            delay = max(delay, hint)
        self.not_before[key] = now + delay
        return delay

    def forget(self, key: Hashable) -> None:
        self.failures.pop(key, None)
        self.not_before.pop(key, None)

    def next_due(self) -> float:
        return min(self.not_before.values(), default=math.inf)


async def retry_for_request(
    call: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
) -> T:
    """A call made for a waiting request: retried (honouring Retry-After) for up to
    CLAIM_TIMEOUT, then its error is raised."""
    async for attempt in stamina.retry_context(
        on=retry_hint, attempts=None, timeout=CLAIM_TIMEOUT,
        wait_initial=0.25, wait_max=4.0, wait_jitter=0.25,
    ):  # fmt: skip
        with attempt:
            return await call(*args, **kwargs)
    raise AssertionError("unreachable")  # pragma: no cover


async def retry_until_done(call: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
    """A call nothing can go on without (start-up): retried until it succeeds."""
    async for attempt in stamina.retry_context(
        on=retry_hint, attempts=None, timeout=None, wait_initial=0.5, wait_max=BACKOFF_CAP
    ):
        with attempt:
            return await call(*args, **kwargs)
    raise AssertionError("unreachable")  # pragma: no cover
