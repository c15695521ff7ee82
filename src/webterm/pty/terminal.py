"""The terminal: one shell, its output log, and the connection attached to it.

The first authorised connection spawns the shell (:meth:`Terminal.ensure_shell`); the
shell then outlives any connection until it exits, idles out, or the server is stopped.
At most one connection is *attached* as the owner: a newer one takes over
(:meth:`Terminal.attach`). Viewers who came by a share link attach beside it, any
number at once, and are never taken over (:mod:`webterm.pty.sharing`).
One task reads the pty for the whole terminal and appends to the log, but never more
than :data:`READ_AHEAD` bytes (nor the log's capacity) past what the attached connection
was sent, so a slow socket makes the shell block instead of our memory growing or
unsent output falling out of the log. Tasks wait on :attr:`Terminal.changed`, which
:meth:`Terminal.notify` sets whenever output, acks, attachments or the exit change.
"""

from __future__ import annotations

import logging
import math
import os
import signal
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from webterm.config import PtyConfig
from webterm.keys import PublicKeys
from webterm.protocol import CloseCode, Download, Error, Idle
from webterm.pty.attachment import Attachment, Phase, close
from webterm.pty.downloads import Downloads, Offer, helper_directory
from webterm.pty.report import report
from webterm.pty.session import (
    ExitStatus,
    OutputLog,
    Shell,
    ShellLimits,
    default_shell,
    shell_environment,
    spawn_shell,
)
from webterm.pty.sharing import Sharing

log = logging.getLogger("webterm.pty")

READ_AHEAD: Final = 256 * 1024
"""Bytes the pty reader may run ahead of what the attached connection has sent (less
if the scrollback is smaller: unsent output must stay in the log). Enough to keep a
fast socket busy; small enough that Ctrl-C is seen promptly."""

FRAME_BYTES: Final = 256 * 1024
"""Largest output frame. Whatever piled up while the socket was busy goes in one frame."""

DRAIN_TIMEOUT: Final = 1.0
"""After the shell exits, seconds without progress (output read, or sent to a client that
is behind) after which we stop reading output that its children still hold."""

SPAWN_FAILED: Final = "the shell could not be started"
"""The ``error`` message, before close 1011, to every connection that waited for a
failed spawn; the cause goes to the log only."""

EXIT_REASON_IDLE: Final = "idle"
EXIT_REASON_EXIT: Final = "exit"
EXIT_REASON_LIFETIME: Final = "lifetime"


class ShellUnavailable(Exception):
    """The shell could not be started (the cause is logged, not told to clients)."""


