"""The manager over real HTTP with the local backend: real terminal processes."""

from __future__ import annotations

import base64
import hmac
import json
import math
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import httpx
import psutil
import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from tests.terminal_client import run_in_terminal
from webterm.config import PUBLIC_KEYS_ENV, ManagerConfig
from webterm.manager.app import serve
from webterm.manager.credentials import REPORT_GRACE
from webterm.manager.local import LocalBackend
from webterm.manager.pool import Event, ScaleTo, TerminalAppeared, TerminalGone
from webterm.protocol import (
    TOKEN_AUDIENCE,
    KeySet,
    ShareClaims,
    SigningKey,
    read_any_token,
    read_token,
    subprotocols_for,
)

from ..credentials import AUTH, KEY, KEYS, manager_keys, token


@asynccontextmanager
async def manager(**overrides: object) -> AsyncIterator[httpx.AsyncClient]:
    settings: dict[str, object] = {
        **manager_keys(),
        "port": 0,
        "spares": 1,
        "max_terminals": 2,
        "shell": ("/bin/bash", "--norc", "--noprofile", "-i"),
        **overrides,
    }
    config = ManagerConfig(**settings)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, config)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=30, headers=AUTH
        ) as http:
            yield http
        nursery.cancel_scope.cancel()


async def run_in(answer: dict[str, str], command: str, marker: str) -> str:
    return await run_in_terminal(f"ws://{answer['address']}/ws", answer["token"], command, marker)


async def wait_for(http: httpx.AsyncClient, name: str, state: str) -> dict[str, object]:
    with trio.fail_after(20):
        while True:
            described = (await http.get(f"/v1/terminals/{name}")).json()
            if described.get("state") == state:
                return described  # type: ignore[no-any-return]
            await trio.sleep(0.05)


async def test_clients_get_their_own_terminal_and_the_same_one_again() -> None:
    async with manager() as http:
        a = (await http.post("/v1/allocations", json={"client": "tab:a"})).json()
        b = (await http.post("/v1/allocations", json={"client": "tab:b"})).json()
        assert a["terminal"] != b["terminal"]
        assert a["reconnect"] is False
        again = (await http.post("/v1/allocations", json={"client": "tab:a"})).json()
        assert (again["terminal"], again["reconnect"]) == (a["terminal"], True)
        out = await run_in(a, "echo hi-$((40+2))", "hi-42")
        assert "hi-42" in out
        listing = (await http.get("/v1/terminals")).json()["terminals"]
        assert all("tab:a" not in json.dumps(t) for t in listing)  # never the raw client id


async def test_shell_exit_recycles_into_a_fresh_terminal_without_the_old_files() -> None:
    async with manager(spares=1, max_terminals=1) as http:
        first = (await http.post("/v1/allocations", json={"client": "tab:a"})).json()
        await run_in(first, "echo secret > ~/mine.txt; ls ~; echo WROTE-'OK'", "WROTE-OK")
        async with open_websocket_url(
            f"ws://{first['address']}/ws", subprotocols=subprotocols_for(first["token"])
        ) as ws:
            await ws.send_message(b"exit\n")
            with trio.fail_after(15):
                while True:
                    message = await ws.get_message()
                    if isinstance(message, str) and json.loads(message)["type"] == "exit":
                        break
        with trio.fail_after(30):
            while True:
                second = await http.post("/v1/allocations", json={"client": "tab:b"})
                if second.status_code == 200:
                    break
                await trio.sleep(0.2)
        fresh = second.json()
        assert fresh["terminal"] == first["terminal"]
        described = (await http.get(f"/v1/terminals/{fresh['terminal']}")).json()
        assert described["instance"] != read_token(KEYS, first["token"], now=time.time()).instance
        out = await run_in(fresh, "ls ~/mine.txt; echo LISTED-'OK'", "LISTED-OK")
        assert "No such file" in out
        with pytest.raises(ConnectionRejected):  # the old token does not open the new instance
            async with open_websocket_url(
                f"ws://{fresh['address']}/ws", subprotocols=subprotocols_for(first["token"])
            ):
                pass


