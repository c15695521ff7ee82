"""Test helpers: the webserver on a real port with the manager stood in, and a real
trio-websocket *terminal* stand-in behind the proxy.

The manager stand-in is an ``httpx.MockTransport`` over a :class:`FakeManager`, whose
answers a test can change (busy, rate-limited, down, garbage) and whose requests it can
inspect. The terminal stand-in records every connection it accepts (so a test can
prove that a refused browser never reached it) and runs a per-test behaviour.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    WebSocketServer,
    open_websocket_url,
    serve_websocket,
)

from webterm.config import WebserverConfig
from webterm.protocol import SUBPROTOCOL, SigningKey, client_hash, subprotocols_for
from webterm.webserver.app import serve

from ..credentials import AUTH, CREDENTIAL, KEY, KEY_SOURCE, MANAGER_SECRET, WEBSERVER_SECRET, token

SECRET = WEBSERVER_SECRET
INSTANCE = "instance-1"
MEBIBYTE = 1024 * 1024

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def make_token(
    terminal: str = "terminal-0",
    instance: str = INSTANCE,
    *,
    ttl: int = 60,
    key: SigningKey = KEY,
    client: str = "c" * 32,
) -> str:
    return token(terminal, instance, client=client, ttl=ttl, key=key)


@dataclass
class FakeManager:
    """The manager's HTTP API as the webserver uses it.

    ``allocations`` maps a client id to a terminal name (the same client gets the same
    terminal again, with ``reconnect: true``); ``terminals`` maps a name to what
    ``GET /v1/terminals/{name}`` describes. ``override``, when set, answers every
    request instead (busy, down, garbage...)."""

    terminals: dict[str, dict[str, Any]] = field(default_factory=dict)
    allocations: dict[str, str] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    override: Handler | None = None
    terminal_address: str = "127.0.0.1:7681"
    names: itertools.count[int] = field(default_factory=itertools.count)

    def clients(self) -> list[str]:
        """The client ids of every allocation request, in order."""
        return [
            json.loads(r.content)["client"]
            for r in self.requests
            if r.url.path == "/v1/allocations"
        ]

    def lookups(self) -> int:
        return sum(1 for r in self.requests if r.url.path.startswith("/v1/terminals/"))

    def handle(self, request: httpx.Request) -> httpx.Response | Awaitable[httpx.Response]:
        self.requests.append(request)
        if request.headers.get("Authorization") != AUTH["Authorization"]:
            return httpx.Response(401, json={"error": "the webserver's credential is required"})
        if self.override is not None:
            return self.override(request)
        return self.answer(request)

    def answer(self, request: httpx.Request) -> httpx.Response:
        """The manager's usual answer (what ``override`` replaces)."""
        path = request.url.path
        if request.method == "POST" and path == "/v1/allocations":
            client = json.loads(request.content)["client"]
            reconnect = client in self.allocations
            if not reconnect:
                self.allocations[client] = f"terminal-{next(self.names)}"
            name = self.allocations[client]
            self.terminals.setdefault(
                name, {"name": name, "instance": INSTANCE, "address": self.terminal_address}
            )
            return httpx.Response(200, json={
                "terminal": name, "address": self.terminals[name]["address"],
                "token": make_token(name, self.terminals[name]["instance"],
                                    client=client_hash(MANAGER_SECRET, client)),
                "reconnect": reconnect,
                "client_hash": client_hash(MANAGER_SECRET, client),
            })  # fmt: skip
        if request.method == "DELETE" and path.startswith("/v1/allocations/"):
            client = path.removeprefix("/v1/allocations/")
            if self.allocations.pop(client, None) is None:
                return httpx.Response(404, json={"error": "no such allocation"})
            return httpx.Response(200, json={"released": True})
        if request.method == "GET" and path.startswith("/v1/terminals/"):
            described = self.terminals.get(path.removeprefix("/v1/terminals/"))
            if described is None:
                return httpx.Response(404, json={"error": "no such terminal"})
            return httpx.Response(200, json={"state": "in-use", **described})
        if path == "/readyz":
            return httpx.Response(200, json={"status": "ready"})
        return httpx.Response(404, json={"error": "not found"})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


