"""``webterm pty``: one shell, served over a WebSocket (what each terminal pod runs).

Theory of operation
-------------------
One :class:`Terminal` per process. The first authorised connection spawns the shell;
the shell then outlives any connection until it exits, idles out, or the server is
stopped. At most one connection is *attached*: a newer one takes over and the older
is closed with 4409.

Per attached connection two tasks run: the *input loop* (frames from the browser:
binary → pty, text → control messages) and the *pump*, which pulls output from the
terminal's :class:`~webterm.pty.session.OutputLog` at its own offset and sends the
notices (idle warnings) other tasks post to it. One task reads the pty for the whole
terminal and appends to the log, but never more than :data:`READ_AHEAD` bytes (nor the
log's capacity) past what the attached connection was sent, so a slow socket makes the
shell block instead of our memory growing or unsent output falling out of the log. A
client that acknowledges rendered bytes (``ack``) additionally keeps the unacknowledged
bytes in flight below a window that adapts to how fast it renders (:class:`Attachment`):
at most :data:`ACK_HIGH_WATER` for a fast client, down to :data:`MIN_WINDOW` for a
phone that queues output. That is what keeps a browser responsive under ``yes``. A
client that never acks is paced by TCP alone. Ctrl-C (the tty's INTR, QUIT or SUSP
character, when the line discipline flushes on it) also drops the output read ahead but
not yet sent, as the tty itself drops what it had queued: the prompt comes back after
what is already in flight, not a backlog.

HTTP: the listener peeks at each request head. ``GET /healthz`` is answered here;
``/ws`` upgrades go to trio-websocket with the peeked bytes replayed. A server that
listens on loopback only first refuses (403) a ``Host`` that could be a DNS-rebinding
attack (:mod:`webterm.hosts`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    wrap_server_stream,
)

from webterm.config import PtyConfig
from webterm.hosts import listens_on_loopback_only, origin_hosts, rebinding_safe
from webterm.keys import PublicKeys
from webterm.protocol import (
    MAX_FRAME_BYTES,
    SUBPROTOCOL,
    Ack,
    CloseCode,
    Error,
    Exit,
    Flush,
    Hello,
    Idle,
    MalformedMessage,
    Ping,
    Pong,
    Resize,
    TokenError,
    decode_client_message,
    encode_message,
    token_from_subprotocols,
)
from webterm.pty.report import ReportError, post_json
from webterm.pty.session import (
    ExitStatus,
    OutputLog,
    Shell,
    ShellLimits,
    default_shell,
    shell_environment,
    spawn_shell,
)

log = logging.getLogger("webterm.pty")

READ_AHEAD: Final = 256 * 1024
"""Bytes the pty reader may run ahead of what the attached connection has sent (less
if the scrollback is smaller: unsent output must stay in the log). Enough to keep a
fast socket busy; small enough that Ctrl-C is seen promptly."""

FRAME_BYTES: Final = 256 * 1024
"""Largest output frame. Whatever piled up while the socket was busy goes in one frame."""

ACK_HIGH_WATER: Final = 512 * 1024
"""Largest window of unacknowledged bytes in flight; a fast client never reaches it."""

MIN_WINDOW: Final = 64 * 1024
"""Smallest window: one of the page's ack batches."""

QUEUE_DELAY_TARGET: Final = 0.15
"""Seconds output may wait in the client before it is rendered: above this the window
shrinks, well below it grows. Measured as the time from sending a frame to its ack,
minus the least such time seen (the network's and an idle client's share)."""

DELAY_SAMPLE_BYTES: Final = 16 * 1024
"""One send time is remembered per this many bytes sent, to time the acks."""

HEAD_LIMIT: Final = 16 * 1024
"""Largest HTTP request head we read (same order as h11's 16 KiB cap)."""

HEAD_TIMEOUT: Final = 10.0
"""Seconds a client has to send its request head (slowloris guard)."""

HOST_REFUSED: Final = (
    b"host not allowed: this terminal server listens on loopback only and answers\n"
    b"requests for localhost or an IP address (or an allowed origin's host) only\n"
)
"""The 403 body for a request whose Host could be a DNS-rebinding attack (see
:mod:`webterm.hosts`)."""