async def test_cap_answers_503_with_retry_after_and_release_frees_capacity() -> None:
    async with manager(spares=1, max_terminals=1) as http:
        assert (await http.post("/v1/allocations", json={"client": "a"})).status_code == 200
        busy = await http.post("/v1/allocations", json={"client": "b"})
        assert busy.status_code == 503
        assert int(busy.headers["Retry-After"]) > 0
        assert busy.json()["retry_after"] > 0
        assert busy.json()["error"]
        assert (await http.delete("/v1/allocations/a")).status_code == 200
        assert (await http.delete("/v1/allocations/a")).status_code == 404
        with trio.fail_after(30):
            while (await http.post("/v1/allocations", json={"client": "b"})).status_code != 200:
                await trio.sleep(0.2)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/v1/allocations", b"not json", 400),
        ("POST", "/v1/allocations", b"[1,2]", 400),
        ("POST", "/v1/allocations", b'{"client": 5}', 400),
        ("POST", "/v1/allocations", b'{"client": ""}', 400),
        ("POST", "/v1/allocations", json.dumps({"client": "x" * 5000}).encode(), 400),
        ("POST", "/v1/allocations", b"{" + b" " * 100_000 + b"}", 413),
        ("GET", "/v1/allocations", b"", 405),
        ("GET", "/v1/terminals/terminal-99", b"", 404),
        ("GET", "/v1/terminals/..%2F..%2Fetc", b"", 404),
        ("POST", "/v1/terminals/terminal-0/recycle", b"{}", 401),
        ("GET", "/nothing/here", b"", 404),
    ],
)
async def test_bad_input_gets_a_json_4xx(method: str, path: str, body: bytes, status: int) -> None:
    async with manager() as http:
        response = await http.request(method, path, content=body)
        assert response.status_code == status
        assert response.headers["content-type"].startswith("application/json")
        assert "error" in response.json()


async def report(
    http: httpx.AsyncClient, name: str, bearer: str | None, action: str = "connection"
) -> httpx.Response:
    """A terminal's report as its server sends it, authenticated with ``bearer``."""
    body = {"connected": True} if action == "connection" else {"reason": "exit"}
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    async with httpx.AsyncClient(base_url=http.base_url, headers=headers) as terminal:
        return await terminal.post(f"/v1/terminals/{name}/{action}", json=body)


async def test_a_report_is_accepted_only_for_the_token_s_own_terminal_and_instance() -> None:
    async with manager(spares=2, max_terminals=2) as http:
        mine = (await http.post("/v1/allocations", json={"client": "tab:a"})).json()
        other = (await http.post("/v1/allocations", json={"client": "tab:b"})).json()
        before = (await http.get("/v1/terminals")).json()
        assert {t["state"] for t in before["terminals"]} == {"in-use"}
        for action in ("recycle", "connection"):
            refused = await report(http, other["terminal"], mine["token"], action)
            assert refused.status_code == 403, refused.text
            assert "another terminal" in refused.json()["error"]
        # the token's own terminal but an instance it no longer is
        described = (await http.get(f"/v1/terminals/{mine['terminal']}")).json()
        stale = token(mine["terminal"], "an-older-instance")
        assert (await report(http, mine["terminal"], stale, "recycle")).status_code == 403
        # signed by a key the manager does not publish (another manager's, or retired)
        forged = token(mine["terminal"], described["instance"], key=SigningKey.generate())
        unknown = await report(http, mine["terminal"], forged, "recycle")
        assert unknown.status_code == 401
        assert "unknown or retired key" in unknown.json()["error"]
        assert (await report(http, mine["terminal"], None, "recycle")).status_code == 401
        # the webserver's credential is not a terminal's
        assert (await report(http, mine["terminal"], AUTH["Authorization"][7:])).status_code == 401
        assert (await http.get("/v1/terminals")).json() == before  # nothing changed
        # the terminal's own token: accepted, also long past its expiry (within the grace)
        expired = token(mine["terminal"], described["instance"], ttl=-3600)
        assert (await report(http, mine["terminal"], expired)).status_code == 200
        too_old = token(mine["terminal"], described["instance"], ttl=-REPORT_GRACE - 10)
        assert (await report(http, mine["terminal"], too_old)).status_code == 401
        assert (await report(http, mine["terminal"], mine["token"], "recycle")).status_code == 200
        await wait_for(http, other["terminal"], "in-use")  # untouched
        assert (await http.get(f"/v1/terminals/{other['terminal']}")).json() == next(
            t for t in before["terminals"] if t["name"] == other["terminal"]
        )


