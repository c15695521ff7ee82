"""The webserver's calls to the manager's API: allocate, release, readiness.

One ``httpx.AsyncClient`` (opened by :func:`webterm.webserver.app.serve`, its transport
injectable so tests can stand the manager in) carries every call. :meth:`ManagerClient.allocate`
returns a frozen :class:`~webterm.protocol.Allocation` (read by the protocol's codec)
or raises one of::

    ManagerError              no allocation: .message (fit to show), .retry_after,
                              .error_status_hint
    ├── ManagerUnavailable    the manager could not be reached (refused, timed out, ...)
    ├── ManagerRefused        it answered with a refusal (429 stays 429, all else is 503)
    └── ManagerAnsweredBadly  it answered 200 with a body that is not an allocation

``error_status_hint`` is what the webserver answers the page, 429 or 503 and nothing else,
so the page shows "busy, retrying" rather than an error.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, Final
from urllib.parse import quote

import httpx
import trio
from prometheus_client import CollectorRegistry, Histogram

from webterm.protocol import Allocation, MalformedAllocation, decode_allocation
from webterm.service.errors import Refusal

log = logging.getLogger("webterm.webserver")

MANAGER_TIMEOUT: Final = httpx.Timeout(connect=5.0, read=150.0, write=5.0, pool=10.0)
"""The manager may hold an allocation while a terminal starts (its --ready-timeout,
120 s by default), so reads may take that long; connecting may not."""

READY_TIMEOUT: Final = 2.0
"""Seconds /readyz waits for the manager's /readyz: probes have short deadlines."""

RETRY_AFTER_MANAGER_DOWN: Final = 5
"""Seconds the page waits before asking again when the manager cannot be reached."""

MAX_MESSAGE_CHARS: Final = 200
"""A refusal's message is passed on to the page, this long at most."""


class ManagerError(Refusal):
    """The manager gave no allocation. ``message`` is fit to show a user;
    ``retry_after`` is in seconds; ``error_status_hint`` is the status to answer with.
    A :class:`~webterm.service.errors.Refusal`: a route that meets one answers it."""

    error_status_hint: int = 503

    def __init__(self, message: str, retry_after: int = RETRY_AFTER_MANAGER_DOWN) -> None:
        super().__init__(type(self).error_status_hint, message, retry_after)


class ManagerUnavailable(ManagerError):
    """The manager could not be reached (connection refused, timed out, reset...)."""

    def __init__(self) -> None:
        super().__init__("terminal manager unavailable")


class ManagerRefused(ManagerError):
    """The manager answered with a refusal: ``status`` is its status (``error_status_hint``
    is 429 for its 429, 503 for anything else), with its message and retry delay."""

    def __init__(self, status: int, message: str, retry_after: int) -> None:
        super().__init__(message, retry_after)
        self.status = status
        self.error_status_hint = 429 if status == 429 else 503


class ManagerAnsweredBadly(ManagerError):
    """The manager answered 200, but not with an allocation (the
    :class:`~webterm.protocol.MalformedAllocation` is the ``__cause__``)."""

    def __init__(self) -> None:
        super().__init__("terminal manager answered badly")


class ManagerClient:
    """The manager's API as the webserver uses it, over ``http``."""

    def __init__(self, http: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        self.http = http
        self.m_allocation = Histogram(
            "webterm_allocation_seconds",
            "Time the manager took to answer an allocation",
            ["outcome"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )

    async def allocate(self, identity: str) -> Allocation:
        """The terminal the manager allocates to ``identity`` (the same one again for a
        client that holds one), or raise :class:`ManagerError`."""
        started = trio.current_time()
        try:
            answer = await self.http.post("/v1/allocations", json={"client": identity})
        except httpx.HTTPError as exc:
            self.m_allocation.labels("unreachable").observe(trio.current_time() - started)
            log.warning("manager unreachable: %s", type(exc).__name__)
            raise ManagerUnavailable from None
        outcome = "ok" if answer.status_code == 200 else str(answer.status_code)
        self.m_allocation.labels(outcome).observe(trio.current_time() - started)
        if answer.status_code != 200:
            raise _refusal(answer)
        try:
            return decode_allocation(answer.content)
        except MalformedAllocation as exc:
            log.warning("manager answered an allocation with an unexpected body")
            raise ManagerAnsweredBadly from exc

    async def share(self, identity: str, mode: str) -> dict[str, Any]:
        """A share link for ``identity``'s terminal (the manager's answer: ``terminal``,
        ``link``, ``mode``, ``token``, ``expires_at``), or raise :class:`ManagerError`
        (its 404, "holds no terminal", stays a 404)."""
        try:
            answer = await self.http.post("/v1/shares", json={"client": identity, "mode": mode})
        except httpx.HTTPError:
            raise ManagerUnavailable from None
        if answer.status_code == 404:
            raise Refusal(404, "there is no terminal of yours to share")
        if answer.status_code != 200:
            raise _refusal(answer)
        try:
            body = answer.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("token"), str):
            raise ManagerAnsweredBadly
        return body

    async def release(self, identity: str) -> bool:
        """Give ``identity``'s terminal back; False if it held none. Raises
        :class:`ManagerUnavailable`, and :class:`ManagerRefused` for a 5xx or 429 (the
        manager answers 503 until the recycle is durable: the caller asks again)."""
        try:
            answer = await self.http.delete(f"/v1/allocations/{quote(identity, safe='')}")
        except httpx.HTTPError:
            raise ManagerUnavailable from None
        if answer.status_code >= 500 or answer.status_code == 429:
            raise _refusal(answer)
        return answer.status_code == 200

    async def ready(self) -> bool:
        """Whether the manager says it is ready, within :data:`READY_TIMEOUT`."""
        answer = None
        with trio.move_on_after(READY_TIMEOUT), contextlib.suppress(httpx.HTTPError):
            answer = await self.http.get("/readyz")
        return answer is not None and answer.status_code == 200


def _refusal(answer: httpx.Response) -> ManagerRefused:
    """The manager's refusal with its message and retry delay, from the JSON body's
    ``error`` and ``retry_after`` or else the ``Retry-After`` header."""
    try:
        body = answer.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    message = body.get("error")
    if not isinstance(message, str) or not message:
        message = "no terminal available"
    retry_after = RETRY_AFTER_MANAGER_DOWN
    for raw in (body.get("retry_after"), answer.headers.get("Retry-After")):
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            continue
        try:
            retry_after = math.ceil(float(raw))
            break
        except (ValueError, OverflowError):
            continue
    return ManagerRefused(answer.status_code, message[:MAX_MESSAGE_CHARS], retry_after)


__all__ = [
    "MANAGER_TIMEOUT",
    "ManagerAnsweredBadly",
    "ManagerClient",
    "ManagerError",
    "ManagerRefused",
    "ManagerUnavailable",
]
