"""Who is asking: server-issued, signed client identities. Pure: no I/O.

An identity the browser carries (``tab`` mode: an id the page keeps in
sessionStorage; ``browser`` mode: an HttpOnly cookie) is ``<random>.<mac>``: 128 random
bits (base64url) and a 128-bit HMAC-SHA256 of them, keyed with the webserver's own secret and
bound to the mode. The server accepts back only ids it issued, so a client can neither
pick a weak id nor guess another's; a missing or forged one is simply replaced by a
fresh one. The MAC is compared in constant time.

The string the manager sees is namespaced by mode — ``tab:<random>``,
``browser:<random>``, ``ip:<address>`` — so no kind of identity can ever be taken
for another (see :func:`manager_identity`). ``ip`` mode (the remote address) lives in
:mod:`webterm.webserver.forwarding`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Final, Literal

ID_RANDOM_BYTES: Final = 16
"""128 bits: far beyond guessing, and the size of a UUID."""

MAC_BYTES: Final = 16
"""128 bits of HMAC-SHA256: forging one is as hard as guessing the id itself."""

COOKIE_NAME: Final = "webterm_client"

MAX_ID_CHARS: Final = 100
"""A genuine id is 22 + 1 + 22 characters; anything much longer is not worth hashing."""

_RANDOM_PART: Final = re.compile(r"^[A-Za-z0-9_-]{22}$")

IssuedKind = Literal["tab", "browser"]


def _mac(secret: bytes, kind: IssuedKind, random_part: str) -> str:
    message = b"identity\x00" + kind.encode() + b"\x00" + random_part.encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:MAC_BYTES]).rstrip(b"=").decode()


def issue_id(secret: bytes, kind: IssuedKind) -> str:
    """A fresh ``<random>.<mac>`` id for a tab or a browser."""
    random_part = base64.urlsafe_b64encode(secrets.token_bytes(ID_RANDOM_BYTES))
    text = random_part.rstrip(b"=").decode()
    return f"{text}.{_mac(secret, kind, text)}"


def verified_id(secret: bytes, kind: IssuedKind, presented: object) -> str | None:
    """The random part of an id this server issued for ``kind``; None for anything else
    (not a string, malformed, another kind's id, a bad MAC)."""
    if not isinstance(presented, str) or len(presented) > MAX_ID_CHARS:
        return None
    random_part, dot, mac = presented.partition(".")
    if not dot or not _RANDOM_PART.match(random_part):
        return None
    if not hmac.compare_digest(mac.encode(), _mac(secret, kind, random_part).encode()):
        return None
    return random_part


def manager_identity(kind: Literal["tab", "browser", "ip"], value: str) -> str:
    """The identity string sent to the manager (which stores only its keyed hash)."""
    return f"{kind}:{value}"


def identify(
    secret: bytes,
    mode: Literal["tab", "browser", "ip"],
    *,
    presented: object,
    address: str,
    issue: bool,
) -> tuple[str | None, str | None]:
    """``(identity for the manager, id to hand back)`` for a caller in ``mode``.

    ``presented`` is the id the caller sent (``tab``: the body's ``client``;
    ``browser``: the cookie), ``address`` its remote address (``ip`` mode). A genuine
    id is kept (handed back to a tab as it came, a browser keeps its cookie: None). A
    missing or forged one is replaced by a fresh id when ``issue``; otherwise (giving a
    terminal back) there is nobody to speak for: ``(None, None)``."""
    if mode == "ip":
        return manager_identity("ip", address), None
    random_part = verified_id(secret, mode, presented)
    if random_part is not None:
        kept = presented if mode == "tab" and isinstance(presented, str) else None
        return manager_identity(mode, random_part), kept
    if not issue:
        return None, None
    fresh = issue_id(secret, mode)
    return manager_identity(mode, fresh.partition(".")[0]), fresh


__all__ = [
    "COOKIE_NAME",
    "ID_RANDOM_BYTES",
    "identify",
    "issue_id",
    "manager_identity",
    "verified_id",
]
