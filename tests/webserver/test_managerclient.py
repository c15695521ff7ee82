"""The webserver's manager client against a real HTTP server (Hypercorn on a real port,
answering what each test scripts): a frozen Allocation, or one typed error per way the
manager can fail to give one."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from prometheus_client import CollectorRegistry, generate_latest

from webterm.protocol import Allocation, MalformedAllocation, encode_allocation
from webterm.webserver.managerclient import (
    ManagerAnsweredBadly,
    ManagerClient,
    ManagerError,
    ManagerRefused,
    ManagerUnavailable,
)
from webterm.webserver.upstream import UpstreamTransport

Answer = tuple[int, dict[str, str], bytes]

ALLOCATION = Allocation(
    terminal="terminal-3", address="10.1.2.3:7681", token="tok", client_hash="0a1b2c"
)


@dataclass
class ScriptedManager:
    """A raw ASGI app answering every request with ``answer(method, raw path, body)``."""

    answer: Callable[[str, str, bytes], Answer]
    seen: list[tuple[str, str, Any]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["raw_path"].decode()  # as sent: quoting shows
        self.seen.append((scope["method"], path, json.loads(body) if body else None))
        status, headers, content = self.answer(scope["method"], path, body)
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": content})


@asynccontextmanager
async def client_of(manager: ScriptedManager) -> AsyncIterator[tuple[ManagerClient, str]]:
    """A ManagerClient (over the webserver's own transport) for ``manager`` on a real
    port, and the registry's text after the block."""
    hyper = HypercornConfig()
    hyper.bind = ["127.0.0.1:0"]
    hyper.accesslog = None
    registry = CollectorRegistry()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(hypercorn_serve, manager, hyper)
        base = binds[0]
        async with httpx.AsyncClient(base_url=base, transport=UpstreamTransport()) as http:
            yield ManagerClient(http, registry), registry
        nursery.cancel_scope.cancel()


def json_answer(status: int, body: object, **headers: str) -> Answer:
    return status, {"content-type": "application/json", **headers}, json.dumps(body).encode()


def always(answer: Answer) -> ScriptedManager:
    return ScriptedManager(lambda method, path, body: answer)


async def test_an_allocation_is_a_frozen_allocation() -> None:
    manager = always((200, {"content-type": "application/json"}, encode_allocation(ALLOCATION)))
    async with client_of(manager) as (client, registry):
        got = await client.allocate("tab:abc")
        metrics = generate_latest(registry).decode()
    assert got == ALLOCATION
    with pytest.raises(AttributeError):
        got.terminal = "other"  # type: ignore[misc]
    assert manager.seen == [("POST", "/v1/allocations", {"client": "tab:abc"})]
    assert 'webterm_allocation_seconds_count{outcome="ok"} 1.0' in metrics


@pytest.mark.parametrize(
    ("answer", "status", "hint", "message", "retry_after"),
    [
        (json_answer(503, {"error": "all busy", "retry_after": 7}), 503, 503, "all busy", 7),
        (json_answer(429, {"error": "slow down", "retry_after": 2.5}), 429, 429, "slow down", 3),
        ((429, {"retry-after": "12"}, b"slow"), 429, 429, "no terminal available", 12),
        (json_answer(500, ["x"]), 500, 503, "no terminal available", 5),
        (json_answer(503, {"error": "x" * 500, "retry_after": True}), 503, 503, "x" * 200, 5),
        (json_answer(404, {"error": "gone"}, **{"retry-after": "soon"}), 404, 503, "gone", 5),
    ],
    ids=["busy", "rate-limited", "header-only", "500", "long-message-bool-retry", "404"],
)
async def test_a_refusal_is_manager_refused_with_its_message_and_delay(
    answer: Answer, status: int, hint: int, message: str, retry_after: int
) -> None:
    async with client_of(always(answer)) as (client, registry):
        with pytest.raises(ManagerRefused) as refused:
            await client.allocate("tab:abc")
        metrics = generate_latest(registry).decode()
    error = refused.value
    assert (error.status, error.error_status_hint) == (status, hint)
    assert (error.message, error.retry_after) == (message, retry_after)
    assert f'webterm_allocation_seconds_count{{outcome="{status}"}} 1.0' in metrics


@pytest.mark.parametrize(
    "answer",
    [
        (200, {"content-type": "text/html"}, b"<html>not json</html>"),
        json_answer(200, ["terminal-0"]),
        json_answer(
            200, {"terminal": "Bad Name!", "address": "x:1", "token": "t", "client_hash": "h"}
        ),
        json_answer(200, {"terminal": "terminal-0", "address": "x:1"}),
    ],
    ids=["not-json", "not-an-object", "bad-name", "no-token"],
)
async def test_a_garbled_allocation_is_manager_answered_badly(answer: Answer) -> None:
    async with client_of(always(answer)) as (client, _):
        with pytest.raises(ManagerAnsweredBadly) as bad:
            await client.allocate("tab:abc")
    assert isinstance(bad.value.__cause__, MalformedAllocation)
    assert (bad.value.error_status_hint, bad.value.retry_after) == (503, 5)


def free_port() -> int:
    """A port nobody listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_manager_is_manager_unavailable_everywhere_but_readiness() -> None:
    registry = CollectorRegistry()
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{free_port()}", transport=UpstreamTransport()
    ) as http:
        client = ManagerClient(http, registry)
        with pytest.raises(ManagerUnavailable) as down:
            await client.allocate("tab:abc")
        with pytest.raises(ManagerUnavailable):
            await client.release("tab:abc")
        assert await client.ready() is False
    assert isinstance(down.value, ManagerError)
    assert (down.value.error_status_hint, down.value.retry_after) == (503, 5)
    metrics = generate_latest(registry).decode()
    assert 'webterm_allocation_seconds_count{outcome="unreachable"} 1.0' in metrics


async def test_release_says_whether_the_client_held_a_terminal() -> None:
    def answer(method: str, path: str, body: bytes) -> Answer:
        if path == "/v1/allocations/tab%3Aheld":
            return json_answer(200, {"released": True})
        if path == "/v1/allocations/tab%3Aoutage":  # decided, not yet durable
            return json_answer(503, {"error": "not yet carried out", "retry_after": 2})
        return json_answer(404, {"error": "this client holds no terminal"})

    manager = ScriptedManager(answer)
    async with client_of(manager) as (client, _):
        assert await client.release("tab:held") is True
        assert await client.release("tab:other") is False
        # not "released: false": the caller must ask again, and is told when
        with pytest.raises(ManagerRefused) as refused:
            await client.release("tab:outage")
    assert (refused.value.error_status_hint, refused.value.retry_after) == (503, 2)
    assert [(m, p) for m, p, _ in manager.seen] == [
        ("DELETE", "/v1/allocations/tab%3Aheld"),  # one path segment, whatever the id
        ("DELETE", "/v1/allocations/tab%3Aother"),
        ("DELETE", "/v1/allocations/tab%3Aoutage"),
    ]


@pytest.mark.parametrize(("status", "ready"), [(200, True), (503, False)])
async def test_ready_is_the_managers_readyz(status: int, ready: bool) -> None:
    async with client_of(always(json_answer(status, {}))) as (client, _):
        assert await client.ready() is ready
