"""Files through `webterm up`'s webserver relay (/terminals/NAME/files/...): a subprocess,
real HTTP (httpx, and a raw socket for a browser that goes away), real WebSockets."""

from __future__ import annotations

import shlex
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from tests.terminal_client import read_until, run_until
from tests.upstack import webterm_up
from webterm.protocol import subprotocols_for


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with webterm_up("--spares", "1", "--max-terminals", "3", "--max-upload", "64K") as url:
        yield url


def names(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


async def allocate(http: httpx.AsyncClient, base: str) -> dict[str, str]:
    with trio.fail_after(60):
        while (answer := await http.post(f"{base}/api/terminal", json={})).status_code != 200:
            await trio.sleep(0.3)
    return dict(answer.json())


async def fresh_token(http: httpx.AsyncClient, base: str, held: dict[str, str]) -> str:
    """A new token for ``held``'s terminal, as the page asks before each transfer."""
    again = await http.post(f"{base}/api/terminal", json={"client": held["client"]})
    assert again.json()["terminal"] == held["terminal"]
    return str(again.json()["token"])


@asynccontextmanager
async def shell_in(
    base: str, held: dict[str, str], directory: Path
) -> AsyncIterator[WebSocketConnection]:
    headers = [(b"origin", base.encode())]
    async with open_websocket_url(
        held["url"], subprotocols=subprotocols_for(held["token"]), extra_headers=headers
    ) as ws:
        await run_until(ws, f"cd {shlex.quote(str(directory))} && echo 'IN''-DIR'", "IN-DIR")
        yield ws


def files(base: str, held: dict[str, str], rest: str) -> str:
    return f"{base}/terminals/{held['terminal']}/files/{rest}"


async def test_an_upload_through_the_relay_lands_in_the_shells_directory(
    base: str, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        held = await allocate(http, base)
        async with shell_in(base, held, tmp_path):
            token = await fresh_token(http, base, held)
            answer = await http.put(
                files(base, held, quote("über.txt")),
                content=b"relayed\n",
                headers={"Authorization": f"Bearer {token}", "Origin": base},
            )
            assert answer.status_code == 201, answer.text
            assert answer.json() == {"name": "über.txt", "size": 8}
            too_big = await http.put(
                files(base, held, "big.bin"),
                content=b"x" * (64 * 1024 + 1),
                headers={"Authorization": f"Bearer {token}"},
            )
            assert too_big.status_code == 413
        await http.request("DELETE", f"{base}/api/terminal", json={"client": held["client"]})
    assert names(tmp_path) == ["über.txt"]
    assert (tmp_path / "über.txt").read_bytes() == b"relayed\n"


async def test_the_relay_refuses_other_terminals_forged_tokens_and_foreign_pages(
    base: str, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        mine, theirs = await allocate(http, base), await allocate(http, base)
        assert mine["terminal"] != theirs["terminal"]
        async with shell_in(base, mine, tmp_path):
            url = files(base, mine, "x.txt")
            cases = [
                ({}, 401),
                ({"Authorization": "Bearer forged"}, 401),
                ({"Authorization": f"Bearer {theirs['token']}"}, 403),  # another terminal's
                (
                    {"Authorization": f"Bearer {mine['token']}", "Origin": "http://evil.example"},
                    403,
                ),
            ]
            for headers, status in cases:
                answer = await http.put(url, content=b"x", headers=headers)
                assert answer.status_code == status, (headers, answer.text)
            stolen = await http.get(
                files(base, mine, "download/anything"),
                headers={"Authorization": f"Bearer {theirs['token']}"},
            )
            assert stolen.status_code == 403
        for held in (mine, theirs):
            await http.request("DELETE", f"{base}/api/terminal", json={"client": held["client"]})
    assert names(tmp_path) == []


async def test_a_browser_gone_midway_leaves_no_file_and_a_download_comes_through(
    base: str, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        held = await allocate(http, base)
        async with shell_in(base, held, tmp_path) as ws:
            token = await fresh_token(http, base, held)
            host, port = base.removeprefix("http://").rsplit(":", 1)
            stream = await trio.open_tcp_stream(host, int(port))
            head = (
                f"PUT /terminals/{held['terminal']}/files/cut.bin HTTP/1.1\r\nHost: {host}:{port}"
                f"\r\nAuthorization: Bearer {token}\r\nContent-Length: 60000\r\n\r\n"
            )
            await stream.send_all(head.encode() + b"c" * 20_000)
            with trio.fail_after(10):  # the part file exists while the body comes in
                while not names(tmp_path):
                    await trio.sleep(0.05)
            await stream.aclose()
            with trio.fail_after(10):
                while names(tmp_path):
                    await trio.sleep(0.05)

            (tmp_path / "out.txt").write_text("fetched through the relay\n")
            await ws.send_message(b"webterm-download out.txt\n")
            _, controls = await read_until(ws, b"sent to the browser")
            offer = next(c for c in controls if c["type"] == "download")
            got = await http.get(
                files(base, held, f"download/{offer['id']}"),
                headers={"Authorization": f"Bearer {await fresh_token(http, base, held)}"},
            )
            assert got.status_code == 200
            assert got.content == b"fetched through the relay\n"
            assert got.headers["content-disposition"].startswith("attachment;")
            assert offer["name"] == "out.txt"
        await http.request("DELETE", f"{base}/api/terminal", json={"client": held["client"]})
    assert names(tmp_path) == ["out.txt"]
