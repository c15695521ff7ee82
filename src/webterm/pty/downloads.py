"""``webterm-download FILE``: the shell offers a file, the page saves it.

Theory of operation
-------------------
The helper (``webterm/pty/bin/webterm-download``, a POSIX ``sh`` script the terminal
server puts first on the shell's ``PATH``) opens the file itself, as fd 3, and prints
one escape sequence to its terminal::

    ESC ] 7731 ; download ; PID ; FD ; HEXNAME BEL

``PID`` is the helper's own pid (as the shell sees pids: a sandbox has its own), ``FD``
the descriptor it holds the file on, ``HEXNAME`` the file's name in hex. The terminal
server reads every byte of output anyway; :class:`DownloadScanner` picks the sequence
out (it is left in the output: xterm.js ignores an OSC it does not know).
:meth:`Downloads.claim` then checks that the pid is a process of the tty's *foreground*
process group (what a program printing a forged sequence cannot arrange for another
process), opens that process's descriptor through ``/proc/PID/fd/FD`` (so only a file
the shell's own user could open, and did, is ever offered), and keeps it open under a
random one-time id for :data:`OFFER_TTL` seconds. The attached page is told with a
``download`` message and fetches ``GET /files/download/ID`` with its token. The helper
is answered with a signal: SIGUSR1 (offered) or SIGUSR2 (refused: no page attached, or
not a regular file), and waits for it before it exits and closes its descriptor.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import trio

OSC_START: Final = b"\x1b]7731;download;"
REQUEST: Final = re.compile(
    rb"\x1b\]7731;download;(\d{1,10});(\d{1,4});((?:[0-9a-f]{2}){1,255})(?:\x07|\x1b\\)"
)
PENDING_LIMIT: Final = len(OSC_START) + 10 + 1 + 4 + 1 + 510 + 2
"""The longest request: an unfinished one at the end of a chunk is kept this long."""

OFFER_TTL: Final = 300.0
"""Seconds an offered file waits for the page to fetch it."""

MAX_OFFERS: Final = 16
"""Offers kept at once; the oldest goes first."""


@dataclass(frozen=True, slots=True)
class Request:
    pid: int  # as the shell sees it
    fd: int
    name: str


@dataclass(slots=True)
class Offer:
    id: str
    fd: int
    name: str
    size: int
    expires: float
    taken: bool = field(default=False)


class DownloadScanner:
    """Finds helper requests in the output stream (split across chunks or not)."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[Request]:
        if self._pending:
            data, self._pending = self._pending + data, b""
        found: list[Request] = []
        end = 0
        if OSC_START in data:  # a fast search: output without a request costs no more
            for match in REQUEST.finditer(data):
                name = bytes.fromhex(match.group(3).decode()).decode("utf-8", "replace")
                found.append(Request(int(match.group(1)), int(match.group(2)), name))
                end = match.end()
        tail = data.rfind(b"\x1b]", max(end, len(data) - PENDING_LIMIT))
        if tail >= 0 and _may_become(data[tail:]):
            self._pending = bytes(data[tail:])
        elif data.endswith(b"\x1b"):
            self._pending = b"\x1b"
        return found


def _may_become(rest: bytes) -> bool:
    """Whether ``rest`` (from an OSC start to the chunk's end) may become a request."""
    if len(rest) <= len(OSC_START):
        return OSC_START.startswith(rest)
    return (
        rest.startswith(OSC_START)
        and re.fullmatch(rb"[0-9a-f;]*\x1b?", rest[len(OSC_START) :]) is not None
    )


def _status_fields(pid: int) -> dict[str, str]:
    fields = {}
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def _process_group(pgid: int, inner_pid: int) -> int | None:
    """The host pid of the process in group ``pgid`` whose innermost pid is ``inner_pid``."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat_line = f.read()
            fields = stat_line[stat_line.rfind(b")") + 2 :].split()
            if int(fields[2]) != pgid:
                continue
            nspid = _status_fields(int(entry)).get("NSpid", entry).split()
        except (OSError, IndexError, ValueError):
            continue
        if nspid and int(nspid[-1]) == inner_pid:
            return int(entry)
    return None


class Downloads:
    """The files the shell offered, by one-time id (see the module docstring)."""

    def __init__(self) -> None:
        self.scanner = DownloadScanner()
        self._offers: dict[str, Offer] = {}

    def claim(self, request: Request, master_fd: int, post: Callable[[Offer], bool]) -> bool:
        """Take the file the helper holds and ``post`` the offer to the page (False: no
        page); answer the helper with a signal. True if it was offered."""
        try:
            pgid = os.tcgetpgrp(master_fd)
        except OSError:
            return False
        host_pid = _process_group(pgid, request.pid)
        if host_pid is None:
            return False  # not the foreground job: not the helper; no answer
        offered = False
        try:
            fd = os.open(f"/proc/{host_pid}/fd/{request.fd}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd = -1
        if fd >= 0:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                offer = Offer(
                    id=secrets.token_urlsafe(18),
                    fd=fd,
                    name=request.name,
                    size=st.st_size,
                    expires=trio.current_time() + OFFER_TTL,
                )
                self._add(offer)
                offered = post(offer)
                if not offered:
                    self._drop(offer.id)
            else:
                os.close(fd)
        with contextlib.suppress(OSError):
            os.kill(host_pid, signal.SIGUSR1 if offered else signal.SIGUSR2)
        return offered

    def _add(self, offer: Offer) -> None:
        self.expire()
        while len(self._offers) >= MAX_OFFERS:
            self._drop(next(iter(self._offers)))
        self._offers[offer.id] = offer

    def _drop(self, offer_id: str) -> None:
        offer = self._offers.pop(offer_id, None)
        if offer is not None and not offer.taken:
            with contextlib.suppress(OSError):
                os.close(offer.fd)

    def expire(self) -> None:
        now = trio.current_time()
        for offer in [o for o in self._offers.values() if o.expires <= now]:
            self._drop(offer.id)

    def take(self, offer_id: str) -> Offer | None:
        """The offer ``offer_id`` once (then it is gone); the caller closes its fd."""
        self.expire()
        offer = self._offers.pop(offer_id, None)
        if offer is not None:
            offer.taken = True
        return offer

    def close(self) -> None:
        for offer_id in list(self._offers):
            self._drop(offer_id)


def helper_directory() -> str:
    """The directory holding ``webterm-download``: the terminal server puts it first
    on the shell's ``PATH`` (the sandbox binds it in, read-only)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin")


__all__ = [
    "OFFER_TTL",
    "DownloadScanner",
    "Downloads",
    "Offer",
    "Request",
    "helper_directory",
]