@dataclass
class Web:
    """A running webserver: its port, an HTTP client for it, and its manager stand-in."""

    port: int
    http: httpx.AsyncClient
    manager: FakeManager
    cancel: trio.CancelScope

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, name: str = "terminal-0") -> str:
        return f"ws://127.0.0.1:{self.port}/terminals/{name}/ws"


@asynccontextmanager
async def running_webserver(
    manager: FakeManager | None = None,
    *,
    static_dir: Path | None = None,
    **overrides: Any,
) -> AsyncIterator[Web]:
    """The webserver on 127.0.0.1, port 0, until the block ends; cancelling
    ``Web.cancel`` stops it early (a graceful shutdown)."""
    manager = manager or FakeManager()
    overrides.setdefault("max_per_address", 0)
    overrides.setdefault("keys", KEY_SOURCE)
    config = WebserverConfig(
        secret=SECRET,
        manager_url="http://manager",
        manager_credential=CREDENTIAL,
        port=0,
        **overrides,
    )
    async with trio.open_nursery() as nursery:
        cancel = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[int]) -> None:
            with cancel:
                await serve(
                    config,
                    task_status=task_status,
                    manager_transport=manager.transport(),
                    static_dir=static_dir,
                )

        port = await nursery.start(run)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield Web(port=port, http=http, manager=manager, cancel=cancel)
        nursery.cancel_scope.cancel()


# --- the terminal stand-in --------------------------------------------------------------

Behaviour = Callable[[WebSocketConnection], Awaitable[None]]


async def echo(ws: WebSocketConnection) -> None:
    """Send every message back as it came (binary stays binary, text stays text)."""
    while True:
        await ws.send_message(await ws.get_message())


@dataclass
class Terminal:
    """A trio-websocket server standing in for ``webterm pty``."""

    server: WebSocketServer
    behaviour: Behaviour
    connections: list[WebSocketRequest] = field(default_factory=list)
    accepted: trio.Event = field(default_factory=trio.Event)
    finished: trio.Event = field(default_factory=trio.Event)
    last: WebSocketConnection | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"


@asynccontextmanager
async def terminal_server(behaviour: Behaviour = echo) -> AsyncIterator[Terminal]:
    """A terminal stand-in on a real port. Each connection is accepted with
    ``webterm.v1`` and handed to ``terminal.behaviour``."""
    holder: list[Terminal] = []

    async def handler(request: WebSocketRequest) -> None:
        terminal = holder[0]
        terminal.connections.append(request)
        ws = await request.accept(subprotocol=SUBPROTOCOL)
        terminal.last = ws
        terminal.accepted.set()
        try:
            await terminal.behaviour(ws)
        except ConnectionClosed:
            pass  # the peer went away: the behaviour is over (any other error fails the test)
        finally:
            terminal.finished.set()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve_websocket(
                handler, "127.0.0.1", 0, None, max_message_size=4 * MEBIBYTE,
                task_status=task_status,
            )
        )  # fmt: skip
        terminal = Terminal(server=server, behaviour=behaviour)
        holder.append(terminal)
        yield terminal
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def proxied(
    web: Web,
    terminal: Terminal,
    name: str = "terminal-0",
    *,
    token: str | None = None,
    origin: str | None = None,
    subprotocols: list[str] | None = None,
    message_queue_size: int = 1,
) -> AsyncIterator[WebSocketConnection]:
    """A browser-side connection through the proxy to ``terminal`` registered as ``name``."""
    web.manager.terminals[name] = {"name": name, "instance": INSTANCE, "address": terminal.address}
    token = make_token(name) if token is None else token
    headers = [(b"origin", (origin or web.base).encode())]
    async with open_websocket_url(
        web.ws_url(name),
        subprotocols=subprotocols_for(token) if subprotocols is None else subprotocols,
        extra_headers=headers,
        max_message_size=4 * MEBIBYTE,
        message_queue_size=message_queue_size,
    ) as ws:
        yield ws
