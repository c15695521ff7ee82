"""Security headers for everything the webserver answers. Pure: no I/O.

The page is xterm.js plus our bundle, all from ``/static/``: no inline script, no
``eval``, no third-party origin. What it needs beyond ``'self'``:

* ``script-src 'wasm-unsafe-eval'``: the image addon's sixel and base64 decoders are
  WebAssembly, which a CSP without it forbids compiling. It allows WebAssembly only:
  no ``eval``, no ``new Function``, no inline script.
* ``style-src 'unsafe-inline'``: xterm.js injects ``<style>`` elements and sets inline
  styles (theme colours, cell metrics). Hashes would change with every theme and size.
* ``img-src data:`` and ``font-src data:``: small inlined images/fonts in the CSS.
* ``connect-src``: the terminal WebSocket. In ``proxy`` mode it is the page's own
  host, so the policy names exactly ``ws://HOST wss://HOST`` beside ``'self'`` (CSP 3
  lets ``'self'`` match same-host WebSockets, but older Safari did not). In
  ``nodeport`` mode terminals live on other ports (and possibly another host), so it
  names ``ws://PUBLIC_HOST:*`` when the public host is configured, else any ``ws:``.
"""

from __future__ import annotations

from typing import Final, Literal

_DIRECTIVES: Final = (
    "default-src 'self'",
    "script-src 'self' 'wasm-unsafe-eval'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self' data:",
    "connect-src {connect}",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "object-src 'none'",
)


def content_security_policy(connect_src: str) -> str:
    """The page's policy with ``connect-src`` set to ``connect_src``."""
    return "; ".join(_DIRECTIVES).format(connect=connect_src)


CONTENT_SECURITY_POLICY: Final = content_security_policy("'self' ws: wss:")
"""The generic policy, for stand-ins that do not know their host (tests' fake server)
and for answers to requests whose Host we would not echo."""


def connect_sources(
    address_mode: Literal["proxy", "nodeport"], host: str | None, public_host: str | None
) -> str:
    """``connect-src`` for a page served to a browser that dialed ``host`` (validated
    by :func:`webterm.webserver.forwarding.public_host`, or None)."""
    if address_mode == "nodeport":
        return f"'self' ws://{public_host}:*" if public_host else "'self' ws:"
    if host is None:
        return "'self'"
    return f"'self' ws://{host} wss://{host}"


SECURITY_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers without CSP 2
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
"""Sent with every answer besides the CSP."""

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "SECURITY_HEADERS",
    "connect_sources",
    "content_security_policy",
]
