"""Where a terminal listens: ``GET /v1/terminals/{name}`` asked of the manager, cached.

The proxy asks before it dials (see :mod:`webterm.webserver.proxy`); a reconnect storm
asks the manager once per :data:`ADDRESS_TTL`, and a failed dial forgets the entry."""

from __future__ import annotations

import enum
import logging
from typing import Final

import httpx
import trio

log = logging.getLogger("webterm.webserver.proxy")  # the proxy's lookups, logged as its own

ADDRESS_TTL: Final = 5.0
"""Seconds a terminal's address is cached: long enough that a reconnect storm asks the
manager once, short enough that a moved terminal is found again quickly. A failed dial
forgets the entry at once."""

MAX_CACHED_ADDRESSES: Final = 10_000
"""Entries kept at most; a terminal fleet is hundreds, so this only bounds abuse."""


class Lookup(enum.Enum):
    """Why a terminal has no address for a token."""

    UNKNOWN = "unknown"  # the manager has no such terminal
    STALE = "stale"  # the terminal was recycled since the token was issued
    UNAVAILABLE = "unavailable"  # the manager cannot say (down, slow, no address yet)


class AddressBook:
    """Terminal name and instance → ``host:port``, asked of the manager and cached
    briefly. Keyed by instance too: a recycled terminal keeps its name but not its
    address (a local terminal gets a new port, a pod a new IP)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self._cache: dict[tuple[str, str], tuple[float, str]] = {}

    async def lookup(self, name: str, instance: str) -> str | Lookup:
        now = trio.current_time()
        cached = self._cache.get((name, instance))
        if cached is not None and now - cached[0] < ADDRESS_TTL:
            return cached[1]
        try:
            response = await self.http.get(f"/v1/terminals/{name}")
        except httpx.HTTPError as exc:
            log.warning("manager unreachable looking up %s: %s", name, type(exc).__name__)
            return Lookup.UNAVAILABLE
        if response.status_code == 404:
            return Lookup.UNKNOWN
        try:
            described = response.json() if response.status_code == 200 else None
        except ValueError:
            described = None
        if not isinstance(described, dict):
            return Lookup.UNAVAILABLE
        if described.get("instance") != instance:
            return Lookup.STALE
        address = described.get("address")
        if not isinstance(address, str) or not split_address(address):
            return Lookup.UNAVAILABLE
        self._remember((name, instance), now, address)
        return address

    def forget(self, name: str, instance: str) -> None:
        self._cache.pop((name, instance), None)

    def _remember(self, key: tuple[str, str], now: float, address: str) -> None:
        if len(self._cache) >= MAX_CACHED_ADDRESSES:
            for old in [k for k, (seen, _) in self._cache.items() if now - seen >= ADDRESS_TTL]:
                del self._cache[old]
            if len(self._cache) >= MAX_CACHED_ADDRESSES:
                self._cache.clear()
        self._cache[key] = (now, address)


def split_address(address: str) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port`` too) → ``(host, port)``, or None."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


__all__ = ["ADDRESS_TTL", "AddressBook", "Lookup", "split_address"]
