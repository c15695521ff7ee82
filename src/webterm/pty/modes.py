"""The terminal modes a program has set, read from its output; what a reattaching page needs.

Pure: no I/O. Full-screen programs (vim, less, htop, tmux) switch the terminal into modes
once, when they start: the alternate screen (``CSI ? 1049 h``), application cursor keys
(``CSI ? 1 h``), mouse reporting (``CSI ? 1000 h``...), bracketed paste (``CSI ? 2004 h``),
a hidden cursor (``CSI ? 25 l``), the application keypad (``ESC =``). A page that
reattaches resets its screen and replays the scrollback, which holds only the last bytes
of output: the switch is usually long gone from it, and the program would go on in a
terminal that no longer has its modes (arrow keys sending the wrong codes, the mouse dead,
the screen drawn over the shell's). :class:`TerminalModes` follows those switches through
the output so that the replay can be preceded by :meth:`TerminalModes.restore`.

Only the modes a program sets and keeps are followed; everything else (colours, the
cursor position, scroll regions) is redrawn by the program itself, which the server asks
for with SIGWINCH when it reattaches a page to the alternate screen.
"""

from __future__ import annotations

from typing import Final

ALT_SCREEN_MODES: Final = frozenset({47, 1047, 1049})
"""DEC private modes that switch to the alternate screen (restored as 1049)."""

MOUSE_MODES: Final = (9, 1000, 1001, 1002, 1003)
"""Mouse tracking modes; a program enables one (the last one set counts)."""

KEPT_MODES: Final = frozenset({1, 1004, 1005, 1006, 1015, 2004})
"""Other modes restored as they are: cursor keys, focus events, mouse encodings, paste."""

CURSOR_VISIBLE: Final = 25

_ESC: Final = 0x1B
_PENDING_LIMIT: Final = 64
"""An unfinished sequence at the end of a chunk is kept for the next one, up to this
long; longer is not a mode switch."""


_MARKERS: Final = (b"\x1b[?", b"\x1b=", b"\x1b>", b"\x1bc")
"""How the sequences followed here begin: DEC private modes, the keypad, a full reset."""


def _unfinished(rest: bytes) -> bool:
    """Whether ``rest`` (from an ESC to the end of a chunk) may still become one of the
    sequences followed here."""
    if rest in (b"\x1b", b"\x1b["):
        return True
    return rest.startswith(b"\x1b[?") and all(c in b"0123456789;" for c in rest[3:])


class TerminalModes:
    """DEC private modes and the keypad mode, as the output stream has left them."""

    __slots__ = ("_alt", "_cursor_hidden", "_kept", "_keypad", "_mouse", "_pending")

    def __init__(self) -> None:
        self._pending = b""
        self._reset()

    def _reset(self) -> None:
        self._alt = False
        self._cursor_hidden = False
        self._keypad = False
        self._mouse: int | None = None
        self._kept: set[int] = set()

    @property
    def alternate_screen(self) -> bool:
        return self._alt

    def copy(self) -> TerminalModes:
        other = TerminalModes()
        other._alt, other._cursor_hidden, other._keypad = (
            self._alt, self._cursor_hidden, self._keypad,
        )  # fmt: skip
        other._mouse, other._kept, other._pending = self._mouse, set(self._kept), self._pending
        return other

    def feed(self, data: bytes | bytearray, start: int = 0, end: int | None = None) -> None:
        """Follow ``data[start:end]``, the next bytes of output (a sequence may be split
        between two calls). Colour and cursor sequences are everywhere in output and mode
        switches are rare, so only the mode switches are searched for (``bytes.find``, in
        C): a coloured flood costs a few scans per chunk, not a call per ESC, and text
        without any ESC one ``memchr``."""
        end = len(data) if end is None else end
        if self._pending:  # rare: the last chunk ended inside a sequence
            data, start = self._pending + bytes(data[start:end]), 0
            end, self._pending = len(data), b""
        index = start
        if data.find(b"\x1b", start, end) >= 0:  # memchr: plain text costs nothing more
            # where each kind of marker occurs next (-1: nowhere), each found once
            ahead = [data.find(marker, start, end) for marker in _MARKERS]
            while (found := min((at for at in ahead if at >= 0), default=-1)) >= 0:
                used = self._sequence(data, found, end)
                if used is None:  # a mode switch cut off by the end of the chunk
                    if end - found < _PENDING_LIMIT:
                        self._pending = bytes(data[found:end])
                    return
                index = found + used
                for kind, at in enumerate(ahead):
                    if 0 <= at < index:
                        ahead[kind] = data.find(_MARKERS[kind], index, end)
            tail = data.rfind(b"\x1b", max(index, end - _PENDING_LIMIT), end)
            if tail >= 0 and _unfinished(bytes(data[tail:end])):
                self._pending = bytes(data[tail:end])  # may become a mode switch

    def _sequence(self, data: bytes | bytearray, index: int, end: int) -> int | None:
        """Apply the escape sequence at ``data[index]`` if it sets a mode; the bytes it
        spans (at least 1), or None if ``data[:end]`` ends before it does."""
        if index + 1 >= end:
            return None
        second = data[index + 1]
        if second == 0x3D:  # ESC =: application keypad
            self._keypad = True
            return 2
        if second == 0x3E:  # ESC >: numeric keypad
            self._keypad = False
            return 2
        if second == 0x63:  # ESC c: full reset
            self._reset()
            return 2
        if second != 0x5B:  # not CSI
            return 1
        if index + 2 >= end:
            return None
        if data[index + 2] != 0x3F:  # CSI without "?": not a DEC private mode
            return 2
        cursor = index + 3
        while cursor < end and (0x30 <= data[cursor] <= 0x39 or data[cursor] == 0x3B):
            cursor += 1
        if cursor >= end:
            return None if cursor - index < _PENDING_LIMIT else cursor - index
        final = data[cursor]
        if final in (0x68, 0x6C):  # h: set, l: reset
            params = bytes(data[index + 3 : cursor]).split(b";")
            for param in params:
                if param.isdigit():
                    self._apply(int(param), final == 0x68)
        return cursor + 1 - index

    def _apply(self, mode: int, on: bool) -> None:
        if mode in ALT_SCREEN_MODES:
            self._alt = on
        elif mode in MOUSE_MODES:
            if on:
                self._mouse = mode
            elif self._mouse == mode:
                self._mouse = None
        elif mode == CURSOR_VISIBLE:
            self._cursor_hidden = not on
        elif mode in KEPT_MODES:
            if on:
                self._kept.add(mode)
            else:
                self._kept.discard(mode)

    def restore(self) -> bytes:
        """Escape sequences that bring a freshly reset terminal into these modes (empty
        for a terminal in its reset state)."""
        modes = sorted(self._kept)
        if self._mouse is not None:
            modes.append(self._mouse)
        if self._alt:
            modes.insert(0, 1049)
        out = b"".join(b"\x1b[?%dh" % mode for mode in modes)
        if self._cursor_hidden:
            out += b"\x1b[?25l"
        if self._keypad:
            out += b"\x1b="
        return out


__all__ = ["TerminalModes"]