@dataclass(eq=False)
class Terminal:
    """The shell, its output log, and which connection is attached; see the module
    docstring."""

    config: PtyConfig
    nursery: trio.Nursery
    keys: PublicKeys  # the manager's public keys: check the browsers' tokens
    log: OutputLog = field(init=False)
    shell: Shell | None = None
    exit_status: ExitStatus | None = None
    exit_reason: str = EXIT_REASON_EXIT
    attached: Attachment | None = None  # the owner's connection
    sharing: Sharing = field(default_factory=Sharing)  # the viewers beside it
    last_input: float = 0.0
    report_token: str | None = None  # the latest token a browser opened us with
    changed: trio.Event = field(default_factory=trio.Event)  # set by the next notify()
    downloads: Downloads = field(default_factory=Downloads)  # what webterm-download offered
    _spawning: trio.Event | None = None  # set when the current spawn attempt is over

    def __post_init__(self) -> None:
        self.log = OutputLog(self.config.scrollback_bytes)

    # --- change notification ------------------------------------------------------------

    def notify(self) -> None:
        """Wake every task waiting for output, progress, acks, exit or attach changes
        (each takes :attr:`changed` before it looks, then waits on it)."""
        self.changed.set()
        self.changed = trio.Event()

    # --- the shell ------------------------------------------------------------------------

    async def ensure_shell(self) -> bool:
        """Spawn the shell on the first connection; True if it already existed. Raises
        :class:`ShellUnavailable` if it cannot be started, also in the connections that
        waited for that attempt; a later connection tries again."""
        if self.shell is not None or self.exit_status is not None:
            return True
        if self._spawning is not None:  # a concurrent first connection: share its outcome
            await self._spawning.wait()
            if self.shell is None and self.exit_status is None:
                raise ShellUnavailable
            return True
        self._spawning = attempt = trio.Event()
        try:
            argv = self.config.shell or default_shell()
            env = shell_environment(os.environ, home=self.config.home)
            env["PATH"] = os.pathsep.join((helper_directory(), env.get("PATH", os.defpath)))
            cwd = env.get("HOME")
            if cwd is not None and not await trio.Path(cwd).is_dir():
                cwd = None
            limits = ShellLimits(
                max_processes=self.config.max_processes,
                max_open_files=self.config.max_open_files,
            )
            self.shell = await spawn_shell(argv, env=env, cwd=cwd, limits=limits)
        except Exception as exc:
            log.error("the shell could not be started: %s", exc)
            raise ShellUnavailable from exc
        finally:
            self._spawning = None
            attempt.set()
        self.last_input = trio.current_time()
        log.info("shell started pid=%d argv=%s", self.shell.pid, argv[0])
        self.nursery.start_soon(self._supervise_shell, self.shell)
        if self.config.idle_timeout > 0:
            self.nursery.start_soon(self._idle_watch)
        if self.config.max_session > 0:
            self.nursery.start_soon(self._lifetime_watch, self.shell)
        return False

    async def _supervise_shell(self, shell: Shell) -> None:
        """Read output until the shell exits, then report the exit everywhere."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_output, shell)
                status = await shell.wait()
                shell.signal_session(signal.SIGHUP)  # background jobs holding the pty
                await self._drain()
                nursery.cancel_scope.cancel()
        finally:
            shell.close()
        self.exit_status = status
        log.info("shell exited status=%d reason=%s", status.status, self.exit_reason)
        self.notify()
        self.call_manager("recycle", {"reason": self.exit_reason})

    _output_done: bool = False

    async def _drain(self) -> None:
        """After the shell's exit: until the reader has read all output, as long as
        there is progress (output read, or sent to a client that is behind) at least
        every :data:`DRAIN_TIMEOUT` seconds; children holding the pty open without
        printing, or a client that stopped reading, do not hold up the exit."""
        while not self._output_done:
            progress = self._progress()
            with trio.move_on_after(DRAIN_TIMEOUT):
                while not self._output_done and self._progress() == progress:
                    await self.changed.wait()
            if self._progress() == progress:
                return

    def _progress(self) -> tuple[int, int | None]:
        att = self.attached
        return self.log.end, None if att is None else att.offset

    async def _read_output(self, shell: Shell) -> None:
        """Append the shell's output to the log, never more than :meth:`_read_room`."""
        while True:
            while (room := self._read_room()) <= 0:
                await self.changed.wait()
            data = await shell.read(room)
            if not data:
                break
            self.log.append(data)
            for request in self.downloads.scanner.feed(data):
                self.downloads.claim(request, shell.master_fd, self._offer)
            self.notify()
        self._output_done = True
        self.notify()

    def _read_room(self) -> int:
        """Bytes the reader may add to the log now: up to :data:`READ_AHEAD`, and never
        more than the log holds, past what the attached connection was sent, so what it
        has not been sent never falls out of the log (the shell blocks instead)."""
        limit = min(READ_AHEAD, self.log.capacity)
        if (att := self.attached) is None:
            return limit
        return limit - (self.log.end - max(att.offset, self.log.start))

    async def _idle_watch(self) -> None:
        timeout, warning = (
            self.config.idle_timeout,
            min(self.config.idle_warning, self.config.idle_timeout),
        )
        while self.exit_status is None and self.shell is not None:
            now = trio.current_time()
            deadline = self.last_input + timeout
            if now >= deadline:
                log.info("idle timeout after %.0f s without input", timeout)
                self.exit_reason = EXIT_REASON_IDLE
                await self.shell.hangup()
                return
            if now < deadline - warning:
                await trio.sleep_until(deadline - warning)
                continue
            if (att := self.attached) is not None:
                att.post(Idle(seconds_left=math.ceil(deadline - now)))
                self.notify()
            await trio.sleep_until(min(deadline, now + 1.0))

    async def _lifetime_watch(self, shell: Shell) -> None:
        """End the session after ``max_session`` seconds, whatever the activity."""
        await trio.sleep(self.config.max_session)
        if self.exit_status is None:
            log.info("session reached its maximum lifetime of %.0f s", self.config.max_session)
            self.exit_reason = EXIT_REASON_LIFETIME
            if (att := self.attached) is not None:
                att.post(Error(message="this session reached its maximum lifetime"))
                self.notify()
            await shell.hangup()

    def _offer(self, offer: Offer) -> bool:
        """Tell the attached page about a file the shell offers; False if none is."""
        if (att := self.attached) is None or att.phase is not Phase.ATTACHED:
            return False
        att.post(Download(id=offer.id, name=offer.name, size=offer.size))
        return True

    # --- connections ----------------------------------------------------------------------------

    def attach(self, att: Attachment) -> None:
        """Make ``att`` the attached connection; an older one is taken over. A viewer
        (``att.share``) is added beside the owner instead."""
        if att.viewer:
            self.sharing.add(att)
            self._tell_owner()
            return
        old, self.attached = self.attached, att
        if old is not None:
            old.take_over()
        if self.sharing.viewers:
            att.post(self.sharing.listing())
        self.notify()
        self.call_manager("connection", {"connected": True})

    def detach(self, att: Attachment) -> None:
        """``att`` went away: if it was still attached, nobody is now."""
        if self.sharing.remove(att):
            self._tell_owner()
        elif self.attached is att:
            self.attached = None
            self.notify()
            self.call_manager("connection", {"connected": False})

    def revoke(self, link: str) -> None:
        """The owner revoked share ``link``: its viewers are closed (4410) at once, and
        the link is refused from now on."""
        if self.sharing.revoke(link):
            log.info("share link revoked; its viewers are closed")
        self.notify()

    def resize(self, cols: int, rows: int) -> None:
        """The owner's size: the pty's, and what the viewers are told."""
        if self.shell is not None:
            self.shell.resize(cols, rows)
        if self.sharing.resize(cols, rows):
            self.notify()

    def _tell_owner(self) -> None:
        if (owner := self.attached) is not None:
            owner.post(self.sharing.listing())
        self.notify()

    # --- the manager --------------------------------------------------------------------------

    def call_manager(self, action: str, body: dict[str, Any]) -> None:
        """Best effort, in the background: tell the manager about exits and attaches."""
        if not self.config.manager_url:
            return
        self.nursery.start_soon(report, self.config, self.report_token, action, body)

    # --- shutdown -------------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Close the attached sockets with 1001 and hang up the shell."""
        async with trio.open_nursery() as nursery:  # at once: each may take 2 s
            for att in [self.attached, *self.sharing.viewers]:
                if att is not None and att.phase in (Phase.ATTACHED, Phase.FINISHING):
                    att.enter(Phase.SHUTTING_DOWN)
                    nursery.start_soon(close, att.ws, CloseCode.GOING_AWAY)
        if self.shell is not None and self.exit_status is None:
            await self.shell.hangup()
        self.downloads.close()


__all__ = ["FRAME_BYTES", "READ_AHEAD", "SPAWN_FAILED", "ShellUnavailable", "Terminal"]
