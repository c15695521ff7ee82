"""What a request says about its client, believing proxies only when they are trusted.

Pure: no I/O. Behind a load balancer or ingress, the TCP peer is the proxy, and the
client's address, scheme and host arrive in ``X-Forwarded-For``, ``X-Forwarded-Proto``
and ``X-Forwarded-Host``. Anyone can send those headers, so they are believed only
when the direct peer is one of the configured trusted proxies (``--trusted-proxy``,
addresses or networks); otherwise the peer, the connection's own scheme and the
``Host`` header are the truth.

``X-Forwarded-For`` is a list each proxy appends to. Only the right end is written by
proxies we trust; the left may be anything the client sent. So the client is the
right-most hop that is not itself a trusted proxy (what nginx's ``real_ip_recursive``
does), never the left-most. A header sent on several lines is one list, in order
(RFC 9110, 5.3): some proxies add a line of their own after the client's instead of
appending to it, and the caller joins the lines before asking.

IPv4 clients of a dual-stack (``::``) socket arrive as IPv4-mapped IPv6 addresses
(``::ffff:a.b.c.d``); they are read as the IPv4 address they are, so they are neither
lumped into one ``::/64`` by the per-address limits nor missed by an IPv4 trusted network.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

from webterm.config import ConfigError

IPV6_LIMIT_PREFIX: Final = 64
"""One IPv6 subscriber usually holds a whole /64 (SLAAC, privacy addresses), so per-address
limits count a /64 as one address; otherwise a single host could rotate through 2^64."""

_HOST: Final = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$"
)
"""A Host header we are willing to echo into URLs and headers: a DNS name, IPv4 or
bracketed IPv6 literal, optional port. Anything else (``@``, ``/``, spaces, CR/LF) is
refused rather than escaped."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The addresses whose ``X-Forwarded-*`` headers are believed."""

    def __init__(self, entries: Iterable[str]) -> None:
        networks: list[Network] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError as exc:
                raise ConfigError(
                    f"--trusted-proxy {entry!r} is not an address or network"
                ) from exc
        self._networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, address: object) -> bool:
        if not self._networks or not isinstance(address, str):
            return False
        ip = _ip(address)
        return ip is not None and any(ip in network for network in self._networks)


def joined_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI header pairs as lowercased name → value, the lines of one name joined with
    ``", "`` in order (RFC 9110, 5.3)."""
    headers: dict[str, str] = {}
    for key, value in raw:
        name, text = key.decode("latin-1").lower(), value.decode("latin-1")
        headers[name] = f"{headers[name]}, {text}" if name in headers else text
    return headers


def remote_address(peer: str | None, forwarded_for: str | None, trusted: TrustedProxies) -> str:
    """The client's address: the peer, or, when the peer is a trusted proxy, the
    right-most ``X-Forwarded-For`` hop that is not itself trusted (normalised;
    ``"invalid"`` for a hop that is not an IP address)."""
    if peer is None:
        return "unknown"
    if not forwarded_for or peer not in trusted:
        return _normalise(peer, peer)
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return _normalise(hop)
    return _normalise(hops[0]) if hops else peer  # every hop trusted: the first is the client


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``address`` as an IP address (an IPv4-mapped IPv6 one as IPv4), or None."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _normalise(address: str, otherwise: str = "invalid") -> str:
    ip = _ip(address)
    return otherwise if ip is None else str(ip)


def limit_key(address: str) -> str:
    """The key per-address limits count under: the address, or its /64 for IPv6."""
    ip = _ip(address)
    if ip is None:
        return address
    if ip.version == 6:
        network = ipaddress.ip_network(f"{ip}/{IPV6_LIMIT_PREFIX}", strict=False)
        return str(network)
    return str(ip)


def is_secure(
    scheme: str, forwarded_proto: str | None, peer: str | None, trusted: TrustedProxies
) -> bool:
    """Whether the browser reached us over TLS: the connection's scheme, or a trusted
    proxy's ``X-Forwarded-Proto`` (its first value, if a chain of proxies listed several)."""
    if scheme in ("https", "wss"):
        return True
    if forwarded_proto and peer in trusted:
        return forwarded_proto.split(",")[0].strip().lower() in ("https", "wss")
    return False


def public_host(
    host: str | None, forwarded_host: str | None, peer: str | None, trusted: TrustedProxies
) -> str | None:
    """The host:port the browser dialed, or None if it is missing or not a plain host
    (see :data:`_HOST`). A trusted proxy's ``X-Forwarded-Host`` wins over ``Host``."""
    if forwarded_host and peer in trusted:
        host = forwarded_host.split(",")[0].strip()
    if not host or not _HOST.match(host):
        return None
    return host


def same_origin(origin: str, host: str) -> bool:
    """Whether ``origin`` (``scheme://host[:port]``) names ``host`` (``host[:port]``),
    ignoring the scheme (TLS may end at a proxy) and case. Browsers leave a default port
    out of both ``Origin`` and ``Host``, so the two are compared as written."""
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return parts.netloc.lower() == host.lower()


__all__ = [
    "TrustedProxies",
    "is_secure",
    "joined_headers",
    "limit_key",
    "public_host",
    "remote_address",
    "same_origin",
]