CLOSE_TIMEOUT: Final = 2.0
"""Seconds we wait for a peer's close handshake before dropping the TCP connection."""

SHUTDOWN_GRACE: Final = 5.0
"""Seconds a SIGTERM'd server spends closing sockets (1001) and hanging up the shell."""

MANAGER_CALL_TIMEOUT: Final = 5.0
"""Seconds a best-effort call to the manager may take; the session never waits on it."""

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


Notice = Idle | Error | Flush | Pong
"""A control message another part of the server asks an attachment's pump to send."""


@dataclass(eq=False)
class Attachment:
    """One connection's view of the terminal."""

    ws: WebSocketConnection
    offset: int = 0  # next log offset to send
    sent: int = 0  # bytes of output sent on this connection
    acked: int = 0  # bytes the client says it rendered
    acking: bool = False  # the client does ack-based flow control
    superseded: bool = False  # taken over by a newer connection, or shutting down
    taken_over: bool = False  # superseded by a newer connection: it closes with 4409
    input_scope: trio.CancelScope | None = None  # its input loop, once running
    sending: trio.CancelScope | None = None  # the pump's send in progress
    cut: bool = False  # a send was cut short: the stream is broken, no close frame
    window: int = MIN_WINDOW  # unacknowledged bytes allowed in flight (slow start)
    limited: bool = False  # the window held output back since the last ack
    base_delay: float = math.inf  # least send-to-ack time seen
    sends: deque[tuple[int, float]] = field(default_factory=deque)  # (sent, when)
    notices: deque[Notice] = field(default_factory=deque)  # for the pump to send
    finishing: bool = False  # the pump is sending ``exit`` and closing: let it finish

    def post(self, notice: Notice) -> None:
        """Queue a control message for the pump, the one task that sends on this
        connection: no other task waits on its socket (the input loop goes on reading
        while a big frame is stuck), a cancellation never cuts a frame short, and a
        failed send ends the connection, not the server. A newer idle warning replaces
        a queued one."""
        if isinstance(notice, Idle):
            self.notices = deque(n for n in self.notices if not isinstance(n, Idle))
        self.notices.append(notice)

    def room(self) -> int | None:
        """Bytes that may be sent now: ``None`` for a client that does not ack (TCP
        alone paces it), 0 while the window is full. No hysteresis: room opens as soon
        as an ack arrives. Waiting for the window to drain further would stall a client
        that acks in batches whenever what it holds unacknowledged is under its batch."""
        if not self.acking:
            return None
        return max(0, self.window - (self.sent - self.acked))

    def record_send(self, now: float) -> None:
        if self.acking and (not self.sends or self.sent - self.sends[-1][0] >= DELAY_SAMPLE_BYTES):
            self.sends.append((self.sent, now))

    def record_ack(self, nbytes: int, now: float) -> None:
        """Count an ack and adapt the window to the client's rendering delay."""
        self.acking = True
        self.acked = min(self.sent, self.acked + nbytes)
        sent_at = None
        while self.sends and self.sends[0][0] <= self.acked:
            sent_at = self.sends.popleft()[1]
        if sent_at is None:
            return
        delay = now - sent_at
        self.base_delay = min(self.base_delay, delay)
        queued = delay - self.base_delay
        if queued > QUEUE_DELAY_TARGET:
            self.window = max(MIN_WINDOW, int(self.window * 0.7))
        elif queued < QUEUE_DELAY_TARGET / 2 and self.limited:
            # grow only when the window was what held output back (not while idle)
            self.window = min(ACK_HIGH_WATER, self.window * 3 // 2)
        self.limited = False


@dataclass(eq=False)
class Terminal:
    """The state of this terminal server; see the module docstring."""

    config: PtyConfig
    nursery: trio.Nursery
    keys: PublicKeys
    log: OutputLog = field(init=False)
    shell: Shell | None = None
    exit_status: ExitStatus | None = None
    exit_reason: str = EXIT_REASON_EXIT
    attached: Attachment | None = None
    last_input: float = 0.0
    report_token: str | None = None  # the latest token a browser opened us with
    _changed: trio.Event = field(default_factory=trio.Event)
    _spawning: trio.Event | None = None  # set when the current spawn attempt is over

    def __post_init__(self) -> None:
        self.log = OutputLog(self.config.scrollback_bytes)

    # --- change notification ------------------------------------------------------------

    def _notify(self) -> None:
        """Wake every task waiting for output, progress, acks, exit or attach changes."""
        self._changed.set()
        self._changed = trio.Event()

    # --- the shell ------------------------------------------------------------------------

    async def _ensure_shell(self) -> bool:
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
        self._notify()
        self._call_manager("recycle", {"reason": self.exit_reason})

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
                    await self._changed.wait()
            if self._progress() == progress:
                return

    def _progress(self) -> tuple[int, int | None]:
        att = self.attached
        return self.log.end, None if att is None else att.offset

    async def _read_output(self, shell: Shell) -> None:
        """Append the shell's output to the log, never more than :meth:`_read_room`."""
        while True:
            while (room := self._read_room()) <= 0:
                await self._changed.wait()
            data = await shell.read(room)
            if not data:
                break
            self.log.append(data)
            self._notify()
        self._output_done = True
        self._notify()

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
                self._notify()
            await trio.sleep_until(min(deadline, now + 1.0))

    async def _lifetime_watch(self, shell: Shell) -> None:
        """End the session after ``max_session`` seconds, whatever the activity."""
        await trio.sleep(self.config.max_session)
        if self.exit_status is None:
            log.info("session reached its maximum lifetime of %.0f s", self.config.max_session)
            self.exit_reason = EXIT_REASON_LIFETIME
            if (att := self.attached) is not None:
                att.post(Error(message="this session reached its maximum lifetime"))
                self._notify()
            await shell.hangup()

    # --- connections ------------------------------------------------------------------------

    async def serve_connection(self, ws: WebSocketConnection) -> bool:
        """Attach ``ws`` until either side goes away. True if its stream is broken (a
        send was cut short): then it must be dropped, not closed with a close frame."""
        try:
            reattached = await self._ensure_shell()
        except ShellUnavailable:
            with contextlib.suppress(ConnectionClosed):
                await ws.send_message(encode_message(Error(message=SPAWN_FAILED)))
            await _close(ws, CloseCode.INTERNAL_ERROR)
            return False
        offset, restore = self.log.replay()
        att = Attachment(ws, offset=offset)
        old, self.attached = self.attached, att
        if old is not None:
            # Its input loop ends now, also a write stuck on a full pty: one writer to the
            # shell at a time. Its pump finishes the frame it is sending (a frame cut short
            # and the close after it would read as a broken connection, which a page
            # answers by reconnecting), within CLOSE_TIMEOUT, and it closes with 4409.
            old.superseded = old.taken_over = True
            if old.input_scope is not None:
                old.input_scope.cancel()
            if old.sending is not None:
                old.sending.deadline = trio.current_time() + CLOSE_TIMEOUT
        self._notify()
        self._call_manager("connection", {"connected": True})
        try:
            await ws.send_message(
                encode_message(Hello(terminal=self.config.name, reattached=reattached))
            )
            if restore:  # the modes in force where the replay starts, then the replay
                att.sent += len(restore)
                att.record_send(trio.current_time())
                await ws.send_message(restore)
            if reattached and self.log.modes().alternate_screen and self.shell is not None:
                self.shell.redraw()  # a full-screen program repaints what the replay lacks
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, att, nursery.cancel_scope)
                with trio.CancelScope() as att.input_scope:
                    if not att.superseded:  # else taken over while it said hello
                        await self._input_loop(att)
                if att.finishing or att.superseded:
                    self._notify()  # the pump ends on its own: closing, or its last frame
                else:
                    nursery.cancel_scope.cancel()
            if att.taken_over and not att.cut:
                await _close(ws, CloseCode.SUPERSEDED)
        except ConnectionClosed:
            pass
        finally:
            if self.attached is att:
                self.attached = None
                self._notify()
                self._call_manager("connection", {"connected": False})
        return att.cut

    async def _pump(self, att: Attachment, done: trio.CancelScope) -> None:
        """Send output from the log to ``att`` at the pace the client allows, and the
        notices posted to it; after the shell's exit, :meth:`_finish` the session."""
        try:
            while not att.superseded:
                changed = self._changed
                if att.notices:
                    if not await _send_whole(att, encode_message(att.notices.popleft())):
                        return
                    continue
                room = att.room()
                att.limited |= room == 0
                if room != 0 and att.offset < self.log.end:
                    # with acks, never far past the window
                    limit = FRAME_BYTES if room is None else max(4096, min(FRAME_BYTES, room))
                    start, chunk = self.log.read(att.offset, limit)
                    att.offset = start + len(chunk)
                    att.sent += len(chunk)
                    att.record_send(trio.current_time())
                    self._notify()  # the reader may be waiting for room
                    if not await _send_whole(att, chunk):
                        return
                    continue
                if self.exit_status is not None and att.offset >= self.log.end:
                    await self._finish(att, self.exit_status)
                    done.cancel()
                    return
                await changed.wait()
        except ConnectionClosed:
            done.cancel()

    async def _finish(self, att: Attachment, status: ExitStatus) -> None:
        """All output is sent: ``exit``, then close 1000, once an acking client has
        rendered what it was sent. Till then its socket stays open (the input loop keeps
        reading acks): a socket closed under the acks it still sends would be reset,
        and a reset drops the output it has not read yet."""
        att.finishing = True
        if not await _send_whole(att, encode_message(Exit(status=status.status))):
            return  # cut short by a takeover: the stream is broken, no close frame
        while att.acking and att.acked < att.sent and att.ws.closed is None:
            acked = att.acked
            with trio.move_on_after(CLOSE_TIMEOUT):  # no ack for that long: it is gone
                while att.acked == acked and att.ws.closed is None:
                    await self._changed.wait()
            if att.acked == acked:
                break
        await _close(att.ws, CloseCode.NORMAL)

    async def _input_loop(self, att: Attachment) -> None:
        """Frames from the client until it goes away (returns on any close)."""
        try:
            while True:
                message = await att.ws.get_message()
                if att.superseded:
                    # Another connection took over (and cancelled these tasks; this
                    # message arrived just before): what this one still had buffered must
                    # not reach the shell after, or in between, the newer one's input.
                    return
                if isinstance(message, bytes):
                    if self.shell is not None and self.exit_status is None:
                        self.last_input = trio.current_time()
                        interrupts = self.shell.interrupts(message)
                        await self.shell.write(message)
                        if interrupts:
                            # Drop the backlog, here and (what was sent) in the client. After
                            # the write: the tty flushes what it holds as it reads the ^C,
                            # so output read from now on is what comes after it.
                            att.offset = max(att.offset, self.log.end)
                            if att.acking:
                                att.post(Flush())
                            self._notify()
                else:
                    await self._control(att, message)
        except ConnectionClosed:
            return

    async def _control(self, att: Attachment, text: str) -> None:
        try:
            control = decode_client_message(text)
        except MalformedMessage as exc:
            att.post(Error(message=str(exc)))
            self._notify()
            return
        if isinstance(control, Ack):
            att.record_ack(control.bytes, trio.current_time())
            self._notify()
        elif isinstance(control, Resize):
            size = control.clamped()
            if self.shell is not None:
                self.shell.resize(size.cols, size.rows)
        elif isinstance(control, Ping):
            att.post(Pong())
            self._notify()

    # --- the manager --------------------------------------------------------------------------

    def _call_manager(self, action: str, body: dict[str, Any]) -> None:
        """Best effort, in the background: tell the manager about exits and attaches."""
        if not self.config.manager_url:
            return
        self.nursery.start_soon(self._post_manager, action, body)

    async def _post_manager(self, action: str, body: dict[str, Any]) -> None:
        assert self.config.manager_url
        # This server can sign nothing: it reports with the latest token a browser
        # opened it with (the manager accepts it past its expiry, for this terminal only).
        token = self.report_token
        if token is None:
            log.warning("no token to report %s with (no client connected yet)", action)
            return
        url = f"{self.config.manager_url.rstrip('/')}/v1/terminals/{self.config.name}/{action}"
        attempts = 3 if action == "recycle" else 1
        for attempt in range(attempts):
            with trio.move_on_after(MANAGER_CALL_TIMEOUT):
                try:
                    status = await post_json(url, body, {"Authorization": f"Bearer {token}"})
                    if status < 500:
                        if status >= 400:
                            log.warning("manager refused %s: %d", action, status)
                        return
                except ReportError as exc:
                    log.warning("manager call %s failed: %s", action, exc)
            await trio.sleep(0.5 * 2**attempt)

    # --- shutdown -------------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Close the attached socket with 1001 and hang up the shell."""
        att = self.attached
        if att is not None:
            att.superseded = True
            await _close(att.ws, CloseCode.GOING_AWAY)
        if self.shell is not None and self.exit_status is None:
            await self.shell.hangup()


