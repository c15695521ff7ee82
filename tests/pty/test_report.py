"""The terminal server's POST to the manager: real sockets, a real HTTP/1.1 peer."""

from __future__ import annotations

import json
from functools import partial

import pytest
import trio
import trio.testing

from tests.httphead import Request, RequestReader
from webterm.config import PtyConfig
from webterm.pty.report import (
    RECYCLE_ATTEMPTS,
    ReportError,
    post_json,
    report,
)

from ..credentials import KEY_SOURCE, token


async def test_post_json_sends_the_body_and_returns_the_status() -> None:
    seen: list[Request] = []

    async def answer(stream: trio.SocketStream) -> None:
        request = await RequestReader(stream).next()
        assert request is not None
        seen.append(request)
        await stream.send_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(partial(trio.serve_tcp, answer, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        url = f"http://127.0.0.1:{port}/v1/terminals/terminal-0/recycle"
        status = await post_json(url, {"reason": "exit"}, {"Authorization": "Bearer t"})
        nursery.cancel_scope.cancel()
    assert status == 202
    (request,) = seen
    assert (request.method, request.target) == ("POST", "/v1/terminals/terminal-0/recycle")
    assert request.raw.startswith(b"POST /v1/terminals/terminal-0/recycle HTTP/1.1\r\n")
    assert request.headers["authorization"].lower() == "bearer t"
    assert json.loads(request.body) == {"reason": "exit"}


async def test_post_json_fails_clearly() -> None:
    with pytest.raises(ReportError, match="not an http"):
        await post_json("ftp://manager/", {}, {})
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ReportError):
        await post_json(f"http://127.0.0.1:{port}/", {}, {})

    async def hang_up(stream: trio.SocketStream) -> None:
        await stream.receive_some(4096)

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(partial(trio.serve_tcp, hang_up, 0, host="127.0.0.1"))
        with pytest.raises(ReportError):
            await post_json(f"http://127.0.0.1:{listener.socket.getsockname()[1]}/", {}, {})
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("action", "attempts"), [("recycle", RECYCLE_ATTEMPTS), ("connection", 1)])
async def test_a_report_carries_the_browser_s_token_and_is_retried_on_5xx(
    action: str, attempts: int
) -> None:
    tokens: list[str] = []

    async def unavailable(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith(b"}"):
            data += await stream.receive_some(4096)
        head = data.split(b"\r\n\r\n", 1)[0].decode()
        assert head.startswith(f"POST /base/v1/terminals/terminal-0/{action} HTTP/1.1\r\n")
        (auth,) = [line for line in head.split("\r\n") if line.lower().startswith("authorization:")]
        tokens.append(auth.split()[-1])
        await stream.send_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(partial(trio.serve_tcp, unavailable, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        config = PtyConfig(
            keys=KEY_SOURCE,
            name="terminal-0",
            instance="uid-1",
            manager_url=f"http://127.0.0.1:{port}/base/",
        )
        browser_token = token("terminal-0", "uid-1")
        with trio.fail_after(30):
            await report(config, browser_token, action, {"reason": "exit"})
        nursery.cancel_scope.cancel()
    # the server signs nothing: every attempt carries the token its browser sent
    assert tokens == [browser_token] * attempts


async def test_no_report_without_a_browser_s_token() -> None:
    """A terminal no browser has opened has nothing to authenticate with (and nothing
    to report): no request is sent."""
    calls: list[bytes] = []

    async def record(stream: trio.SocketStream) -> None:
        calls.append(await stream.receive_some(4096))

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(partial(trio.serve_tcp, record, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        config = PtyConfig(
            keys=KEY_SOURCE, name="terminal-0", manager_url=f"http://127.0.0.1:{port}"
        )
        await report(config, None, "recycle", {"reason": "exit"})
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert calls == []
