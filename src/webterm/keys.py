"""The token keys' I/O: the manager's signing key from its file, and the public keys a
verifier (the webserver's proxy, a terminal server) holds, from a JWKS file, the
manager's ``GET /v1/keys``, or given directly (``webterm up``).

A verifier that meets a token naming a key id it does not hold re-reads its source
once (at most every :data:`REFRESH_INTERVAL` seconds, however many such tokens come:
a forged ``kid`` cannot make it hammer the manager) and retries; that is how a rotated
manager's new key reaches every verifier without a restart. See docs/kubernetes.md for
the operator's side of a rotation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import urlsplit

import h11
import trio

from webterm.config import ConfigError, KeySource
from webterm.errors import WebtermError
from webterm.http1 import ExchangeError, exchange
from webterm.protocol import (
    KeySet,
    ShareClaims,
    SigningKey,
    TokenClaims,
    UnknownKey,
    read_any_token,
    read_token,
    verify_any_token,
    verify_token,
)

log = logging.getLogger("webterm.keys")

KEYS_PATH: Final = "/v1/keys"
"""The manager's JWKS endpoint (unauthenticated: public keys are public)."""

REFRESH_INTERVAL: Final = 10.0
"""Seconds between two re-reads of a verifier's key source on unknown key ids."""

FETCH_TIMEOUT: Final = 5.0
"""Seconds one fetch of the key set may take."""

START_ATTEMPTS: Final = 6
"""Fetches tried at start (backing off 0.5, 1, 2, 4, 8 s) before a verifier starts
with no keys and keeps refreshing on demand."""

MAX_JWKS_BYTES: Final = 64 * 1024

T = TypeVar("T")


def _load(path: str, what: str, parse: Callable[[bytes], T]) -> T:
    """``parse`` of the file at ``path``; a missing or unreadable file, or one that is
    not ``what``, is a :class:`ConfigError` naming it."""
    try:
        return parse(Path(path).read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"{what} {path}: {exc}") from exc


def load_signing_key(path: str) -> SigningKey:
    """The manager's ``--signing-key-file`` (PEM Ed25519 private key)."""
    return _load(path, "signing key", SigningKey.from_pem)


def load_public_key(path: str) -> KeySet:
    """A ``--previous-public-key-file`` (PEM Ed25519 public key)."""
    return _load(path, "public key", KeySet.from_pem)


def load_jwks_file(path: str) -> KeySet:
    """A ``--public-keys-file`` (a JWKS document, e.g. from a ConfigMap)."""
    return _load(path, "public keys", lambda raw: KeySet.from_jwks(raw[:MAX_JWKS_BYTES]))


class FetchError(WebtermError):
    """The key set could not be fetched or parsed."""

    error_status_hint = 502


async def fetch_jwks(url: str) -> KeySet:
    """GET the JWKS at ``url`` (h11 over trio: the terminal server stays small)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = [
        ("Host", parts.netloc),
        ("Accept", "application/json"),
        ("Connection", "close"),
        ("User-Agent", "webterm"),
    ]
    try:
        with trio.fail_after(FETCH_TIMEOUT):
            stream: trio.abc.Stream = await trio.open_tcp_stream(parts.hostname, port)
            if parts.scheme == "https":
                import ssl

                stream = trio.SSLStream(
                    stream, ssl.create_default_context(), server_hostname=parts.hostname
                )
            async with stream:
                answer = await exchange(stream, h11.Connection(h11.CLIENT), "GET", target, headers)
    except (OSError, ExchangeError, trio.TooSlowError) as exc:
        raise FetchError(str(exc) or type(exc).__name__) from exc
    if answer.status != 200:
        raise FetchError(f"{url} answered {answer.status}")
    try:
        return KeySet.from_jwks(answer.body[:MAX_JWKS_BYTES])
    except ValueError as exc:
        raise FetchError(f"{url}: {exc}") from exc


class PublicKeys:
    """A verifier's public keys, refreshed from their source on an unknown key id."""

    def __init__(self, source: KeySource) -> None:
        self.source = source
        self.current = source.keys if source.keys is not None else KeySet({})
        self._lock = trio.Lock()
        self._last_refresh = -math.inf

    async def start(self) -> None:
        """Read the source once; a URL is retried with back-off (the manager may still
        be starting), and after :data:`START_ATTEMPTS` the verifier goes on with no keys
        (every token is refused until a refresh succeeds). A bad file is a ConfigError."""
        if self.source.file is not None:
            self.current = load_jwks_file(self.source.file)
        elif self.source.url is not None:
            for attempt in range(START_ATTEMPTS):
                try:
                    self.current = await fetch_jwks(self.source.url)
                    break
                except FetchError as exc:
                    log.warning("fetching public keys failed (%s)", exc)
                if attempt + 1 < START_ATTEMPTS:
                    await trio.sleep(0.5 * 2**attempt)
            else:
                log.error("no public keys yet from %s; refusing tokens until fetched",
                          self.source.url)  # fmt: skip

    async def refresh(self) -> bool:
        """Re-read the source unless it was read less than :data:`REFRESH_INTERVAL` ago;
        True if the key set changed. Concurrent callers share one read."""
        if self.source.file is None and self.source.url is None:
            return False
        last = self._last_refresh
        async with self._lock:
            if self._last_refresh != last or (
                trio.current_time() - self._last_refresh < REFRESH_INTERVAL
            ):
                return False  # another task just refreshed, or too soon
            self._last_refresh = trio.current_time()
            before = self.current
            try:
                if self.source.file is not None:
                    self.current = await trio.to_thread.run_sync(load_jwks_file, self.source.file)
                else:
                    assert self.source.url is not None
                    self.current = await fetch_jwks(self.source.url)
            except (ConfigError, FetchError) as exc:
                log.warning("refreshing public keys failed (%s)", exc)
                return False
            changed = set(self.current.keys) != set(before.keys)
            if changed:
                log.info("public keys now %s", ", ".join(sorted(self.current.keys)))
            return changed

    async def read(self, token: str, *, now: float) -> TokenClaims:
        """:func:`webterm.protocol.read_token` against the current keys, refreshed once
        if the token names a key id not among them."""
        try:
            return read_token(self.current, token, now=now)
        except UnknownKey:
            if not await self.refresh():
                raise
        return read_token(self.current, token, now=now)

    async def verify(self, token: str, *, terminal: str, instance: str, now: float) -> TokenClaims:
        """:func:`webterm.protocol.verify_token`, refreshed as :meth:`read` is."""
        try:
            return verify_token(self.current, token, terminal=terminal, instance=instance, now=now)
        except UnknownKey:
            if not await self.refresh():
                raise
        return verify_token(self.current, token, terminal=terminal, instance=instance, now=now)

    async def read_any(self, token: str, *, now: float) -> TokenClaims | ShareClaims:
        """:func:`webterm.protocol.read_any_token` (an owner's or a share link's token),
        refreshed as :meth:`read` is."""
        try:
            return read_any_token(self.current, token, now=now)
        except UnknownKey:
            if not await self.refresh():
                raise
        return read_any_token(self.current, token, now=now)

    async def verify_any(
        self, token: str, *, terminal: str, instance: str, now: float
    ) -> TokenClaims | ShareClaims:
        """:func:`webterm.protocol.verify_any_token`, refreshed as :meth:`read` is."""
        try:
            return verify_any_token(
                self.current, token, terminal=terminal, instance=instance, now=now
            )
        except UnknownKey:
            if not await self.refresh():
                raise
        return verify_any_token(self.current, token, terminal=terminal, instance=instance, now=now)