def _forge(header: dict[str, object], claims: dict[str, object], hmac_key: bytes | None) -> str:
    """A JWT built by hand: HS256 with ``hmac_key``, or unsigned (``alg: none``)."""

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    if hmac_key is None:
        return signing_input + "."
    return signing_input + "." + b64(hmac.digest(hmac_key, signing_input.encode(), "sha256"))


async def test_a_terminal_holding_only_what_its_pod_holds_reaches_no_other_terminal() -> None:
    """The threat model's "compromised terminal pod". Everything terminal A's server
    holds — its environment, its command line, the public keys it was given and the
    token its browser connected with — is handed to an attacker, who forges tokens for
    terminal B with it (unsigned, HMAC keyed with each of those, A's signature over B's
    claims, A's token as it is) and presents each to B's server and to the manager as a
    report on B. Every one is refused, B's pool entry and session are untouched, and A
    can still do the one thing it may: report on (recycle) itself."""
    async with manager(spares=2, max_terminals=2) as http:
        a = (await http.post("/v1/allocations", json={"client": "tab:a"})).json()
        b = (await http.post("/v1/allocations", json={"client": "tab:b"})).json()
        await run_in(a, "echo A-'UP'", "A-UP")  # A now holds its browser's token
        await run_in(b, "echo B-'UP'", "B-UP")
        (pty_a,) = [
            p for p in psutil.Process().children(recursive=True)
            if "pty" in p.cmdline() and a["terminal"] in p.cmdline()
        ]  # fmt: skip
        env, argv = pty_a.environ(), pty_a.cmdline()
        keys = KeySet.from_jwks(env[PUBLIC_KEYS_ENV])
        assert set(keys.keys) == {KEY.kid}  # public keys, and nothing that signs:
        assert not [k for k in env if k in ("WEBTERM_SECRET", "WEBTERM_SIGNING_KEY_FILE")]
        assert not [v for v in [*env.values(), *argv] if "PRIVATE KEY" in v]
        held = {v.encode() for v in [*env.values(), *argv, a["token"]]}
        public = KEY.private.public_key()
        held |= {public.public_bytes_raw(), KEY.public_pem(), env[PUBLIC_KEYS_ENV].encode()}

        b_before = (await http.get(f"/v1/terminals/{b['terminal']}")).json()
        b_claims: dict[str, object] = {
            "terminal": b["terminal"], "instance": b_before["instance"], "client": "x" * 32,
            "exp": int(time.time()) + 60, "aud": TOKEN_AUDIENCE,
        }  # fmt: skip
        header_a, _, signature_a = a["token"].split(".")
        payload_b = base64.urlsafe_b64encode(json.dumps(b_claims).encode()).rstrip(b"=")
        forgeries = [
            a["token"],  # A's own token, replayed at B
            f"{header_a}.{payload_b.decode()}.{signature_a}",  # A's signature, B's claims
            _forge({"alg": "none", "kid": KEY.kid}, b_claims, None),
            _forge({"alg": "none"}, b_claims, None),
            *(_forge({"alg": "HS256", "kid": KEY.kid, "typ": "JWT"}, b_claims, m) for m in held),
            *(_forge({"alg": "EdDSA", "kid": KEY.kid}, b_claims, m) for m in list(held)[:5]),
        ]
        b_url = f"ws://{b['address']}/ws"
        for forged in forgeries:
            with pytest.raises(ConnectionRejected) as rejected:
                async with open_websocket_url(b_url, subprotocols=subprotocols_for(forged)):
                    pass
            assert rejected.value.status_code in (401, 403)
            for action in ("recycle", "connection"):
                refused = await report(http, b["terminal"], forged, action)
                assert refused.status_code in (401, 403), (action, refused.text)
        assert (await http.get(f"/v1/terminals/{b['terminal']}")).json()["instance"] == (
            b_before["instance"]
        )
        assert "B-STILL" in await run_in(b, "echo B-'STILL'", "B-STILL")
        # what A may do: recycle itself, with the token its browser sent
        assert (await report(http, a["terminal"], a["token"], "recycle")).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/allocations", {"client": "tab:a"}),
        ("POST", "/v1/shares", {"client": "tab:a", "mode": "view"}),
        ("DELETE", "/v1/allocations/tab%3Aa", None),
        ("GET", "/v1/terminals", None),
        ("GET", "/v1/terminals/terminal-0", None),
    ],
)
async def test_allocation_and_listing_need_the_webserver_credential(
    method: str, path: str, body: dict[str, str] | None
) -> None:
    async with manager() as http:
        await wait_for(http, "terminal-0", "free")
        held = (await http.post("/v1/allocations", json={"client": "tab:a"})).json()
        await wait_for(http, "terminal-1", "free")  # the new spare: the pool is settled
        before = (await http.get("/v1/terminals")).json()
        for headers, status in [
            ({}, 401),
            ({"Authorization": "Bearer wrong-credential-0123456789"}, 403),
            ({"Authorization": "Basic " + AUTH["Authorization"][7:]}, 401),
            ({"Authorization": f"Bearer {held['token']}"}, 403),  # a terminal's credential
        ]:
            async with httpx.AsyncClient(base_url=http.base_url, headers=headers) as stranger:
                refused = await stranger.request(method, path, json=body)
            assert refused.status_code == status, (headers, refused.text)
            assert refused.json()["error"]
        assert (await http.get("/v1/terminals")).json() == before  # pool unchanged


