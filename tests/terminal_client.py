"""The one test client that types a command into a terminal and reads until a marker
appears, for every test that needs a working shell behind some URL."""

from __future__ import annotations

import json

import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from webterm.protocol import subprotocols_for

READ_TIMEOUT = 20.0
"""Seconds a marker may take to appear (a pod's shell on a busy machine)."""


async def read_until(
    ws: WebSocketConnection, marker: bytes
) -> tuple[bytes, list[dict[str, object]]]:
    """The terminal's output up to (at least) ``marker``, and the control messages
    that came with it."""
    output, controls = b"", []
    with trio.fail_after(READ_TIMEOUT):
        while marker not in output:
            message = await ws.get_message()
            if isinstance(message, bytes):
                output += message
            else:
                controls.append(json.loads(message))
    return output, controls


async def run_until(ws: WebSocketConnection, command: str, marker: str) -> str:
    """Type ``command`` and Enter; the output (decoded) up to ``marker``."""
    await ws.send_message(command.encode() + b"\n")
    output, _ = await read_until(ws, marker.encode())
    return output.decode(errors="replace")


async def run_in_terminal(
    url: str, token: str, command: str, marker: str, *, origin: str | None = None
) -> str:
    """Open the terminal WebSocket at ``url`` with ``token`` and :func:`run_until`."""
    headers = [(b"origin", origin.encode())] if origin else []
    async with open_websocket_url(
        url, subprotocols=subprotocols_for(token), extra_headers=headers
    ) as ws:
        return await run_until(ws, command, marker)
