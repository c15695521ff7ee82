"""``webterm pty``: one shell served over a WebSocket (:mod:`webterm.pty.server`).

Here, importing nothing else: the one line the server prints on stdout once it listens.
Whoever starts it (the local backend, the Kubernetes stand-in, tests, benches) reads
its address from that line with :func:`parse_listening_line`, and a stand-in that
pretends to be it prints :func:`listening_line`.
"""

from __future__ import annotations

from typing import Final

LISTENING_PREFIX: Final = "webterm-pty listening on "
"""How the line starts; ``HOST:PORT`` follows."""


def listening_line(host: str, port: int) -> str:
    """The line (without its newline) for a server listening on ``host``:``port``."""
    return f"{LISTENING_PREFIX}{host}:{port}"


def parse_listening_line(line: str) -> tuple[str, int]:
    """``(host, port)`` from :func:`listening_line`'s line (surrounding whitespace and
    newline allowed). Raises :class:`ValueError` for any other line."""
    text = line.strip()
    if not text.startswith(LISTENING_PREFIX):
        raise ValueError(f"not a webterm-pty listening line: {text[:80]!r}")
    host, sep, port = text.removeprefix(LISTENING_PREFIX).rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"no HOST:PORT in the listening line: {text[:80]!r}")
    return host, int(port)


__all__ = ["LISTENING_PREFIX", "listening_line", "parse_listening_line"]
