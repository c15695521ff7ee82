"""Output frames written straight to the socket: one ``writev`` per frame, no copies.

trio-websocket frames a message with wsproto, which copies the payload several times
(header + payload concatenations, ``bytes()`` of a ``bytearray``) before trio sends it
in a loop of ``send`` calls. For the terminal's output, the one message type that
carries volume, :func:`send_binary` writes the frame itself: a server's frames are not
masked (RFC 6455 5.1), so a frame is a 2-10 byte header followed by the payload as it
is, and the header and the log's chunks go to the kernel in one ``writev`` (a vector
write) without being joined.

Everything else (the handshake, control messages, pings, the close handshake, all of
reading) stays with trio-websocket. The frame is written under the connection's own
send lock, so it never interleaves with a frame trio-websocket sends (a pong, a close);
and only while wsproto's state is OPEN, else (and where the connection's stream is not
a TCP socket) it falls back to :meth:`~trio_websocket.WebSocketConnection.send_message`,
which raises what it would have raised.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from typing import Final

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection
from wsproto.connection import ConnectionState

OPCODE_BINARY: Final = 0x2
FIN: Final = 0x80
MAX_BUFFERS: Final = 512
"""Buffers per ``writev``, well under the kernel's IOV_MAX (1024)."""

Buffer = bytes | bytearray | memoryview


def binary_header(length: int) -> bytes:
    """The header of an unmasked, final binary frame of ``length`` payload bytes."""
    if length < 126:
        return bytes((FIN | OPCODE_BINARY, length))
    if length < 1 << 16:
        return struct.pack("!BBH", FIN | OPCODE_BINARY, 126, length)
    return struct.pack("!BBQ", FIN | OPCODE_BINARY, 127, length)


def raw_socket(ws: WebSocketConnection) -> trio.socket.SocketType | None:
    """The TCP socket under ``ws``, if its stream is one (through wrappers that expose
    ``socket``, such as :class:`webterm.pty.http.ReplayStream`), else None."""
    sock = getattr(getattr(ws, "_stream", None), "socket", None)
    return sock if isinstance(sock, trio.socket.SocketType) else None


async def send_binary(ws: WebSocketConnection, payload: Sequence[Buffer]) -> None:
    """Send the concatenation of ``payload`` as one binary message on ``ws``. Raises
    :class:`~trio_websocket.ConnectionClosed` as ``send_message`` does; a cancellation
    may cut the frame short (the stream is then broken, as with ``send_message``)."""
    sock = raw_socket(ws)
    lock: trio.StrictFIFOLock | None = getattr(ws, "_stream_lock", None)
    proto = getattr(ws, "_wsproto", None)
    if sock is None or lock is None or proto is None:
        await ws.send_message(b"".join(payload))
        return
    try:  # the usual case: the lock is free, take it without a checkpoint
        lock.acquire_nowait()
    except trio.WouldBlock:  # trio-websocket is sending (a pong, a close): wait our turn
        await lock.acquire()
    try:
        sent = await _send_locked(ws, sock, payload)
    finally:
        lock.release()
    if not sent:  # outside the lock: send_message takes it itself
        await ws.send_message(b"".join(payload))


async def _send_locked(
    ws: WebSocketConnection, sock: trio.socket.SocketType, payload: Sequence[Buffer]
) -> bool:
    """Write the frame, holding the send lock; False if wsproto's state does not allow
    a data frame now (the caller falls back to ``send_message``)."""
    proto = ws._wsproto
    if proto.state is not ConnectionState.OPEN or ws.closed is not None:
        return False
    buffers: list[Buffer] = [binary_header(sum(len(part) for part in payload)), *payload]
    try:
        await _write_all(sock, buffers)
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
        await ws._abort_web_socket()  # as trio-websocket does on a broken stream
        raise ConnectionClosed(ws.closed) from None
    return True


async def _write_all(sock: trio.socket.SocketType, buffers: list[Buffer]) -> None:
    """Write every byte of ``buffers`` with ``writev`` on the socket's (non-blocking)
    descriptor, usually in one call. Not a checkpoint while the socket takes the
    bytes: the pump that calls this waits for output between frames anyway, and a
    takeover's deadline is meant to let a frame that is going out finish. Waits (a
    checkpoint, where a cancellation cuts the frame short) while the socket is full."""
    fd = sock.fileno()
    while True:
        try:
            sent = os.writev(fd, buffers[:MAX_BUFFERS])
        except BlockingIOError:
            sent = 0
        done = 0
        while done < len(buffers) and sent >= len(buffers[done]):
            sent -= len(buffers[done])
            done += 1
        del buffers[:done]
        if not buffers:
            return
        if sent:
            buffers[0] = memoryview(buffers[0])[sent:]
        await trio.lowlevel.wait_writable(sock)


__all__ = ["binary_header", "raw_socket", "send_binary"]
