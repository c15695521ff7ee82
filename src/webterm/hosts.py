"""Which ``Host`` a service listening on loopback only will answer: the DNS-rebinding guard.

Pure: no I/O. A service bound to loopback (``webterm up``'s default, and the manager and
terminals it starts) is reachable from the browser of whoever sits at the machine. Any
web page can point its own DNS name at 127.0.0.1 and then talk to such a service as its
*same origin*: the browser's requests carry ``Host: evil.example:8080``, so Origin checks
pass. Such a service therefore answers only requests whose ``Host`` names the machine by
address or as ``localhost`` (``*.localhost`` resolves to loopback by definition, RFC 6761),
or names a host the operator allowed — what Jupyter does. A service listening on other
interfaces (behind an ingress, in a pod) is reached by real host names and is not guarded
here; its operator's ingress decides which names reach it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit


def listens_on_loopback_only(bind_host: str) -> bool:
    """Whether a service bound to ``bind_host`` is reachable from this machine only."""
    host = bind_host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """The name part of a ``Host`` header (``name``, ``name:port``, ``[v6]:port``),
    lowercased, without a trailing dot."""
    value = host_header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    name, _, _ = value.partition(":") if value.count(":") == 1 else (value, "", "")
    return name.rstrip(".")


def origin_hosts(origins: Iterable[str]) -> frozenset[str]:
    """The host names of allowed origins (``https://portal.example:8443`` → its name):
    a page the operator allows may be served under its own name too."""
    names = set()
    for origin in origins:
        try:
            hostname = urlsplit(origin).hostname
        except ValueError:
            continue
        if hostname:
            names.add(hostname.rstrip(".").lower())
    return frozenset(names)


def rebinding_safe(host_header: str | None, allowed: frozenset[str] = frozenset()) -> bool:
    """Whether a loopback-only service may answer a request with this ``Host`` header:
    an IP address, ``localhost``/``*.localhost``, or one of ``allowed`` (lowercase names).
    No header at all (HTTP/1.0, not a browser) is not a rebinding attack."""
    if host_header is None:
        return True
    if "," in host_header:
        return False  # several Host headers (joined): refuse rather than pick one
    name = host_name(host_header)
    if name == "localhost" or name.endswith(".localhost") or name in allowed:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


__all__ = ["host_name", "listens_on_loopback_only", "origin_hosts", "rebinding_safe"]
