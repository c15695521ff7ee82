"""The terminal WebSocket proxy over real sockets: a trio-websocket client as the browser,
the webserver on hypercorn, and behind it a real trio-websocket server standing in for
the terminal (or a real ``webterm pty`` with a real shell)."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
)

from tests.credentials import KEY_SOURCE, KEYS
from tests.terminal_client import read_until
from tests.webserver.stack import (
    INSTANCE,
    MEBIBYTE,
    FakeManager,
    Terminal,
    Web,
    make_token,
    proxied,
    running_webserver,
    terminal_server,
)
from webterm.config import KeySource, PtyConfig
from webterm.protocol import (
    CloseCode,
    SigningKey,
    read_token,
    subprotocols_for,
    token_from_subprotocols,
)
from webterm.pty.server import serve as serve_pty


@asynccontextmanager
async def stack(**overrides: Any) -> AsyncIterator[tuple[Web, Terminal]]:
    async with terminal_server() as terminal, running_webserver(**overrides) as web:
        yield web, terminal


async def closed_with(ws: WebSocketConnection) -> tuple[int, str | None]:
    """Read until the connection closes; its close code and reason."""
    with trio.fail_after(15), pytest.raises(ConnectionClosed) as closed:
        while True:
            await ws.get_message()
    reason = closed.value.reason
    assert reason is not None
    return reason.code, reason.reason


# --- relaying -------------------------------------------------------------------------------


async def test_frames_are_relayed_byte_exact_binary_as_binary_text_as_text() -> None:
    rng = random.Random(1234)
    async with stack() as (web, terminal), proxied(web, terminal) as ws:
        assert ws.subprotocol == "webterm.v1"
        payloads: list[bytes | str] = [
            b"",
            b"\x00\xff\x1b[31m",
            bytes(range(256)),
            os.urandom(1),
            rng.randbytes(65536),
            rng.randbytes(MEBIBYTE),  # the largest frame the protocol allows
            '{"type":"resize","cols":80,"rows":24}',
            "",
            "ünïcødé ✓ \u2028",
            "x" * 70_000,
        ]
        payloads += [rng.randbytes(rng.randrange(1, 20_000)) for _ in range(50)]
        with trio.fail_after(30):
            for payload in payloads:
                await ws.send_message(payload)
                echoed = await ws.get_message()
                assert type(echoed) is type(payload)
                assert echoed == payload
        # the terminal was offered the browser's subprotocols, token included
        offered = list(terminal.connections[0].proposed_subprotocols)
        assert offered[0] == "webterm.v1"
        token = token_from_subprotocols(offered)
        assert token is not None
        assert read_token(KEYS, token, now=time.time()).terminal == "terminal-0"


async def test_a_stream_of_frames_arrives_complete_and_in_order() -> None:
    async def burst(ws: WebSocketConnection) -> None:
        count = int(await ws.get_message())
        for i in range(count):
            await ws.send_message(i.to_bytes(4, "big") * 1000)
        await ws.send_message("done")
        await ws.get_message()

    async with stack() as (web, terminal):
        terminal.behaviour = burst
        async with proxied(web, terminal) as ws:
            await ws.send_message("500")
            with trio.fail_after(30):
                for i in range(500):
                    assert await ws.get_message() == i.to_bytes(4, "big") * 1000
                assert await ws.get_message() == "done"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (CloseCode.SUPERSEDED, "another connection took over this terminal"),
        (CloseCode.NORMAL, "session ended"),
        (CloseCode.INTERNAL_ERROR, None),
        (4000, "custom"),
    ],
)
async def test_the_terminals_close_code_and_reason_reach_the_browser(
    code: int, reason: str | None
) -> None:
    async def close_after_one(ws: WebSocketConnection) -> None:
        await ws.send_message(await ws.get_message())
        await ws.aclose(code, reason)

    async with stack() as (web, terminal):
        terminal.behaviour = close_after_one
        async with proxied(web, terminal) as ws:
            await ws.send_message(b"last words")
            assert await ws.get_message() == b"last words"
            got_code, got_reason = await closed_with(ws)
    assert got_code == code
    if reason is not None:
        assert got_reason == reason


async def test_a_terminal_that_drops_tcp_closes_the_browser_with_4404() -> None:
    async def drop(ws: WebSocketConnection) -> None:
        await ws.get_message()
        await ws._stream.aclose()  # no close frame: abnormal closure (1006) upstream

    async with stack() as (web, terminal):
        terminal.behaviour = drop
        async with proxied(web, terminal) as ws:
            await ws.send_message(b"x")
            code, _ = await closed_with(ws)
    assert code == CloseCode.TERMINAL_GONE


async def test_the_browser_going_away_closes_the_terminal_side() -> None:
    seen: list[int] = []

    async def wait_for_close(ws: WebSocketConnection) -> None:
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed as closed:
            seen.append(closed.reason.code if closed.reason is not None else -1)

    async with stack() as (web, terminal):
        terminal.behaviour = wait_for_close
        async with proxied(web, terminal) as ws:
            await terminal.accepted.wait()
            await ws.aclose(1000)
        with trio.fail_after(15):
            await terminal.finished.wait()
        # hypercorn does not report the browser's code (pgjones/hypercorn#127): 1001
        assert seen == [CloseCode.GOING_AWAY]
        metrics = (await web.http.get("/metrics")).text
        assert "webterm_proxied_connections 0.0" in metrics


async def test_shutting_the_webserver_down_closes_both_sides_with_1001() -> None:
    seen: list[int] = []

    async def record_close(ws: WebSocketConnection) -> None:
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except ConnectionClosed as closed:
            seen.append(closed.reason.code if closed.reason is not None else -1)

    async with stack() as (web, terminal):
        terminal.behaviour = record_close
        async with proxied(web, terminal) as ws:
            await ws.send_message(b"ping")
            assert await ws.get_message() == b"ping"
            web.cancel.cancel()
            code, _ = await closed_with(ws)
        with trio.fail_after(15):
            await terminal.finished.wait()
    assert code == CloseCode.GOING_AWAY
    assert seen == [CloseCode.GOING_AWAY]


async def test_bytes_and_connections_are_counted() -> None:
    async with stack() as (web, terminal):
        async with proxied(web, terminal) as ws:
            await ws.send_message(b"12345")
            await ws.get_message()
            await ws.send_message("abc")
            await ws.get_message()
            metrics = (await web.http.get("/metrics")).text
            assert "webterm_proxied_connections 1.0" in metrics
        metrics = (await web.http.get("/metrics")).text
    assert 'webterm_proxied_bytes_total{direction="to_terminal"} 8.0' in metrics
    assert 'webterm_proxied_bytes_total{direction="to_browser"} 8.0' in metrics


# --- backpressure ------------------------------------------------------------------------------

FLOOD_FRAME = 64 * 1024
FLOOD_LIMIT = 256 * MEBIBYTE  # what the terminal would send if nothing pushed back
BUFFER_BOUND = 64 * MEBIBYTE
"""Where the terminal's sender must have stalled. In practice it stalls after ~1-2 MiB
(socket buffers on both hops plus a few queued frames); kernel receive buffers may grow
to tens of MiB (tcp_rmem), hence the margin. An unbounded proxy takes everything the
terminal sends, up to FLOOD_LIMIT (checked: with an unbounded upstream queue this test
fails at 200 MiB)."""


async def test_a_slow_browser_blocks_the_terminals_sender() -> None:
    sent = 0

    async def flood(ws: WebSocketConnection) -> None:
        nonlocal sent
        chunk = bytes(FLOOD_FRAME)
        while sent < FLOOD_LIMIT:
            await ws.send_message(chunk)
            sent += FLOOD_FRAME

    async with stack() as (web, terminal):
        terminal.behaviour = flood
        async with proxied(web, terminal) as ws:  # the browser reads nothing yet
            with trio.fail_after(60):
                # Every task in this process (terminal, proxy, browser) is blocked: the
                # terminal's send is waiting for the proxy, which waits for the browser.
                while True:
                    before = sent
                    await trio.testing.wait_all_tasks_blocked(cushion=0.2)
                    if sent == before:
                        break
            stalled_at = sent
            assert 0 < stalled_at < BUFFER_BOUND
            # reading again lets the terminal go on
            received = 0
            with trio.fail_after(60):
                while sent <= stalled_at + 4 * MEBIBYTE:
                    received += len(await ws.get_message())
            assert received > 0


# --- refusals, before anything is dialed ----------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "not-a-token",
        make_token(key=SigningKey.generate()),  # an unknown (or retired) key's
        make_token(ttl=-5),  # expired
        make_token("terminal-1"),  # another terminal's
    ],
    ids=["missing", "empty", "garbage", "unknown-key", "expired", "other-terminal"],
)
async def test_bad_tokens_are_refused_with_4401_without_dialing(token: str | None) -> None:
    async with stack() as (web, terminal):
        offered = ["webterm.v1"] if token is None else subprotocols_for(token)
        async with proxied(web, terminal, subprotocols=offered) as ws:
            assert ws.subprotocol == "webterm.v1"
            code, _ = await closed_with(ws)
        assert code == CloseCode.UNAUTHORIZED
        assert terminal.connections == []
        assert web.manager.lookups() == 0  # not even the manager was asked


@asynccontextmanager
async def keys_server(document: list[bytes]) -> AsyncIterator[tuple[str, list[str]]]:
    """A real HTTP server answering every GET with ``document[0]`` (a JWKS the test may
    swap); yields its URL and the paths it was asked for."""
    asked: list[str] = []

    async def handle(stream: trio.SocketStream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += await stream.receive_some()
        asked.append(head.split(b" ")[1].decode())
        body = document[0]
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        yield f"http://127.0.0.1:{port}/v1/keys", asked
        nursery.cancel_scope.cancel()


async def test_a_new_key_is_fetched_from_the_keys_url_once_and_forged_ids_are_rate_limited() -> (
    None
):
    """A manager restarted with a rotated key: the proxy meets a token naming a key id
    it does not hold, fetches the key set again and relays. Tokens naming made-up key
    ids are refused (4401) and do not make it fetch again and again."""
    new = SigningKey.generate()
    document = [json.dumps(KEYS.to_jwks()).encode()]
    async with (
        keys_server(document) as (url, asked),
        stack(keys=KeySource(url=url)) as (
            web,
            terminal,
        ),
    ):
        assert asked == ["/v1/keys"]  # fetched at start
        document[0] = json.dumps(new.key_set(KEYS).to_jwks()).encode()
        async with proxied(web, terminal, token=make_token(key=new)) as ws:
            await ws.send_message(b"rotated")
            assert await ws.get_message() == b"rotated"
        assert len(asked) == 2
        for _ in range(5):
            async with proxied(web, terminal, token=make_token(key=SigningKey.generate())) as ws:
                code, _ = await closed_with(ws)
            assert code == CloseCode.UNAUTHORIZED
        assert len(asked) <= 3
        assert len(terminal.connections) == 1


async def test_a_client_not_speaking_webterm_v1_gets_http_403() -> None:
    async with stack() as (web, terminal):
        with pytest.raises(ConnectionRejected) as rejected:
            async with proxied(web, terminal, subprotocols=["chat"]):
                pass
        assert rejected.value.status_code == 403
        assert terminal.connections == []


async def test_a_foreign_origin_is_refused_with_4403() -> None:
    async with stack() as (web, terminal):
        for origin in ("https://evil.example", f"http://127.0.0.1:{web.port + 1}", "null"):
            async with proxied(web, terminal, origin=origin) as ws:
                code, _ = await closed_with(ws)
            assert code == CloseCode.FORBIDDEN_ORIGIN
        assert terminal.connections == []


async def test_same_host_on_any_scheme_and_listed_origins_are_allowed() -> None:
    async with stack(allowed_origins=("https://portal.example.org",)) as (web, terminal):
        for origin in (
            f"http://127.0.0.1:{web.port}",
            f"https://127.0.0.1:{web.port}",  # TLS ended at a proxy in front
            "https://portal.example.org",
        ):
            async with proxied(web, terminal, origin=origin) as ws:
                await ws.send_message(b"hi")
                assert await ws.get_message() == b"hi"
        assert len(terminal.connections) == 3


async def test_forwarded_host_counts_only_from_trusted_proxies() -> None:
    origin = "https://term.example.org"
    for trusted, expected in ((("127.0.0.1",), 1), ((), 0)):
        async with stack(trusted_proxies=trusted) as (web, terminal):
            web.manager.terminals["terminal-0"] = {
                "name": "terminal-0", "instance": INSTANCE, "address": terminal.address,
            }  # fmt: skip
            async with open_websocket_url(
                web.ws_url(),
                subprotocols=subprotocols_for(make_token()),
                extra_headers=[
                    (b"origin", origin.encode()),
                    (b"x-forwarded-host", b"term.example.org"),
                ],
            ) as ws:
                if expected:
                    await ws.send_message(b"hi")
                    assert await ws.get_message() == b"hi"
                else:
                    assert (await closed_with(ws))[0] == CloseCode.FORBIDDEN_ORIGIN
            assert len(terminal.connections) == expected


async def test_an_unknown_terminal_is_4404() -> None:
    async with stack() as (web, terminal):
        async with open_websocket_url(
            web.ws_url("terminal-9"),
            subprotocols=subprotocols_for(make_token("terminal-9")),
            extra_headers=[(b"origin", web.base.encode())],
        ) as ws:
            code, _ = await closed_with(ws)
        assert code == CloseCode.TERMINAL_GONE
        assert terminal.connections == []


async def test_a_path_that_is_not_a_terminal_name_is_4404() -> None:
    async with stack() as (web, _terminal):
        for name in ("Terminal-0", "-x", "a" * 64, "terminal-0/../x"):
            async with open_websocket_url(
                f"ws://127.0.0.1:{web.port}/terminals/{name}/ws",
                subprotocols=subprotocols_for(make_token()),
                extra_headers=[(b"origin", web.base.encode())],
            ) as ws:
                assert (await closed_with(ws))[0] == CloseCode.TERMINAL_GONE
        assert web.manager.lookups() == 0


async def test_a_recycled_terminal_asks_the_page_for_a_fresh_token_with_4401() -> None:
    async with stack() as (web, terminal):
        web.manager.terminals["terminal-0"] = {
            "name": "terminal-0", "instance": "instance-2", "address": terminal.address,
        }  # fmt: skip
        async with open_websocket_url(
            web.ws_url(),
            subprotocols=subprotocols_for(make_token()),  # issued for instance-1
            extra_headers=[(b"origin", web.base.encode())],
        ) as ws:
            assert (await closed_with(ws))[0] == CloseCode.UNAUTHORIZED
        assert terminal.connections == []


async def test_an_unreachable_terminal_is_4404_and_its_address_is_forgotten() -> None:
    async with running_webserver() as web:
        async with terminal_server() as terminal:
            for _ in range(2):
                async with proxied(web, terminal) as ws:
                    await ws.send_message(b"up")
                    assert await ws.get_message() == b"up"
            assert web.manager.lookups() == 1  # the second connection used the cache
        # the terminal is gone, its address still registered with the manager
        for _ in range(2):
            async with open_websocket_url(
                web.ws_url(),
                subprotocols=subprotocols_for(make_token()),
                extra_headers=[(b"origin", web.base.encode())],
            ) as ws:
                assert (await closed_with(ws))[0] == CloseCode.TERMINAL_GONE
        # the first failure dialed the cached address and forgot it: the second asked again
        assert web.manager.lookups() == 2


async def test_the_manager_being_down_is_4404() -> None:
    manager = FakeManager()

    def down(request: object) -> object:
        import httpx

        assert isinstance(request, httpx.Request)
        raise httpx.ConnectError("refused", request=request)

    manager.override = down  # type: ignore[assignment]
    async with terminal_server() as terminal, running_webserver(manager) as web:
        async with open_websocket_url(
            web.ws_url(),
            subprotocols=subprotocols_for(make_token()),
            extra_headers=[(b"origin", web.base.encode())],
        ) as ws:
            assert (await closed_with(ws))[0] == CloseCode.TERMINAL_GONE
        assert terminal.connections == []


async def test_the_access_gate_covers_the_proxy() -> None:
    async with stack(access="password", access_password=b"pw") as (web, terminal):
        with pytest.raises(ConnectionRejected) as rejected:
            async with proxied(web, terminal):
                pass
        assert rejected.value.status_code == 403
        assert terminal.connections == []


# --- through the proxy to a real terminal server -------------------------------------------------


@asynccontextmanager
async def real_terminal(web: Web, name: str = "terminal-0") -> AsyncIterator[None]:
    config = PtyConfig(
        keys=KEY_SOURCE,
        name=name,
        instance=INSTANCE,
        host="127.0.0.1",
        port=0,
        shell=("/bin/bash", "--norc", "--noprofile", "-i"),
    )
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_pty, config)
        web.manager.terminals[name] = {
            "name": name, "instance": INSTANCE, "address": f"127.0.0.1:{port}",
        }  # fmt: skip
        yield
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def browser(web: Web, name: str = "terminal-0") -> AsyncIterator[WebSocketConnection]:
    async with open_websocket_url(
        web.ws_url(name),
        subprotocols=subprotocols_for(make_token(name)),
        extra_headers=[(b"origin", web.base.encode())],
        max_message_size=4 * MEBIBYTE,
    ) as ws:
        yield ws


async def test_a_real_shell_through_the_proxy() -> None:
    async with running_webserver() as web, real_terminal(web), browser(web) as ws:
        assert ws.subprotocol == "webterm.v1"
        await ws.send_message(b"echo proxied-$((6*7))\n")
        _, controls = await read_until(ws, b"proxied-42")
        assert controls[0] == {"type": "hello", "terminal": "terminal-0", "reattached": False}
        await ws.send_message(json.dumps({"type": "resize", "cols": 91, "rows": 33}))
        await ws.send_message(b"stty size\n")
        await read_until(ws, b"33 91")
        # a second tab takes the terminal over: the first sees 4409 through the proxy
        async with browser(web) as second:
            code, _ = await closed_with(ws)
            assert code == CloseCode.SUPERSEDED
            await second.send_message(b"exit 3\n")
            with trio.fail_after(20), pytest.raises(ConnectionClosed) as closed:
                while True:
                    message = await second.get_message()
                    if isinstance(message, str) and json.loads(message)["type"] == "exit":
                        assert json.loads(message) == {"type": "exit", "status": 3}
            assert closed.value.reason is not None
            assert closed.value.reason.code == CloseCode.NORMAL
