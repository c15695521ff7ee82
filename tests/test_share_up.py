"""Sharing a terminal through the whole `webterm up` stack: the webserver's share routes,
the manager's share tokens, viewers relayed by the proxy, revocation and recycle."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from tests.terminal_client import read_until, run_until
from tests.upstack import webterm_up
from webterm.protocol import CloseCode, subprotocols_for


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with webterm_up("--spares", "1", "--max-terminals", "2") as url:
        yield url


def post(base: str, path: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{base}{path}", json=body, headers={"Origin": base}, timeout=30)


@asynccontextmanager
async def dial(base: str, url: str, token: str) -> AsyncIterator[WebSocketConnection]:
    async with open_websocket_url(
        url, subprotocols=subprotocols_for(token), extra_headers=[(b"origin", base.encode())]
    ) as ws:
        yield ws


async def control(ws: WebSocketConnection, kind: str) -> dict[str, object]:
    with trio.fail_after(20):
        while True:
            message = await ws.get_message()
            if isinstance(message, str) and (body := json.loads(message))["type"] == kind:
                return body  # type: ignore[no-any-return]


async def close_code(ws: WebSocketConnection) -> int | None:
    with trio.fail_after(20), pytest.raises(ConnectionClosed) as closed:
        while True:
            await ws.get_message()
    return None if closed.value.reason is None else closed.value.reason.code


def test_sharing_needs_a_terminal_and_a_mode(base: str) -> None:
    assert post(base, "/api/terminal/share", {"mode": "view"}).status_code == 404
    owner = post(base, "/api/terminal", {}).json()
    refused = post(base, "/api/terminal/share", {"client": owner["client"], "mode": "admin"})
    assert refused.status_code == 400
    assert post(base, "/api/terminal/shared", {"token": "not-a-token"}).status_code == 401
    # an owner's own token is no share link
    assert post(base, "/api/terminal/shared", {"token": owner["token"]}).status_code == 401
    httpx.request("DELETE", f"{base}/api/terminal", json={"client": owner["client"]})


async def test_a_viewer_through_the_proxy_watches_is_refused_typing_and_is_revoked(
    base: str,
) -> None:
    owner = post(base, "/api/terminal", {}).json()
    async with dial(base, owner["url"], owner["token"]) as owner_ws:
        await control(owner_ws, "hello")
        link = post(base, "/api/terminal/share", {"client": owner["client"], "mode": "view"})
        assert link.status_code == 200
        shared = link.json()
        assert (shared["terminal"], shared["mode"]) == (owner["terminal"], "view")
        where = post(base, "/api/terminal/shared", {"token": shared["token"]}).json()
        assert (where["url"], where["mode"]) == (owner["url"], "view")
        async with dial(base, where["url"], where["token"]) as viewer:
            assert (await control(viewer, "hello"))["role"] == "view"
            assert (await control(owner_ws, "viewers"))["viewers"] == [
                {"id": 1, "link": shared["link"], "mode": "view"}
            ]
            await viewer.send_message(b"echo VIEWER-$((40+2))\n")
            assert (await control(viewer, "error"))["message"].startswith("this share link")  # type: ignore[union-attr]
            out = await run_until(owner_ws, "echo owner-$((9*9))", "owner-81")
            assert "VIEWER" not in out
            seen, _ = await read_until(viewer, b"owner-81")
            assert b"VIEWER-42" not in seen
            await owner_ws.send_message(json.dumps({"type": "revoke", "link": shared["link"]}))
            assert await close_code(viewer) == CloseCode.REVOKED  # passed on by the proxy
        async with dial(base, where["url"], where["token"]) as again:
            assert await close_code(again) == CloseCode.UNAUTHORIZED  # the terminal refuses it
        # a typing link's viewer reaches the shell
        typing = post(base, "/api/terminal/share", {"client": owner["client"], "mode": "type"})
        async with dial(base, owner["url"], typing.json()["token"]) as typist:
            assert (await control(typist, "hello"))["role"] == "type"
            await run_until(typist, "echo typist-$((6*6))", "typist-36")
            await read_until(owner_ws, b"typist-36")
        await owner_ws.send_message(b"exit\n")
        await control(owner_ws, "exit")
    # the recycle ends every link of the old instance
    with trio.fail_after(60):
        while post(base, "/api/terminal/shared", {"token": shared["token"]}).status_code != 410:
            await trio.sleep(0.3)
    async with dial(base, owner["url"], shared["token"]) as late:
        assert await close_code(late) in (CloseCode.UNAUTHORIZED, CloseCode.TERMINAL_GONE)
