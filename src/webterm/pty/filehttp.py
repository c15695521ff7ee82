"""The terminal server's file endpoints: ``PUT /files/{name}``, ``GET /files/download/{id}``.

Both need ``Authorization: Bearer <token>``: a token that would open this terminal's
WebSocket (this terminal, this instance, unexpired; :meth:`PublicKeys.verify`), so no
other terminal's token reads or writes a file here.

``PUT /files/{name}`` (the name percent-encoded, sanitised by
:func:`webterm.pty.files.sanitize_name`) streams its body into the current directory of
the tty's foreground process (the shell, at its prompt) with
:class:`~webterm.pty.files.UploadWriter`: at most ``--max-upload`` bytes and never more
than the filesystem has free (nor than ``--storage-limit`` allows); ``201 {"name": NAME, "size": BYTES}`` with the name the
file got (``name (1).ext`` when ``name.ext`` exists). Refused: 400 (a bad name), 401/403
(the token), 409 (no shell yet, or no free name), 413 (over the limit: nothing is
written), 403 (the directory is not writable), 507 (no space).

``GET /files/download/{id}`` answers the file the shell offered under that one-time id
(:mod:`webterm.pty.downloads`), as ``application/octet-stream`` with its name in
``Content-Disposition``; 404 for an unknown, used or expired id.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING, Final
from urllib.parse import quote, unquote

import h11
import trio

from webterm.protocol import TokenError
from webterm.pty.files import FileError, UploadWriter, open_cwd, process_owner, storage_quota
from webterm.pty.http import BadRequest, RequestHead, json_answer, read_body, refusal_answer
from webterm.service.errors import Refusal

if TYPE_CHECKING:
    from webterm.pty.terminal import Terminal

log = logging.getLogger("webterm.pty.files")

UPLOAD_PREFIX: Final = "/files/"
DOWNLOAD_PREFIX: Final = "/files/download/"

BODY_IDLE_TIMEOUT: Final = 60.0
"""Seconds an upload may send nothing before it is given up (and its file removed)."""

LINGER: Final = 2.0
"""Seconds a refused upload's remaining body is read and dropped after the answer, so
the client reads the answer instead of a connection reset."""

CHUNK: Final = 64 * 1024


def is_files_request(request: RequestHead) -> bool:
    return request.path.startswith(UPLOAD_PREFIX) and not request.upgrade


async def serve_files(terminal: Terminal, stream: trio.abc.Stream, request: RequestHead) -> None:
    """Answer one file request on ``stream`` (the caller closes it)."""
    try:
        await _authorise(terminal, request)
        if request.path.startswith(DOWNLOAD_PREFIX) and request.method in ("GET", "HEAD"):
            await _download(terminal, stream, request)
        elif request.method == "PUT" and not request.path.startswith(DOWNLOAD_PREFIX):
            body = await _upload(terminal, stream, request)
            await stream.send_all(json_answer(201, body))
        else:
            raise Refusal(405, "use PUT /files/{name} or GET /files/download/{id}")
    except FileError as exc:
        await _refuse(stream, Refusal(exc.error_status_hint, str(exc)))
    except Refusal as refusal:
        await _refuse(stream, refusal)
    except (BadRequest, trio.TooSlowError):
        log.info("an upload was cut short; its file is removed")


async def _refuse(stream: trio.abc.Stream, refusal: Refusal) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(refusal_answer(refusal))
        with trio.move_on_after(LINGER):  # drop what the client still sends
            while await stream.receive_some(CHUNK):
                pass


async def _authorise(terminal: Terminal, request: RequestHead) -> None:
    config = terminal.config
    origin = request.headers.get("origin")
    if config.allowed_origins and origin is not None and origin not in config.allowed_origins:
        raise Refusal(403, "origin not allowed")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refusal(401, "missing token (send Authorization: Bearer <token>)")
    try:
        await terminal.keys.verify(
            token.strip(), terminal=config.name, instance=config.instance, now=time.time()
        )
    except TokenError as exc:
        raise Refusal(exc.error_status_hint, str(exc)) from None


def _shell_pid(terminal: Terminal) -> int:
    """The foreground process of the tty (the shell at its prompt), else the shell."""
    shell = terminal.shell
    if shell is None or terminal.exit_status is not None:
        raise Refusal(409, "the terminal has no shell running")
    try:
        return os.tcgetpgrp(shell.master_fd)
    except OSError:
        return shell.pid


async def _upload(
    terminal: Terminal, stream: trio.abc.Stream, request: RequestHead
) -> dict[str, object]:
    try:
        name = unquote(request.path[len(UPLOAD_PREFIX) :], errors="strict")
    except UnicodeDecodeError:
        raise Refusal(400, "the file name is not UTF-8") from None
    if terminal.config.max_upload <= 0:
        raise Refusal(403, "uploads are turned off on this terminal (--max-upload 0)")
    length = request.headers.get("content-length")
    expected = int(length) if length is not None and length.isdigit() else None
    pid = _shell_pid(terminal)
    dir_fd = open_cwd(pid)
    try:
        owner = process_owner(pid)
        quota = await storage_quota(dir_fd, terminal.config.storage_limits)
        limit = terminal.config.max_upload
        with UploadWriter(dir_fd, name, limit=limit, owner=owner, quota=quota) as writer:
            writer.open(expected)
            body = read_body(stream, request, CHUNK)
            while True:
                with trio.fail_after(BODY_IDLE_TIMEOUT):
                    chunk = await anext(body, None)
                if chunk is None:
                    break
                writer.write(chunk)
            if expected is not None and writer.written != expected:
                raise Refusal(400, "the body is not as long as its Content-Length")
            final = await writer.commit()
    finally:
        os.close(dir_fd)
    log.info("upload of %d bytes stored", writer.written)
    return {"name": final, "size": writer.written}


async def _download(terminal: Terminal, stream: trio.abc.Stream, request: RequestHead) -> None:
    offer = terminal.downloads.take(request.path[len(DOWNLOAD_PREFIX) :])
    if offer is None:
        raise Refusal(404, "no such download (each is fetched once, within minutes)")
    try:
        size = os.fstat(offer.fd).st_size
        ascii_name = offer.name.encode("ascii", "replace").decode().replace('"', "_")
        ascii_name = ascii_name.replace("?", "_").replace("\\", "_")
        disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(offer.name)}"
        headers = [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(size)),
            ("Content-Disposition", disposition),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Connection", "close"),
        ]
        head = h11.Connection(h11.SERVER).send(
            h11.Response(status_code=200, headers=headers, reason=b"OK")
        )
        await stream.send_all(head)
        if request.method == "HEAD":
            return
        sent = 0
        while sent < size:
            data = os.pread(offer.fd, min(CHUNK, size - sent), sent)
            if not data:
                break  # the file shrank: the client sees a short body
            await stream.send_all(data)
            sent += len(data)
    finally:
        os.close(offer.fd)


__all__ = ["is_files_request", "serve_files"]
