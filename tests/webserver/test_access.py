"""The webserver's access gate and per-address cap, over real HTTP, with the manager
stood in by an httpx MockTransport."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio

from webterm.config import ConfigError, WebserverConfig
from webterm.protocol import client_hash
from webterm.webserver.app import serve

from ..credentials import CREDENTIAL, KEY_SOURCE, MANAGER_SECRET

SECRET = b"webserver-test-secret-0123456789"


def fake_manager() -> httpx.MockTransport:
    names = itertools.count()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/allocations":
            return httpx.Response(200, json={
                "terminal": f"terminal-{next(names)}", "address": "127.0.0.1:1",
                "token": "t", "reconnect": False,
                "client_hash": client_hash(MANAGER_SECRET, json.loads(request.content)["client"]),
            })  # fmt: skip
        return httpx.Response(200, json={"status": "ready"})

    return httpx.MockTransport(handler)


@asynccontextmanager
async def webserver(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    config = WebserverConfig(
        secret=SECRET,
        manager_url="http://manager",
        manager_credential=CREDENTIAL,
        keys=KEY_SOURCE,
        port=0,
        **overrides,
    )
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: serve(
            config, task_status=task_status, manager_transport=fake_manager()
        ))  # fmt: skip
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            yield http
        nursery.cancel_scope.cancel()


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"me:{password}".encode()).decode()}


async def test_password_gate_challenges_and_admits_the_right_password() -> None:
    async with webserver(access="password", access_password=b"open sesame") as http:
        refused = await http.post("/api/terminal", json={})
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic")
        assert (await http.get("/", headers=basic("wrong"))).status_code == 401
        assert (
            await http.post("/api/terminal", json={}, headers=basic("open sesame"))
        ).status_code == 200
        assert (await http.get("/healthz")).status_code == 200  # probes stay open


async def test_header_gate_trusts_only_the_trusted_proxy() -> None:
    async with webserver(access="header", trusted_proxies=("10.9.9.9",)) as http:
        # we connect from 127.0.0.1, which is not the trusted proxy: the header is not believed
        response = await http.post("/api/terminal", json={}, headers={"X-Forwarded-User": "eve"})
        assert response.status_code == 403
    async with webserver(access="header", trusted_proxies=("127.0.0.1",)) as http:
        assert (await http.post("/api/terminal", json={})).status_code == 403  # no header
        ok = await http.post("/api/terminal", json={}, headers={"X-Forwarded-User": "ada"})
        assert ok.status_code == 200


def test_gates_need_their_settings() -> None:
    with pytest.raises(ConfigError):
        WebserverConfig(
            secret=SECRET, manager_credential=CREDENTIAL, manager_url="http://m", access="password"
        )
    with pytest.raises(ConfigError):
        WebserverConfig(
            secret=SECRET, manager_credential=CREDENTIAL, manager_url="http://m", access="header"
        )


async def test_one_address_may_hold_only_so_many_terminals() -> None:
    async with webserver(max_per_address=3) as http:
        answers = [await http.post("/api/terminal", json={}) for _ in range(3)]
        assert all(a.status_code == 200 for a in answers)
        refused = await http.post("/api/terminal", json={})
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert "address" in refused.json()["error"]
        # a client that already holds one still gets it back
        again = await http.post("/api/terminal", json={"client": answers[0].json()["client"]})
        assert again.status_code == 200
        # giving one back makes room
        await http.request("DELETE", "/api/terminal", json={"client": answers[1].json()["client"]})
        assert (await http.post("/api/terminal", json={})).status_code == 200


async def test_requests_are_rate_limited_per_client() -> None:
    async with webserver(max_per_address=0) as http:
        first = (await http.post("/api/terminal", json={})).json()
        statuses = [
            (await http.post("/api/terminal", json={"client": first["client"]})).status_code
            for _ in range(15)
        ]
        assert 429 in statuses
        assert statuses[0] == 200


async def test_rate_limits_are_configurable_per_client_and_per_address() -> None:
    async with webserver(max_per_address=0, client_rate=(0.01, 2), address_rate=(0.01, 3)) as http:
        first = (await http.post("/api/terminal", json={})).json()
        again = await http.post("/api/terminal", json={"client": first["client"]})
        over = await http.post("/api/terminal", json={"client": first["client"]})
        assert (again.status_code, over.status_code) == (200, 429)  # client burst: 2
        assert int(over.headers["Retry-After"]) >= 1
        other = await http.post("/api/terminal", json={})  # a new client, same address
        assert other.status_code == 429  # address burst: 3 (the refused one counted too)
    with pytest.raises(ConfigError):
        WebserverConfig(
            secret=SECRET,
            manager_credential=CREDENTIAL,
            manager_url="http://m",
            client_rate=(0.0, 5),
        )


async def test_tab_identities_are_server_issued() -> None:
    async with webserver() as http:
        forged = await http.post("/api/terminal", json={"client": "guessed-id"})
        assert forged.json()["client"] != "guessed-id"
        tampered = forged.json()["client"][:-2] + "xx"
        assert (await http.post("/api/terminal", json={"client": tampered})).json()[
            "client"
        ] != tampered


# --- the DNS-rebinding guard -------------------------------------------------------------------


async def raw_request(port: int, head: str) -> bytes:
    """Send ``head`` as typed (a browser lets a page pick the name, not the Host header;
    rebinding makes it another site's name) and return the status line."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(head.encode())
        answer = b""
        with trio.fail_after(10):
            while b"\r\n" not in answer:
                data = await stream.receive_some(4096)
                if not data:
                    break
                answer += data
    return answer.partition(b"\r\n")[0]


async def test_on_loopback_only_names_of_this_machine_are_answered() -> None:
    async with webserver(host="127.0.0.1") as http:
        port = http.base_url.port
        assert port is not None
        evil = await http.post("/api/terminal", json={}, headers={"Host": f"evil.example:{port}"})
        assert evil.status_code == 403
        assert "localhost" in evil.json()["error"]
        for name in ("localhost", "127.0.0.1", "webterm.localhost"):
            ok = await http.post("/api/terminal", json={}, headers={"Host": f"{name}:{port}"})
            assert ok.status_code == 200, name
        upgrade = (
            "GET /terminals/terminal-0/ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: webterm.v1\r\n\r\n"
        )
        assert b" 403" in await raw_request(port, upgrade.format(f"evil.example:{port}"))
        # the same handshake for this machine's name reaches the proxy (which wants a token)
        assert b" 403" not in await raw_request(port, upgrade.format(f"localhost:{port}"))


async def test_names_of_allowed_origins_are_answered() -> None:
    async with webserver(host="127.0.0.1", allowed_origins=("https://portal.example",)) as http:
        ok = await http.post("/api/terminal", json={}, headers={"Host": "portal.example"})
        assert ok.status_code == 200
        other = await http.post("/api/terminal", json={}, headers={"Host": "other.example"})
        assert other.status_code == 403
