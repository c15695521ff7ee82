"""Who is asking: server-issued, signed client identities. Pure: no I/O.

An identity the browser carries (``tab`` mode: an id the page keeps in
sessionStorage; ``browser`` mode: an HttpOnly cookie) is ``<random>.<mac>``: 128 random
bits and an HMAC of them under the shared secret. The server accepts back only ids it
issued, so a client can neither pick a weak id nor guess another's; a missing or
forged one is simply replaced by a fresh one. ``ip`` mode uses the remote address,
believing ``X-Forwarded-For`` only from configured trusted proxies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Sequence
from typing import Final

ID_RANDOM_BYTES: Final = 16  # 128 bits: far beyond guessing
COOKIE_NAME: Final = "webterm_client"


def _mac(secret: bytes, random_part: str) -> str:
    digest = hmac.new(secret, b"identity\x00" + random_part.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def issue_id(secret: bytes) -> str:
    random_part = secrets.token_urlsafe(ID_RANDOM_BYTES)
    return f"{random_part}.{_mac(secret, random_part)}"


def verified_id(secret: bytes, presented: object) -> str | None:
    """The random part of a genuine id, or None for anything else."""
    if not isinstance(presented, str) or len(presented) > 100:
        return None
    random_part, dot, mac = presented.partition(".")
    if not dot or not random_part:
        return None
    if not hmac.compare_digest(mac.encode(), _mac(secret, random_part).encode()):
        return None
    return random_part


def remote_address(
    peer: str | None, forwarded_for: str | None, trusted_proxies: Sequence[str]
) -> str:
    """The client's address: the peer, or — only when the peer is a trusted proxy —
    the right-most address in ``X-Forwarded-For`` that is not itself trusted."""
    if peer is None:
        return "unknown"
    if not forwarded_for or not _is_trusted(peer, trusted_proxies):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted_proxies):
            return _normalise(hop)
    return _normalise(hops[0]) if hops else peer


def _normalise(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return "invalid"


def _is_trusted(address: str, trusted: Sequence[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for entry in trusted:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False
