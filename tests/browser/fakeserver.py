"""A stand-in for the webserver and the manager, in front of REAL terminal servers.

The page tests need states the real stack reaches only by accident or after minutes:
every terminal busy, a network drop, a forged token, another tab taking over, an idle
warning. This server gives the page exactly the HTTP surface of the webserver
(``GET /``, ``/static/*``, ``POST /api/terminal``, the ``/terminals/{name}/ws`` proxy,
same Content-Security-Policy) while each terminal is a real ``webterm pty`` process with
a real shell. Faults are switched on through ``/fake/*`` endpoints:

* ``POST /fake/config`` ``{"busy": N, "retry_after": S, "busy_status": 503|429,
  "bad_tokens": N, "pty_args": [...], "recycle_delay": S, "close_delay": S}``: the next N terminal requests
  are refused (busy) or get a token signed with a key the terminals do not know; ``pty_args`` are added
  to the command line of terminals started from now on (e.g. a short ``--idle-timeout``);
  a terminal's recycle report takes effect ``recycle_delay`` seconds late (a manager that
  hears of a shell's exit after the page does); a terminal's close frame reaches the page
  ``close_delay`` seconds after its last message (a slow path, a busy proxy).
* ``POST /fake/drop``: cut every proxied WebSocket at the TCP level, without a close
  frame (what a dropped Wi-Fi looks like: the page sees close code 1006).
* ``POST /fake/freeze``: stop forwarding on every proxied WebSocket, both ways, while
  keeping its TCP connection open (a black-holed path: no FIN, no RST, no close frame);
  a frozen bridge is cut for good after :data:`FROZEN_FOR` seconds.
* ``POST /fake/notice`` ``{"message": {...}}``: send that control message to the page on
  every proxied WebSocket, as if the terminal had sent it (e.g. an ``idle`` notice).
* ``POST /fake/takeover``: open a second connection to the newest terminal, as another
  tab would; the page's connection is closed with 4409 by the terminal server itself.
* ``GET /fake/stats``: what the page sent: terminal requests (with their ``client``
  ids), ``ack`` totals, ``resize`` sizes, input frame counts, open bridges.

The terminal servers report shell exits to ``/v1/terminals/{name}/recycle`` here (their
``--manager-url``), and the recycled terminal is stopped, as the manager does.

Run: ``python -m tests.browser.fakeserver [--static DIR]`` (``--static`` defaults to
``$WEBTERM_FAKE_STATIC``, else the built page in ``src/webterm/static``: point it at a
scratch build to see a test fail without a fix); the first line on stdout is
``fakeserver listening on http://127.0.0.1:PORT``. SIGINT/SIGTERM stop it and its
terminals. Test code only: loopback, no limits worth the name, one process.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    open_websocket,
    wrap_server_stream,
)

from tests.httphead import Request, RequestReader
from webterm.config import PUBLIC_KEYS_ENV
from webterm.protocol import (
    MAX_FRAME_BYTES,
    SUBPROTOCOL,
    CloseCode,
    SigningKey,
    TokenClaims,
    client_hash,
    sign_token,
    subprotocols_for,
    token_from_subprotocols,
)
from webterm.pty import parse_listening_line
from webterm.pty.http import ReplayStream
from webterm.webserver.app import CONTENT_SECURITY_POLICY

ROOT: Final = Path(__file__).resolve().parents[2]
STATIC_DIR: Final = ROOT / "src" / "webterm" / "static"
SHELL: Final = "bash --noprofile --norc"
BODY_LIMIT: Final = 64 * 1024
TOKEN_TTL: Final = 60  # seconds, as the manager's default
PTY_START_TIMEOUT: Final = 30.0  # seconds for `webterm pty` to print its port (loaded CI)
RECYCLE_GRACE: Final = 10.0  # seconds a recycled terminal may finish its close handshake
FROZEN_FOR: Final = 60.0  # seconds a frozen bridge stays open, silent, before it is cut
_RESERVED_CLOSE_CODES: Final = frozenset({1005, 1006, 1015})


@dataclass(eq=False)
class FakeTerminal:
    name: str
    instance: str
    client: str
    port: int
    process: trio.Process
    bridges: int = 0
    recycled: bool = False


@dataclass(eq=False)
class Bridge:
    terminal: str
    scope: trio.CancelScope
    dropped: bool = False
    frozen: bool = False  # forwards nothing more, either way
    page: WebSocketConnection | None = None  # the page's side, once accepted


@dataclass
class Stats:
    requests: list[dict[str, Any]] = field(default_factory=list)
    ack_bytes: int = 0
    ack_messages: int = 0
    resizes: list[list[int]] = field(default_factory=list)
    input_frames: int = 0
    empty_input_frames: int = 0
    other_messages: list[str] = field(default_factory=list)
    closes_from_page: list[int] = field(default_factory=list)


class FakeBackend:
    def __init__(self, nursery: trio.Nursery, static_dir: Path, home: Path) -> None:
        self.nursery = nursery
        self.static_dir = static_dir.resolve()
        self.home = home
        self.secret = secrets.token_urlsafe(32).encode()  # the client hashes' key
        self.key = SigningKey.generate()  # the manager's: terminals get its public half
        self.port = 0
        self.by_client: dict[str, FakeTerminal] = {}
        self.by_name: dict[str, FakeTerminal] = {}
        self.bridges: set[Bridge] = set()
        self.stats = Stats()
        self.busy = 0
        self.busy_status = 503
        self.retry_after = 3
        self.bad_tokens = 0
        self.pty_args: list[str] = []
        self.recycle_delay = 0.0
        self.close_delay = 0.0
        self._serial = 0
        self._changed = trio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # --- HTTP ---------------------------------------------------------------------------

    async def handle(self, stream: trio.abc.Stream) -> None:
        try:
            request = await RequestReader(stream, max_body=BODY_LIMIT).next()
            if request is None:
                return
            if request.headers.get("upgrade", "").lower() == "websocket":
                parts = request.path.split("/")
                if len(parts) == 4 and parts[1] == "terminals" and parts[3] == "ws":
                    await self._bridge(stream, request, parts[2])
                else:
                    await _respond(stream, 404, {"error": "not found"})
                return
            await self._route(stream, request)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ValueError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _route(self, stream: trio.abc.Stream, request: Request) -> None:
        method, path = request.method, request.path
        routes: dict[tuple[str, str], Callable[[Request], Awaitable[tuple[int, Any]]]] = {
            ("POST", "/api/terminal"): self._allocate,
            ("POST", "/fake/config"): self._config,
            ("POST", "/fake/drop"): self._drop,
            ("POST", "/fake/freeze"): self._freeze,
            ("POST", "/fake/notice"): self._notice,
            ("POST", "/fake/takeover"): self._takeover,
            ("GET", "/fake/stats"): self._stats,
        }
        if (method, path) in routes:
            status, body = await routes[method, path](request)
            headers = {"Retry-After": str(body["retry_after"])} if status in (429, 503) else {}
            await _respond(stream, status, body, headers)
        elif method == "POST" and path.startswith("/v1/terminals/"):
            await _respond(stream, *self._terminal_report(path))
        elif method == "GET" and (path == "/" or path.startswith("/static/")):
            await self._static(stream, "index.html" if path == "/" else path[len("/static/") :])
        else:
            await _respond(stream, 404, {"error": "not found"})

    async def _static(self, stream: trio.abc.Stream, name: str) -> None:
        file = (self.static_dir / name).resolve()
        if not file.is_relative_to(self.static_dir) or not file.is_file():
            await _respond(stream, 404, {"error": "not found"})
            return
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind.endswith("javascript"):
            kind += "; charset=utf-8"
        headers = {
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        }
        await _send_response(stream, 200, kind, file.read_bytes(), headers)

    # --- the page's API -----------------------------------------------------------------

    async def _allocate(self, request: Request) -> tuple[int, Any]:
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return 400, {"error": "body is not JSON"}
        client = body.get("client") if isinstance(body, dict) else None
        record: dict[str, Any] = {"client": client}
        self.stats.requests.append(record)
        if self.busy > 0:
            self.busy -= 1
            record["status"] = self.busy_status
            return self.busy_status, {
                "error": "all terminals are busy",
                "retry_after": self.retry_after,
            }
        if not isinstance(client, str) or not client:
            client = f"tab-{secrets.token_urlsafe(12)}"
        terminal = self.by_client.get(client)
        reconnect = terminal is not None
        if terminal is None:
            terminal = await self._spawn(client)
        key = self.key
        if self.bad_tokens > 0:
            self.bad_tokens -= 1
            key = SigningKey.generate()
        token = sign_token(
            key,
            TokenClaims(
                terminal=terminal.name,
                instance=terminal.instance,
                client=client_hash(self.secret, client),
                expires_at=int(time.time()) + TOKEN_TTL,
            ),
        )
        host = request.headers.get("host", f"127.0.0.1:{self.port}")
        record["status"] = 200
        record["terminal"] = terminal.name
        return 200, {
            "terminal": terminal.name,
            "url": f"ws://{host}/terminals/{terminal.name}/ws",
            "token": token,
            "reconnect": reconnect,
            "client": client,
        }

    async def _spawn(self, client: str) -> FakeTerminal:
        self._serial += 1
        name, instance = f"terminal-{self._serial}", secrets.token_hex(8)
        argv = [
            *(sys.executable, "-m", "webterm", "pty", "--host", "127.0.0.1", "--port", "0"),
            *("--name", name, "--instance", instance, "--shell", SHELL),
            *("--manager-url", f"http://127.0.0.1:{self.port}"),
            *self.pty_args,
        ]
        env = {
            **os.environ,
            PUBLIC_KEYS_ENV: json.dumps(self.key.key_set().to_jwks()),
            "HOME": str(self.home),
        }
        env["PS1"] = r"\$ "
        with trio.fail_after(PTY_START_TIMEOUT):
            process: trio.Process = await self.nursery.start(
                _run_terminal, argv, env, name="webterm pty " + name
            )
            assert process.stdout is not None
            line = b""
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some(1)
                if not chunk:
                    raise RuntimeError(f"webterm pty exited early ({process.returncode})")
                line += chunk
        _, port = parse_listening_line(line.decode())
        terminal = FakeTerminal(name, instance, client, port, process)
        self.by_client[client] = terminal
        self.by_name[name] = terminal
        return terminal

    def _terminal_report(self, path: str) -> tuple[int, Any]:
        """What a terminal server tells the manager: ``connection`` and ``recycle``."""
        parts = path.split("/")  # "", "v1", "terminals", NAME, ACTION
        terminal = self.by_name.get(parts[3]) if len(parts) == 5 else None
        if terminal is None:
            return 404, {"error": "unknown terminal"}
        if parts[4] == "recycle" and not terminal.recycled:
            self.nursery.start_soon(self._recycle, terminal, self.recycle_delay)
        return 200, {"ok": True}

    async def _recycle(self, terminal: FakeTerminal, delay: float) -> None:
        await trio.sleep(delay)
        if terminal.recycled:
            return
        terminal.recycled = True
        if self.by_client.get(terminal.client) is terminal:
            del self.by_client[terminal.client]
        await self._stop_terminal(terminal)

    async def _stop_terminal(self, terminal: FakeTerminal) -> None:
        # Let the page's connection finish its exit message and close handshake first.
        with trio.move_on_after(RECYCLE_GRACE):
            while terminal.bridges:
                await self._changed.wait()
        terminal.process.terminate()
        await terminal.process.wait()
        self.by_name.pop(terminal.name, None)

    # --- fault switches -------------------------------------------------------------------

    async def _config(self, request: Request) -> tuple[int, Any]:
        body = json.loads(request.body or b"{}")
        self.busy = int(body.get("busy", self.busy))
        self.busy_status = int(body.get("busy_status", self.busy_status))
        self.retry_after = int(body.get("retry_after", self.retry_after))
        self.bad_tokens = int(body.get("bad_tokens", self.bad_tokens))
        self.pty_args = [str(a) for a in body.get("pty_args", self.pty_args)]
        self.recycle_delay = float(body.get("recycle_delay", self.recycle_delay))
        self.close_delay = float(body.get("close_delay", self.close_delay))
        return 200, {"ok": True}

    async def _drop(self, request: Request) -> tuple[int, Any]:
        dropped = 0
        for bridge in list(self.bridges):
            bridge.dropped = True
            bridge.scope.cancel()
            dropped += 1
        return 200, {"dropped": dropped}

    async def _freeze(self, request: Request) -> tuple[int, Any]:
        frozen = 0
        for bridge in list(self.bridges):
            if not bridge.frozen:
                bridge.frozen = True
                bridge.scope.deadline = trio.current_time() + FROZEN_FOR
                frozen += 1
        return 200, {"frozen": frozen}

    async def _notice(self, request: Request) -> tuple[int, Any]:
        message = json.dumps(json.loads(request.body)["message"])
        sent = 0
        for bridge in list(self.bridges):
            if bridge.page is not None and not bridge.frozen:
                try:
                    await bridge.page.send_message(message)
                    sent += 1
                except ConnectionClosed:
                    pass
        return 200, {"sent": sent}

    async def _takeover(self, request: Request) -> tuple[int, Any]:
        live = [t for t in self.by_name.values() if not t.recycled]
        if not live:
            return 404, {"error": "no terminal"}
        terminal = live[-1]
        hello = await self.nursery.start(self._other_tab, terminal)
        return 200, {"terminal": terminal.name, "hello": hello}

    async def _other_tab(
        self,
        terminal: FakeTerminal,
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Another tab on the same terminal: connect, read hello, stay until taken back."""
        token = sign_token(
            self.key,
            TokenClaims(
                terminal=terminal.name,
                instance=terminal.instance,
                client=client_hash(self.secret, terminal.client),
                expires_at=int(time.time()) + TOKEN_TTL,
            ),
        )
        async with open_websocket(
            "127.0.0.1",
            terminal.port,
            "/ws",
            use_ssl=False,
            subprotocols=subprotocols_for(token),
            max_message_size=MAX_FRAME_BYTES,
        ) as ws:
            while True:
                message = await ws.get_message()
                if isinstance(message, str) and json.loads(message).get("type") == "hello":
                    task_status.started(json.loads(message))
                    break
            with trio.move_on_after(120):
                try:
                    while True:
                        await ws.get_message()
                except ConnectionClosed:
                    pass

    async def _stats(self, request: Request) -> tuple[int, Any]:
        body = dict(self.stats.__dict__)
        body["bridges"] = len(self.bridges)
        body["terminals"] = {
            t.name: {"client": t.client, "recycled": t.recycled} for t in self.by_name.values()
        }
        return 200, body

    # --- the WebSocket proxy -------------------------------------------------------------

    async def _bridge(self, stream: trio.abc.Stream, request: Request, name: str) -> None:
        bridge = Bridge(name, trio.CancelScope())
        terminal = self.by_name.get(name)
        with bridge.scope:
            async with trio.open_nursery() as nursery:
                ws_request = await wrap_server_stream(
                    nursery,
                    ReplayStream(stream, request.raw),
                    max_message_size=MAX_FRAME_BYTES,
                )
                token = token_from_subprotocols(ws_request.proposed_subprotocols)
                if terminal is None or terminal.recycled or token is None:
                    ws = await ws_request.accept(subprotocol=SUBPROTOCOL)
                    code = CloseCode.TERMINAL_GONE if token else CloseCode.UNAUTHORIZED
                    await ws.aclose(code)
                    nursery.cancel_scope.cancel()
                    return
                self.bridges.add(bridge)
                terminal.bridges += 1
                try:
                    await self._proxy(ws_request, terminal, token, bridge)
                except ConnectionRejected as exc:
                    ws = await ws_request.accept(subprotocol=SUBPROTOCOL)
                    code = CloseCode.UNAUTHORIZED
                    if exc.status_code not in (401, 403):
                        code = CloseCode.TERMINAL_GONE
                    await ws.aclose(code)
                except (HandshakeError, OSError):
                    ws = await ws_request.accept(subprotocol=SUBPROTOCOL)
                    await ws.aclose(CloseCode.TERMINAL_GONE)
                finally:
                    self.bridges.discard(bridge)
                    terminal.bridges -= 1
                    self._notify()
                nursery.cancel_scope.cancel()
        # A dropped bridge leaves here cancelled, without a close frame: handle()
        # then closes the TCP connection under the page's feet.

    async def _proxy(
        self, ws_request: Any, terminal: FakeTerminal, token: str, bridge: Bridge
    ) -> None:
        async with open_websocket(
            "127.0.0.1",
            terminal.port,
            "/ws",
            use_ssl=False,
            subprotocols=subprotocols_for(token),
            max_message_size=MAX_FRAME_BYTES,
        ) as upstream:
            page: WebSocketConnection = await ws_request.accept(subprotocol=SUBPROTOCOL)
            bridge.page = page
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._to_page, upstream, page, bridge, nursery.cancel_scope)
                await self._to_terminal(page, upstream, bridge)
                nursery.cancel_scope.cancel()

    async def _to_page(
        self,
        upstream: WebSocketConnection,
        page: WebSocketConnection,
        bridge: Bridge,
        done: trio.CancelScope,
    ) -> None:
        try:
            while True:
                message = await upstream.get_message()
                if bridge.frozen:
                    await trio.sleep_forever()  # until FROZEN_FOR cuts the bridge
                await page.send_message(message)
        except ConnectionClosed:
            pass
        reason = upstream.closed
        if reason is not None and page.closed is None:
            code = (
                reason.code if reason.code not in _RESERVED_CLOSE_CODES else CloseCode.TERMINAL_GONE
            )
            await trio.sleep(self.close_delay)
            with trio.move_on_after(5):
                await page.aclose(code, reason.reason)
        done.cancel()

    async def _to_terminal(
        self, page: WebSocketConnection, upstream: WebSocketConnection, bridge: Bridge
    ) -> None:
        while True:
            try:
                message = await page.get_message()
                if bridge.frozen:
                    await trio.sleep_forever()  # until FROZEN_FOR cuts the bridge
            except ConnectionClosed:
                code = page.closed.code if page.closed is not None else CloseCode.GOING_AWAY
                self.stats.closes_from_page.append(code)
                if code in _RESERVED_CLOSE_CODES:
                    code = CloseCode.GOING_AWAY
                with trio.move_on_after(5):
                    await upstream.aclose(code)
                return
            self._count(message)
            try:
                await upstream.send_message(message)
            except ConnectionClosed:
                # The terminal closed (a 4409 takeover, say) while the page was still
                # sending. _to_page forwards that close to the page and then ends the
                # bridge: returning here would cancel it first, and the page would see
                # 1006 and reconnect instead of the terminal's own close.
                await trio.sleep_forever()

    def _count(self, message: str | bytes) -> None:
        stats = self.stats
        if isinstance(message, bytes):
            stats.input_frames += 1
            stats.empty_input_frames += not message
            return
        try:
            data = json.loads(message)
        except ValueError:
            stats.other_messages.append(message[:200])
            return
        if isinstance(data, dict) and data.get("type") == "ack":
            stats.ack_messages += 1
            stats.ack_bytes += int(data.get("bytes", 0))
        elif isinstance(data, dict) and data.get("type") == "resize":
            stats.resizes.append([int(data.get("cols", 0)), int(data.get("rows", 0))])
        else:
            stats.other_messages.append(message[:200])


