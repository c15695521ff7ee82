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
    RECYCLE_BUDGET,
    REPORT_BACKOFF_CAP,
    REPORT_TIMEOUT,
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


def _manager_answering(statuses: list[int], tokens: list[str], action: str) -> object:
    """A manager that records each report's bearer token and answers with ``statuses``
    in turn (the last one for ever)."""

    async def answer(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith(b"}"):
            data += await stream.receive_some(4096)
        head = data.split(b"\r\n\r\n", 1)[0].decode()
        assert head.startswith(f"POST /base/v1/terminals/terminal-0/{action} HTTP/1.1\r\n")
        (auth,) = [line for line in head.split("\r\n") if line.lower().startswith("authorization:")]
        tokens.append(auth.split()[-1])
        status = statuses[min(len(tokens), len(statuses)) - 1]
        await stream.send_all(b"HTTP/1.1 %d Whatever\r\nContent-Length: 0\r\n\r\n" % status)

    return answer


def _config(port: int) -> PtyConfig:
    return PtyConfig(
        keys=KEY_SOURCE,
        name="terminal-0",
        instance="uid-1",
        manager_url=f"http://127.0.0.1:{port}/base/",
    )


@pytest.mark.parametrize(
    ("action", "statuses", "attempts"),
    [("recycle", [503, 502, 503, 200], 4), ("connection", [503, 200], 1)],
)
async def test_a_report_carries_the_browser_s_token_and_a_recycle_is_retried_until_taken(
    action: str, statuses: list[int], attempts: int
) -> None:
    """The manager answers a recycle 503 until the pod's delete is durable: the
    terminal asks again until it is taken; a connection report is sent once."""
    tokens: list[str] = []
    async with trio.open_nursery() as nursery:
        handler = _manager_answering(statuses, tokens, action)
        (listener,) = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        browser_token = token("terminal-0", "uid-1")
        with trio.fail_after(30):
            await report(_config(listener.socket.getsockname()[1]), browser_token, action, {})
        nursery.cancel_scope.cancel()
    # the server signs nothing: every attempt carries the token its browser sent
    assert tokens == [browser_token] * attempts


async def test_a_recycle_report_gives_up_after_its_time_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A manager that never takes it: retried with capped backoff for RECYCLE_BUDGET
    seconds (on trio's fake clock), then given up, not retried for ever."""
    tokens: list[str] = []
    async with trio.open_nursery() as nursery:
        handler = _manager_answering([503], tokens, "recycle")
        (listener,) = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        started = trio.current_time()
        await report(_config(listener.socket.getsockname()[1]), token("terminal-0"), "recycle", {})
        elapsed = trio.current_time() - started
        nursery.cancel_scope.cancel()
    assert RECYCLE_BUDGET - REPORT_BACKOFF_CAP <= elapsed <= RECYCLE_BUDGET + REPORT_TIMEOUT
    # backoff doubling to its cap: far fewer attempts than one a second
    assert 1 < len(tokens) < RECYCLE_BUDGET / REPORT_BACKOFF_CAP + 10


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
