"""One shell on one pseudoterminal: spawn, read, write, resize, scrollback, hang-up.

Theory of operation
-------------------
:func:`spawn_shell` forks a shell onto the slave side of a fresh pty. The child is a
session leader (``setsid``) with the pty as its controlling terminal (``TIOCSCTTY``),
default signal dispositions and an empty signal mask — whatever the server inherited
(``nohup``, ``&`` and supervisors leave SIGINT/SIGHUP ignored, and an ignored signal
survives ``exec``) — and an environment scrubbed of the server's ``WEBTERM_*`` settings
and secrets. The parent keeps only the master fd, non-blocking, and waits for the
child through a pidfd, so no thread and no SIGCHLD handler is involved.

Output is appended to an :class:`OutputLog`: a byte stream with absolute offsets, of
which the last ``capacity`` bytes are kept. A connection does not receive pushed
output; it *pulls* from its own offset. That one idea gives reattach (start from the
oldest kept byte), takeover (the new connection starts where the log begins, the old
one simply stops pulling), coalescing (a slow reader gets everything that piled up in
one frame) and backpressure (the reader of the pty waits while the attached
connection is more than a read-ahead behind, so the shell blocks in ``write``).
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
import os
import pwd
import resource
import shutil
import signal
import struct
import termios
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Final

import trio

from webterm.pty.modes import TerminalModes

READ_BYTES: Final = 64 * 1024
"""Largest single ``read`` of the pty master. Linux returns at most ~4 KiB per read
from a pty, so this only matters for the coalescing loop below."""

COALESCE_BYTES: Final = 256 * 1024
"""After a wake-up, keep reading while data is immediately available, up to this
much: one wake-up, one append, one frame, instead of sixty-four 4 KiB frames."""

HANGUP_GRACE: Final = 2.0
"""Seconds between SIGHUP to the shell's session and SIGKILL to whatever is left."""

DEFAULT_COLS: Final = 80
DEFAULT_ROWS: Final = 24

SCRUBBED_ENV_PREFIXES: Final = ("WEBTERM_",)
"""The server's own settings (its keys URL or file, its instance) never reach the shell."""


@dataclass(frozen=True, slots=True)
class ShellLimits:
    """Resource limits applied to the shell and everything it starts.

    ``max_processes`` is RLIMIT_NPROC: a fork bomb stops there instead of taking the
    node (the kernel counts per user, and root is exempt; on Kubernetes the kubelet's
    pod PID limit is the second line). Core dumps are always off: a crashing program
    must not fill the terminal's disk."""

    max_processes: int | None = 1024
    max_open_files: int | None = 4096

    def rlimits(self) -> dict[int, tuple[int, int]]:
        limits = {resource.RLIMIT_CORE: (0, 0)}
        if self.max_processes is not None:
            limits[resource.RLIMIT_NPROC] = (self.max_processes, self.max_processes)
        if self.max_open_files is not None:
            limits[resource.RLIMIT_NOFILE] = (self.max_open_files, self.max_open_files)
        return limits


def default_shell() -> tuple[str, ...]:
    """The user's login shell, else bash, else sh."""
    with contextlib.suppress(KeyError):
        login = pwd.getpwuid(os.getuid()).pw_shell
        if login and os.access(login, os.X_OK) and not login.endswith(("nologin", "false")):
            return (login,)
    for candidate in ("/bin/bash", "/bin/sh"):
        if os.access(candidate, os.X_OK):
            return (candidate,)
    found = shutil.which("sh")
    if found is None:
        raise FileNotFoundError("no shell found: pass --shell")
    return (found,)