async def _run_terminal(
    argv: list[str],
    env: dict[str, str],
    *,
    task_status: trio.TaskStatus[trio.Process] = trio.TASK_STATUS_IGNORED,
) -> None:
    await trio.run_process(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        check=False,
        task_status=task_status,
    )


async def _respond(
    stream: trio.abc.Stream, status: int, body: Any, headers: dict[str, str] | None = None
) -> None:
    await _send_response(stream, status, "application/json", json.dumps(body).encode(), headers)


async def _send_response(
    stream: trio.abc.Stream,
    status: int,
    content_type: str,
    body: bytes,
    headers: dict[str, str] | None = None,
) -> None:
    lines = [
        f"HTTP/1.1 {status} {'OK' if status < 400 else 'Error'}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode() + body)


async def main(static_dir: Path) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    with (
        tempfile.TemporaryDirectory(prefix="webterm-fake-home-") as home,
        trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals,
    ):
        async with trio.open_nursery() as nursery:
            fake = FakeBackend(nursery, static_dir, Path(home))
            fake.port = port
            await nursery.start(trio.serve_listeners, fake.handle, listeners)
            print(f"fakeserver listening on http://127.0.0.1:{port}", flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--static", type=Path, default=Path(os.environ.get("WEBTERM_FAKE_STATIC", STATIC_DIR))
    )
    trio.run(main, parser.parse_args().static)
