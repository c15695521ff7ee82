"""Who sent the current request, as far as the trusted proxies let us tell.

Read off Quart's current request once per API call. Forwarded headers are believed
only from a trusted proxy (:mod:`webterm.webserver.forwarding`), and a header sent on
several lines is read as one list: a client's own ``X-Forwarded-For`` line cannot hide
the one a proxy added after it."""

from __future__ import annotations

from dataclasses import dataclass

from quart import request

from webterm.webserver.forwarding import (
    TrustedProxies,
    is_secure,
    public_host,
    remote_address,
    same_origin,
)
from webterm.webserver.identity import COOKIE_NAME


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """``address``: the remote address; ``host``: the public host the page was loaded
    from (validated, else None); ``secure``: whether the browser sees https;
    ``origin``: its ``Origin``; ``cookie``: its browser-mode identity cookie."""

    address: str
    host: str | None
    secure: bool
    origin: str | None
    cookie: str | None

    @classmethod
    def of_request(cls, trusted: TrustedProxies) -> Caller:
        """The caller of the request being handled now."""
        peer = request.remote_addr
        return cls(
            address=remote_address(peer, _header("X-Forwarded-For"), trusted),
            host=public_host(_header("Host"), _header("X-Forwarded-Host"), peer, trusted),
            secure=is_secure(request.scheme, _header("X-Forwarded-Proto"), peer, trusted),
            origin=request.headers.get("Origin"),
            cookie=request.cookies.get(COOKIE_NAME),
        )

    def foreign(self, allowed_origins: frozenset[str]) -> bool:
        """A browser request from another site's page (defence in depth against CSRF:
        browsers send Origin with every POST and DELETE)."""
        if self.origin is None or self.origin in allowed_origins:
            return False
        return self.host is None or not same_origin(self.origin, self.host)


def _header(name: str) -> str | None:
    """The current request's header ``name``, its lines joined by commas."""
    values = request.headers.getlist(name)
    return ", ".join(values) if values else None


__all__ = ["Caller"]
