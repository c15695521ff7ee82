"""The few things the webserver reads off a raw ASGI scope. Pure: no I/O.

The dispatcher, the gates in front of the app and the WebSocket proxy work on raw
ASGI scopes and messages (the types are the service kit's, :mod:`webterm.service.asgi`)."""

from __future__ import annotations

from webterm.service.asgi import Receive, Scope, Send
from webterm.webserver.forwarding import joined_headers


def scope_headers(scope: Scope) -> dict[str, str]:
    """The request's headers, lowercased names; a header sent on several lines is one
    comma-separated list (RFC 9110, 5.3), as Quart's ``getlist`` joined reads it."""
    return joined_headers(scope.get("headers", []))


def peer(scope: Scope) -> str | None:
    """The address of the other end of the TCP connection (maybe a proxy)."""
    client = scope.get("client")
    return str(client[0]) if client else None


def loggable_path(path: str) -> str:
    """``path`` as it may appear in a log line: bounded, escaped, one line."""
    return path[:200].encode("unicode_escape").decode("ascii")


__all__ = ["Receive", "Scope", "Send", "loggable_path", "peer", "scope_headers"]
