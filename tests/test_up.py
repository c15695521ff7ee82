"""`webterm up` as a person runs it: a subprocess, real HTTP, real WebSockets through the proxy."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.terminal_client import run_in_terminal
from tests.upstack import webterm_up
from webterm.protocol import CloseCode, subprotocols_for


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with webterm_up("--spares", "1", "--max-terminals", "2") as url:
        yield url


def allocate(base: str, client: str | None = None) -> httpx.Response:
    return httpx.post(f"{base}/api/terminal", json={"client": client} if client else {}, timeout=30)


async def run(answer: dict[str, str], base: str, command: str, marker: str) -> str:
    return await run_in_terminal(answer["url"], answer["token"], command, marker, origin=base)


async def test_two_clients_get_different_terminals_and_the_same_one_again(base: str) -> None:
    first = allocate(base).json()
    second = allocate(base).json()
    assert first["terminal"] != second["terminal"]
    assert first["client"] != second["client"]
    again = allocate(base, first["client"]).json()
    assert (again["terminal"], again["reconnect"]) == (first["terminal"], True)
    assert again["url"].endswith(f"/terminals/{first['terminal']}/ws")
    assert "hello-42" in await run(again, base, "echo hello-$((6*7))", "hello-42")
    # at the cap (2): a third client gets a clear 503 with Retry-After
    busy = allocate(base)
    assert busy.status_code == 503
    assert int(busy.headers["Retry-After"]) >= 1
    assert busy.json()["retry_after"] >= 1
    # giving terminals back frees the pool for the next test
    for answer in (first, second):
        httpx.request("DELETE", f"{base}/api/terminal", json={"client": answer["client"]})


async def test_recycle_after_exit_gives_a_fresh_shell(base: str) -> None:
    with trio.fail_after(60):
        while (first := allocate(base)).status_code != 200:
            await trio.sleep(0.3)
    answer = first.json()
    await run(answer, base, "echo private > ~/note.txt; echo WROTE-'IT'", "WROTE-IT")
    async with open_websocket_url(
        answer["url"],
        subprotocols=subprotocols_for(answer["token"]),
        extra_headers=[(b"origin", base.encode())],
    ) as ws:
        await ws.send_message(b"exit 7\n")
        with trio.fail_after(15), pytest.raises(ConnectionClosed) as closed:
            while True:
                message = await ws.get_message()
                if isinstance(message, str) and json.loads(message)["type"] == "exit":
                    assert json.loads(message)["status"] == 7
        assert closed.value.reason.code == CloseCode.NORMAL
    with trio.fail_after(60):
        while True:
            again = allocate(base, answer["client"]).json()
            if again.get("terminal") and not again["reconnect"]:
                break  # the recycled terminal is no longer this client's
            await trio.sleep(0.3)
    out = await run(again, base, "cat ~/note.txt; echo CHECKED-'IT'", "CHECKED-IT")
    assert "private" not in out
    httpx.request("DELETE", f"{base}/api/terminal", json={"client": answer["client"]})


async def test_proxy_refuses_bad_tokens_and_foreign_origins(base: str) -> None:
    answer = allocate(base).json()
    url = answer["url"]
    other = url.replace(answer["terminal"], "terminal-9")
    cases = [
        (url, subprotocols_for("forged"), base, CloseCode.UNAUTHORIZED),
        (other, subprotocols_for(answer["token"]), base, CloseCode.UNAUTHORIZED),
        (url, subprotocols_for(answer["token"]), "http://evil.example", CloseCode.FORBIDDEN_ORIGIN),
    ]
    for target, protocols, origin, code in cases:
        async with open_websocket_url(
            target, subprotocols=protocols, extra_headers=[(b"origin", origin.encode())]
        ) as ws:
            with trio.fail_after(10), pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == code
    httpx.request("DELETE", f"{base}/api/terminal", json={"client": answer["client"]})


def test_page_and_api_errors(base: str) -> None:
    page = httpx.get(f"{base}/")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert (
        httpx.get(f"{base}/static/app.js")
        .headers["content-type"]
        .startswith(("application/javascript", "text/javascript"))
    )
    for body in (b"not json", b"[1]"):
        bad = httpx.post(f"{base}/api/terminal", content=body)
        assert bad.status_code == 400
        assert "error" in bad.json()
    huge = httpx.post(f"{base}/api/terminal", content=b"{" + b" " * 100_000 + b"}")
    assert huge.status_code == 413
    assert httpx.get(f"{base}/healthz").status_code == 200
    assert httpx.get(f"{base}/readyz").status_code == 200
    assert "webterm_http_requests_total" in httpx.get(f"{base}/metrics").text