def shell_environment(
    base: Mapping[str, str], *, home: str | None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The shell's environment: the server's, scrubbed, plus the terminal's own."""
    env = {k: v for k, v in base.items() if not k.startswith(SCRUBBED_ENV_PREFIXES)}
    env["TERM"] = "xterm-256color"
    env["COLORTERM"] = "truecolor"
    env.setdefault("LANG", "C.UTF-8")
    if home is not None:
        env["HOME"] = home
    if extra:
        env.update(extra)
    return env


def set_window_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _child_setup(rlimits: dict[int, tuple[int, int]]) -> None:  # pragma: no cover - child
    """Between fork and exec: make the pty our controlling terminal, reset signals."""
    # subprocess has already dup2'ed the slave onto 0/1/2 and called setsid().
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    for sig in signal.valid_signals():
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    for limit, value in rlimits.items():
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(limit, value)


class OutputLog:
    """Everything the shell printed, as absolute byte offsets; the newest
    ``capacity`` bytes are kept, and the terminal modes in force where they begin
    (:mod:`webterm.pty.modes`). Pure bookkeeping, no I/O.

    The bytes are kept as the chunks they were appended as (immutable ``bytes``, never
    copied: an append stores a reference, a read returns views of them for the frame
    writer to send as they are). A chunk of which only the tail is still kept stays
    whole in memory until it is dropped entirely, so the log holds at most ``capacity``
    plus one chunk."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._chunks: list[bytes] = []
        self._starts: list[int] = []  # absolute offset of each chunk's first byte
        self._head = 0  # index of the oldest chunk still (partly) kept
        self.start = 0  # offset of the oldest kept byte
        self.end = 0  # offset one past the newest byte
        self.modes_at_start = TerminalModes()  # as the bytes dropped so far left them

    def append(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        chunk = data if type(data) is bytes else bytes(data)
        self._chunks.append(chunk)
        self._starts.append(self.end)
        self.end += len(chunk)
        if self.end - self.start > self.capacity:
            self._drop(self.end - self.capacity)

    def _drop(self, new_start: int) -> None:
        """Forget the bytes before ``new_start``, scanning them for mode switches."""
        chunks, starts, head = self._chunks, self._starts, self._head
        while self.start < new_start:
            first, first_start = chunks[head], starts[head]
            upto = min(new_start, first_start + len(first))
            self.modes_at_start.feed(first, self.start - first_start, upto - first_start)
            self.start = upto
            if upto == first_start + len(first):
                chunks[head] = b""  # release it now
                head += 1
        if head > 32 and head * 2 > len(chunks):  # compact now and then: O(1) amortised
            del chunks[:head], starts[:head]
            head = 0
        self._head = head

    def read_views(self, offset: int, limit: int) -> tuple[int, list[memoryview]]:
        """Up to ``limit`` bytes from ``offset`` (moved forward to the oldest kept
        byte if it fell out of the log) as views of the kept chunks, not copied; and
        the offset actually read from."""
        offset = max(offset, self.start)
        stop = min(self.end, offset + limit)
        views: list[memoryview] = []
        if offset >= stop:
            return offset, views
        index = bisect.bisect_right(self._starts, offset, self._head) - 1
        chunks, starts = self._chunks, self._starts
        at = offset
        while at < stop:
            chunk, chunk_start = chunks[index], starts[index]
            lo, hi = at - chunk_start, min(len(chunk), stop - chunk_start)
            view = memoryview(chunk)
            views.append(view if lo == 0 and hi == len(chunk) else view[lo:hi])
            at = chunk_start + hi
            index += 1
        return offset, views

    def read(self, offset: int, limit: int) -> tuple[int, bytes]:
        """Like :meth:`read_views`, joined into one ``bytes``."""
        offset, views = self.read_views(offset, limit)
        return offset, b"".join(views)

    def _kept(self, length: int | None = None) -> bytes:
        """The oldest ``length`` kept bytes (all of them by default), joined."""
        return self.read(self.start, self.end - self.start if length is None else length)[1]

    def replay_start(self) -> int:
        """Where a reattaching client should start: the oldest kept byte, moved to just
        after the first newline once the log has wrapped, so a replay does not begin
        in the middle of an escape sequence or a UTF-8 character."""
        if self.start == 0:
            return 0
        newline = self._kept(4096).find(b"\n")
        return self.start + newline + 1 if newline >= 0 else self.start

    def replay(self) -> tuple[int, bytes]:
        """Where a reattaching client starts (:meth:`replay_start`) and the escape
        sequences to send it first: the modes in force there, so that a full-screen
        program whose mode switches fell out of the log finds them again."""
        offset = self.replay_start()
        modes = self.modes_at_start.copy()
        modes.feed(self._kept(offset - self.start))
        return offset, modes.restore()

    def modes(self) -> TerminalModes:
        """The modes in force after the newest byte (read on reattach, not per append:
        each byte of output is scanned once, as it leaves the log)."""
        modes = self.modes_at_start.copy()
        modes.feed(self._kept())
        return modes


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How the shell ended: ``status`` is the exit code, or 128 + signal number."""

    status: int


class Shell:
    """A running shell on a pty. Create with :func:`spawn_shell`; the owner must call
    :meth:`hangup` (or let :meth:`wait` return) and then :meth:`close`."""

    def __init__(self, process: trio.Process, master_fd: int) -> None:
        self.process = process
        self.master_fd = master_fd
        self.pid = process.pid
        self._closed = False

    async def read(self, max_bytes: int = COALESCE_BYTES) -> bytes:
        """What the shell printed that is readable now, at least one byte and at most
        ``max_bytes`` (the rest stays in the tty for the next call), or ``b""`` once
        the shell side of the pty, or this :class:`Shell`, is closed."""
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        while not self._closed:  # never touch the fd number once closed
            try:
                await trio.lowlevel.wait_readable(self.master_fd)
            except trio.ClosedResourceError:  # close() while we waited
                return b""
            if self._closed:
                return b""
            try:
                data = os.read(self.master_fd, min(READ_BYTES, max_bytes))
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:  # Linux: the slave side is gone
                    return b""
                raise
            if not data:
                return b""
            chunks = [data]
            total = len(data)
            while total < max_bytes:
                try:
                    more = os.read(self.master_fd, min(READ_BYTES, max_bytes - total))
                except (BlockingIOError, OSError):
                    break
                if not more:
                    break
                chunks.append(more)
                total += len(more)
            return b"".join(chunks)
        return b""

    async def write(self, data: bytes | memoryview) -> None:
        """Write all of ``data`` to the shell's input, waiting while the pty is full.
        Returns early, the rest dropped, once the shell is gone or :meth:`close` is
        called (also while waiting): its exit is reported elsewhere."""
        view = memoryview(data)
        while view and not self._closed:  # never write to the fd number once closed
            try:
                written = os.write(self.master_fd, view)
            except BlockingIOError:
                try:
                    await trio.lowlevel.wait_writable(self.master_fd)
                except trio.ClosedResourceError:  # close() while we waited
                    return
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:
                    return  # the shell is gone; its exit is reported elsewhere
                raise
            view = view[written:]

    def resize(self, cols: int, rows: int) -> None:
        """Set the window size (the shell gets SIGWINCH); nothing once closed."""
        if self._closed:
            return
        with contextlib.suppress(OSError):
            set_window_size(self.master_fd, cols, rows)

    def redraw(self) -> None:
        """Ask the program in the foreground to redraw, as a resize would: SIGWINCH to
        the tty's foreground process group (what a reattach to vim or less needs)."""
        if self._closed:
            return
        with contextlib.suppress(OSError):
            os.killpg(os.tcgetpgrp(self.master_fd), signal.SIGWINCH)

    def interrupts(self, data: bytes) -> bool:
        """Whether typing ``data`` makes the tty flush its output: it holds the INTR,
        QUIT or SUSP character while the line discipline turns those into signals
        (ISIG) and flushes on them (no NOFLSH). True for Ctrl-C at a shell prompt or
        under ``yes``; false in vim or any raw-mode program, where ^C is just a key."""
        if self._closed:
            return False
        try:
            lflag, chars = (a := termios.tcgetattr(self.master_fd))[3], a[6]
        except (OSError, termios.error):
            return False
        if not lflag & termios.ISIG or lflag & termios.NOFLSH:
            return False
        for index in (termios.VINTR, termios.VQUIT, termios.VSUSP):
            char = chars[index]
            if isinstance(char, bytes) and char != b"\0" and char in data:
                return True
        return False

    async def wait(self) -> ExitStatus:
        code = await self.process.wait()
        return ExitStatus(128 - code if code < 0 else code)

    def signal_session(self, sig: int) -> None:
        """Send ``sig`` to every process of the shell's session: its own process group
        and the job process groups an interactive shell creates."""
        for pid in _session_members(self.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    async def hangup(self, grace: float = HANGUP_GRACE) -> ExitStatus:
        """End the terminal: SIGHUP to the session, SIGKILL after ``grace`` seconds to
        whatever is left, then reap the shell."""
        if self.process.returncode is None:
            self.signal_session(signal.SIGHUP)
            self.signal_session(signal.SIGCONT)  # stopped jobs must see the hang-up
            with trio.move_on_after(grace):
                return await self.wait()
        self.signal_session(signal.SIGKILL)
        return await self.wait()

    def close(self) -> None:
        """Release the master fd (idempotent). Kills leftovers of the session first:
        nothing the user started outlives the terminal. A :meth:`write` or :meth:`read`
        waiting on the fd returns; later calls never touch the (maybe reused) fd number."""
        if self._closed:
            return
        self._closed = True
        self.signal_session(signal.SIGKILL)
        trio.lowlevel.notify_closing(self.master_fd)
        with contextlib.suppress(OSError):
            os.close(self.master_fd)


def _session_members(sid: int) -> list[int]:
    """Pids whose session id is ``sid`` (from /proc; empty where /proc is missing)."""
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp session ..."; comm may contain spaces and parens
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 3 and int(fields[3]) == sid:
            members.append(int(entry))
    return members


async def spawn_shell(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | None = None,
    cols: int = DEFAULT_COLS,
    rows: int = DEFAULT_ROWS,
    limits: ShellLimits | None = None,
) -> Shell:
    """Start ``argv`` as a session leader on a new pty; see the module docstring."""
    master, slave = os.openpty()
    try:
        set_window_size(master, cols, rows)
        os.set_blocking(master, False)
        os.set_inheritable(master, False)
        process = await trio.lowlevel.open_process(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            preexec_fn=partial(_child_setup, (limits or ShellLimits()).rlimits()),
            close_fds=True,
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return Shell(process, master)