async def test_a_share_token_is_for_the_clients_own_terminal_as_it_is_now() -> None:
    async with manager() as http:
        mine = (await http.post("/v1/allocations", json={"client": "tab:a"})).json()
        answer = await http.post("/v1/shares", json={"client": "tab:a", "mode": "type"})
        assert answer.status_code == 200
        shared = answer.json()
        claims = read_any_token(KEYS, shared["token"], now=time.time())
        described = (await http.get(f"/v1/terminals/{mine['terminal']}")).json()
        assert isinstance(claims, ShareClaims)
        assert (claims.terminal, claims.instance) == (mine["terminal"], described["instance"])
        assert (claims.mode, claims.link) == ("type", shared["link"])
        again = (await http.post("/v1/shares", json={"client": "tab:a", "mode": "view"})).json()
        assert again["link"] != shared["link"]  # every link its own, to revoke alone
        nobody = await http.post("/v1/shares", json={"client": "tab:nobody", "mode": "view"})
        assert nobody.status_code == 404
        bad = await http.post("/v1/shares", json={"client": "tab:a", "mode": "admin"})
        assert bad.status_code == 400
        # a share token never authenticates a report
        refused = await report(http, mine["terminal"], shared["token"], "connection")
        assert refused.status_code == 401


async def test_the_public_keys_are_published_unauthenticated() -> None:
    retiring = SigningKey.generate()
    async with manager(previous_keys=retiring.key_set()) as http:
        async with httpx.AsyncClient(base_url=http.base_url) as anyone:
            answer = await anyone.get("/v1/keys")
        assert answer.status_code == 200
        keys = answer.json()["keys"]
        assert {k["kid"] for k in keys} == {KEY.kid, retiring.kid}
        assert all(set(k) == {"kty", "crv", "kid", "x", "use", "alg"} for k in keys)
        assert '"d"' not in answer.text  # no private part