async def _send_whole(att: Attachment, message: str | bytes) -> bool:
    """Send ``message`` on ``att`` unless a takeover's deadline (``att.sending``) cuts it
    short: then the stream is broken (``att.cut``) and False is returned."""
    scope = att.sending = trio.CancelScope()
    if att.taken_over:
        scope.deadline = trio.current_time() + CLOSE_TIMEOUT
    try:
        with scope:
            await att.ws.send_message(message)
    finally:
        att.sending = None
    att.cut = scope.cancelled_caught
    return not att.cut


async def _close(ws: WebSocketConnection, code: int) -> None:
    with trio.move_on_after(CLOSE_TIMEOUT):
        await ws.aclose(code)
    if ws.closed is None:  # the peer never answered: drop the TCP connection
        with trio.CancelScope() as scope:
            scope.cancel()
            await ws.aclose(code)


# --- HTTP: peek, health, upgrade ------------------------------------------------------------------


class ReplayStream(trio.abc.Stream):
    """A stream that first yields ``prefix`` (bytes we already read), then ``stream``."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            if max_bytes is None:
                data, self._prefix = self._prefix, b""
            else:
                data, self._prefix = self._prefix[:max_bytes], self._prefix[max_bytes:]
            await trio.lowlevel.checkpoint()
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        if isinstance(self._stream, trio.abc.HalfCloseableStream):
            await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    path: str
    headers: dict[str, str]

    @classmethod
    def parse(cls, head: bytes) -> RequestHead:
        lines = head.split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise ValueError("not an HTTP/1.x request line")
        headers = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ValueError("malformed header line")
            headers[name.strip().lower()] = value.strip()
        return cls(parts[0], parts[1].split("?", 1)[0], headers)


async def _read_head(stream: trio.abc.Stream) -> bytes:
    buffer = bytearray()
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > HEAD_LIMIT:
            raise ValueError("request head too large")
        data = await stream.receive_some(4096)
        if not data:
            raise ValueError("connection closed before the request head ended")
        buffer += data
    return bytes(buffer)


def _http_response(
    status: int, reason: str, body: bytes, content_type: str = "text/plain"
) -> bytes:
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n"
    ).encode() + body


class TerminalServer:
    """Routes raw TCP connections: health checks, WebSocket upgrades, 404 for the rest."""

    def __init__(self, terminal: Terminal) -> None:
        self.terminal = terminal
        self.config = terminal.config
        self.guard_host = listens_on_loopback_only(self.config.host)
        self.allowed_hosts = origin_hosts(self.config.allowed_origins)

    async def handle(self, stream: trio.abc.Stream) -> None:
        """One TCP connection. Never raises: a broken peer must not stop the server."""
        try:
            await self._handle(stream)
        except Exception:
            log.exception("connection handler failed")
        finally:
            await trio.aclose_forcefully(stream)

    async def _handle(self, stream: trio.abc.Stream) -> None:
        try:
            with trio.fail_after(HEAD_TIMEOUT):
                head = await _read_head(stream)
            request = RequestHead.parse(head.split(b"\r\n\r\n", 1)[0])
        except (ValueError, trio.TooSlowError, trio.BrokenResourceError):
            await _respond(stream, 400, "Bad Request", b"bad request\n")
            return
        if self.guard_host and not rebinding_safe(request.headers.get("host"), self.allowed_hosts):
            log.info("refused a request for host %r", request.headers.get("host"))
            await _respond(stream, 403, "Forbidden", HOST_REFUSED)
            return
        upgrade = request.headers.get("upgrade", "").lower() == "websocket"
        if request.path == "/healthz" and not upgrade:
            await _respond(stream, 200, "OK", b"ok\n")
        elif request.path == "/ws" and upgrade:
            await self._websocket(ReplayStream(stream, head))
        else:
            await _respond(stream, 404, "Not Found", b"not found\n")

    async def _websocket(self, stream: trio.abc.Stream) -> None:
        async with trio.open_nursery() as nursery:
            # the head is already here: a handshake that takes longer was rejected by
            # wsproto (answered 400), and wrap_server_stream would wait for ever
            request: WebSocketRequest | None = None
            with trio.move_on_after(HEAD_TIMEOUT):
                request = await wrap_server_stream(
                    nursery, stream, max_message_size=MAX_FRAME_BYTES, receive_buffer_size=65536
                )
            if request is None:
                nursery.cancel_scope.cancel()
                return
            refusal = await self._refusal(request)
            if refusal is not None:
                status, text = refusal
                log.info("refused connection from %s: %s", request.remote, text)
                await request.reject(status, body=text.encode() + b"\n")
                nursery.cancel_scope.cancel()
                return
            ws = await request.accept(subprotocol=SUBPROTOCOL)
            broken = False
            try:
                broken = await self.terminal.serve_connection(ws)
            finally:
                if not broken:  # else a frame was cut short: no close frame after it
                    with trio.CancelScope(shield=True):
                        await _close(ws, CloseCode.NORMAL if ws.closed else CloseCode.GOING_AWAY)
            nursery.cancel_scope.cancel()
        if broken:
            await stream.aclose()

    async def _refusal(self, request: WebSocketRequest) -> tuple[int, str] | None:
        """``(status, reason)`` if this upgrade must be refused; tokens are never logged."""
        if self.config.allowed_origins:
            origin = next(
                (v.decode("latin-1") for k, v in request.headers if k.lower() == b"origin"), None
            )
            if origin is not None and origin not in self.config.allowed_origins:
                return 403, "origin not allowed"
        token = token_from_subprotocols(request.proposed_subprotocols)
        if token is None:
            return 401, "missing token (offer subprotocols webterm.v1 and webterm.token.<token>)"
        try:
            await self.terminal.keys.verify(
                token, terminal=self.config.name, instance=self.config.instance, now=time.time()
            )
        except TokenError as exc:
            return 403 if "another" in str(exc) else 401, str(exc)
        self.terminal.report_token = token
        return None


async def _respond(stream: trio.abc.Stream, status: int, reason: str, body: bytes) -> None:
    try:
        await stream.send_all(_http_response(status, reason, body))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def _service_nursery(
    scope: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[trio.Nursery] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A nursery shielded from outside cancellation by ``scope``: :func:`serve`
    decides when it stops, after the orderly part of the shutdown has run."""
    with scope:
        async with trio.open_nursery() as nursery:
            task_status.started(nursery)
            await trio.sleep_forever()


async def serve(
    config: PtyConfig, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve one terminal until cancelled; then close sockets with 1001, hang up the
    shell, and return. Reports the bound port through ``task_status``."""
    keys = PublicKeys(config.keys)
    await keys.start()
    listeners = await trio.open_tcp_listeners(config.port, host=config.host or None)
    sockname = listeners[0].socket.getsockname()
    host, port = sockname[0], sockname[1]
    service_scope = trio.CancelScope(shield=True)
    async with trio.open_nursery() as root:
        service: trio.Nursery = await root.start(_service_nursery, service_scope)
        terminal = Terminal(config=config, nursery=service, keys=keys)
        server = TerminalServer(terminal)
        await service.start(
            partial(trio.serve_listeners, server.handle, listeners, handler_nursery=service)
        )
        print(f"webterm-pty listening on {host}:{port}", flush=True)
        sys.stdout.flush()
        log.info("terminal %s listening on %s:%d", config.name, host, port)
        task_status.started(port)
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_GRACE):
                await terminal.shutdown()
            service_scope.cancel()
