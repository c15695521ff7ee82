"""``webterm pty``: one shell, served over a WebSocket (what each terminal pod runs).

Theory of operation
-------------------
One :class:`~webterm.pty.terminal.Terminal` per process. The first authorised
connection spawns the shell; the shell then outlives any connection until it exits,
idles out, or the server is stopped. At most one connection is *attached*: a newer one
takes over and the older is closed with 4409. A share link's token attaches a viewer
beside it instead (:mod:`webterm.pty.sharing`), unless its owner revoked the link (403).

Per attached connection two tasks run (:mod:`webterm.pty.connection`): the *input
loop* (frames from the browser: binary → pty, text → control messages) and the *pump*,
which pulls output from the terminal's :class:`~webterm.pty.session.OutputLog` at its
own offset and sends the notices (idle warnings) other tasks post to it. One task reads
the pty for the whole terminal and appends to the log, but never more than
:data:`~webterm.pty.terminal.READ_AHEAD` bytes (nor the log's capacity) past what the
attached connection was sent, so a slow socket makes the shell block instead of our
memory growing or unsent output falling out of the log. A client that acknowledges
rendered bytes (``ack``) additionally keeps the unacknowledged bytes in flight below a
window that adapts to how fast it renders (:mod:`webterm.pty.window`): at most 512 KiB
for a fast client, down to 64 KiB for a phone that queues output. That is what keeps a
browser responsive under ``yes``. A client that never acks is paced by TCP alone.
Ctrl-C (the tty's INTR, QUIT or SUSP character, when the line discipline flushes on
it) also drops the output read ahead but not yet sent, as the tty itself drops what it
had queued: the prompt comes back after what is already in flight, not a backlog.

HTTP (this module): the listener reads each request head (with h11,
:mod:`webterm.pty.http`). ``GET /healthz`` is answered here; ``/ws`` upgrades go to
trio-websocket with the bytes read replayed; ``/files/...`` (uploads into the shell's
directory, downloads it offered) to :mod:`webterm.pty.filehttp`. A server that listens on loopback only
first refuses (403) a ``Host`` that could be a DNS-rebinding attack
(:mod:`webterm.service.hostguard`). Every refusal is a
:class:`~webterm.service.errors.Refusal`, answered with the services' one JSON error
body.
"""

from __future__ import annotations

import logging
import sys
import time
from functools import partial
from typing import Final

import trio
from trio_websocket import WebSocketRequest, wrap_server_stream

from webterm.config import PtyConfig
from webterm.keys import PublicKeys
from webterm.protocol import (
    MAX_FRAME_BYTES,
    SUBPROTOCOL,
    CloseCode,
    ShareClaims,
    TokenClaims,
    TokenError,
    token_from_subprotocols,
)
from webterm.pty import listening_line
from webterm.pty.attachment import close
from webterm.pty.connection import serve_connection
from webterm.pty.filehttp import is_files_request, serve_files
from webterm.pty.http import (
    HEAD_TIMEOUT,
    BadRequest,
    ReplayStream,
    json_answer,
    read_head,
    refusal_answer,
)
from webterm.pty.terminal import Terminal
from webterm.service.errors import Refusal, encode_json, error_body
from webterm.service.hostguard import WRONG_HOST, HostGuard
from webterm.service.status import HEALTHY

log = logging.getLogger("webterm.pty")

SHUTDOWN_GRACE: Final = 5.0
"""Seconds a SIGTERM'd server spends closing sockets (1001) and hanging up the shell."""


class TerminalServer:
    """Routes raw TCP connections: health checks, WebSocket upgrades, 404 for the rest."""

    def __init__(self, terminal: Terminal) -> None:
        self.terminal = terminal
        self.config = terminal.config
        self.guard = HostGuard(self.config.host, self.config.allowed_origins)

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
                request = await read_head(stream)
        except (BadRequest, trio.TooSlowError, trio.BrokenResourceError):
            await _respond(stream, refusal_answer(Refusal(400, "bad request")))
            return
        if not self.guard.allows_host(request.headers.get("host")):
            log.info("refused a request for host %r", request.headers.get("host"))
            await _respond(stream, refusal_answer(Refusal(403, WRONG_HOST)))
            return
        if request.path == "/healthz" and not request.upgrade:
            await _respond(stream, json_answer(200, HEALTHY))
        elif request.path == "/ws" and request.upgrade:
            await self._websocket(ReplayStream(stream, request.received))
        elif is_files_request(request):
            await serve_files(self.terminal, stream, request)
        else:
            await _respond(stream, refusal_answer(Refusal(404, "not found")))

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
            admitted = await self._admit(request)
            if isinstance(admitted, Refusal):
                refusal = admitted
                log.info("refused connection from %s: %s", request.remote, refusal.message)
                await request.reject(
                    refusal.error_status_hint,
                    extra_headers=[(b"content-type", b"application/json")],
                    body=encode_json(error_body(refusal.message)),
                )
                nursery.cancel_scope.cancel()
                return
            ws = await request.accept(subprotocol=SUBPROTOCOL)
            broken = False
            try:
                share = admitted if isinstance(admitted, ShareClaims) else None
                broken = await serve_connection(self.terminal, ws, share)
            finally:
                if not broken:  # else a frame was cut short: no close frame after it
                    with trio.CancelScope(shield=True):
                        await close(ws, CloseCode.NORMAL if ws.closed else CloseCode.GOING_AWAY)
            nursery.cancel_scope.cancel()
        if broken:
            await stream.aclose()

    async def _admit(self, request: WebSocketRequest) -> Refusal | TokenClaims | ShareClaims:
        """Why this upgrade must be refused, if it must, else its token's claims (the
        owner's, or a share link's); tokens are never logged."""
        if self.config.allowed_origins:
            origin = next(
                (v.decode("latin-1") for k, v in request.headers if k.lower() == b"origin"), None
            )
            if origin is not None and origin not in self.config.allowed_origins:
                return Refusal(403, "origin not allowed")
        token = token_from_subprotocols(request.proposed_subprotocols)
        if token is None:
            return Refusal(
                401, "missing token (offer subprotocols webterm.v1 and webterm.token.<token>)"
            )
        try:
            claims = await self.terminal.keys.verify_any(
                token, terminal=self.config.name, instance=self.config.instance, now=time.time()
            )
        except TokenError as exc:
            return Refusal(exc.error_status_hint, str(exc))
        if isinstance(claims, ShareClaims):
            if claims.link in self.terminal.sharing.revoked:
                return Refusal(403, "this share link was revoked")
            if self.terminal.sharing.full:
                return Refusal(503, "this terminal has as many viewers as it serves")
            return claims
        self.terminal.report_token = token  # what our reports to the manager carry
        return claims


async def _respond(stream: trio.abc.Stream, data: bytes) -> None:
    try:
        await stream.send_all(data)
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
        print(listening_line(host, port), flush=True)
        sys.stdout.flush()
        log.info("terminal %s listening on %s:%d", config.name, host, port)
        task_status.started(port)
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_GRACE):
                await terminal.shutdown()
            service_scope.cancel()