async def test_no_terminal_process_survives_the_manager() -> None:
    me = psutil.Process()
    async with manager(spares=2, max_terminals=3) as http:
        await wait_for(http, "terminal-1", "free")
        assert len([c for c in me.children(recursive=True) if "pty" in " ".join(c.cmdline())]) >= 2
    with trio.fail_after(10):
        while [c for c in me.children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE]:
            await trio.sleep(0.05)


async def test_metrics_and_health() -> None:
    async with manager() as http:
        await wait_for(http, "terminal-0", "free")
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200
        await http.post("/v1/allocations", json={"client": "m"})
        metrics = (await http.get("/metrics")).text
        assert 'webterm_allocations_total{result="new"} 1.0' in metrics
        assert 'webterm_terminals{state="in-use"} 1.0' in metrics


async def test_a_dropped_waiting_request_leaves_no_terminal_busy() -> None:
    """A request waiting for a terminal is dropped (page closed, client timeout): the
    terminal started for it must not be handed to nobody and held at the cap."""
    async with manager(spares=0, max_terminals=1) as http:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(http.post, "/v1/allocations", json={"client": "gone-away"}))
            with trio.fail_after(20):  # it waits: the pool starts terminal-0 for it
                while (await http.get("/v1/terminals")).json()["terminals"] == []:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()  # the client hangs up
        with trio.fail_after(20):
            while any(
                t["state"] == "starting"
                for t in (await http.get("/v1/terminals")).json()["terminals"]
            ):
                await trio.sleep(0.05)
        listing = (await http.get("/v1/terminals")).json()["terminals"]
        assert not any(t["owned"] for t in listing), listing
        other = await http.post("/v1/allocations", json={"client": "someone-else"})
        assert other.status_code == 200, other.text


async def test_an_instance_scaled_away_at_once_leaves_no_home_and_no_ghost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool scales a terminal away right after it appeared (before its process
    started): the pool still hears it is gone, and its HOME directory is removed."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where HOMEs are made
    homes = trio.Path(tmp_path)
    backend = LocalBackend(ManagerConfig(**manager_keys()), manager_url="")  # type: ignore[arg-type]
    send, receive = trio.open_memory_channel[Event](math.inf)
    async with trio.open_nursery() as nursery:
        await nursery.start(backend.run, send)
        await backend.apply(ScaleTo(replicas=1))
        with trio.fail_after(20):
            appeared = await receive.receive()
            assert isinstance(appeared, TerminalAppeared)
            assert list(await homes.iterdir())  # its HOME exists
            await backend.apply(ScaleTo(replicas=0))
            async for event in receive:
                if isinstance(event, TerminalGone):
                    break
        assert event == TerminalGone(name=appeared.name, instance=appeared.instance)
        assert list(await homes.iterdir()) == []
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("evil.example:{port}", 403),
        ("evil.example", 403),
        ("127.0.0.1.nip.io:{port}", 403),
        ("127.0.0.1:{port}", 200),
        ("localhost:{port}", 200),
        ("[::1]:{port}", 200),
    ],
)
async def test_on_loopback_only_a_foreign_host_header_is_refused(host: str, status: int) -> None:
    """DNS rebinding: a page served as evil.example, its name pointed at 127.0.0.1, must
    not reach the manager as its same origin; names of this machine are answered."""
    async with manager() as http:
        port = http.base_url.port
        response = await http.get("/v1/terminals", headers={"Host": host.format(port=port)})
        assert response.status_code == status
        assert response.headers["content-type"].startswith("application/json")
        if status == 403:
            assert response.json()["error"]
        else:
            assert "terminals" in response.json()
