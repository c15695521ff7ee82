"""The webserver's HTTP side over real HTTP (hypercorn on a real port), with the manager
stood in by an httpx MockTransport: the page and its caching, the terminal API in every
identity mode, URL rewriting, error passthrough, limits, probes, metrics and logs."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
from pathlib import Path

import httpx
import pytest
import trio

from tests.webserver.stack import SECRET, FakeManager, proxied, running_webserver, terminal_server
from webterm.webserver import app as app_module
from webterm.webserver.identity import COOKIE_NAME, issue_id

INDEX = """<!doctype html>
<html><head>
<link rel="stylesheet" href="/static/app.css">
<script src="/static/app.js" defer></script>
<link rel="icon" href="/static/missing.svg">
</head><body></body></html>
"""
APP_JS = "console.log('webterm');\n" * 200  # compressible, > 1 KiB
APP_CSS = "body { margin: 0 }\n"


@pytest.fixture
def static_dir(tmp_path: Path) -> Path:
    root = tmp_path / "static"
    root.mkdir()
    (root / "index.html").write_text(INDEX)
    (root / "app.js").write_text(APP_JS)
    (root / "app.css").write_text(APP_CSS)
    (root / ".secret").write_text("dotfile")
    (root / "sub").mkdir()
    (root / "sub" / "x.txt").write_text("nested")
    (tmp_path / "outside.txt").write_text("outside")
    return root


def version_of(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()[:16]


PLAIN = {"Accept-Encoding": "identity"}


# --- the page -----------------------------------------------------------------------------


async def test_index_has_security_headers_no_cache_and_versioned_assets(static_dir: Path) -> None:
    async with running_webserver(static_dir=static_dir) as web:
        page = await web.http.get("/", headers=PLAIN)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    assert page.headers["etag"]
    csp = page.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'"
    # no inline script, no eval: only WebAssembly (the image addon's decoders)
    assert directives["script-src"] == "'self' 'wasm-unsafe-eval'"
    assert directives["style-src"] == "'self' 'unsafe-inline'"  # xterm.js injects styles
    assert directives["img-src"] == "'self' data:"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["base-uri"] == "'none'"
    # connect-src names exactly this host for WebSockets (proxy mode), not any ws:
    assert directives["connect-src"] == (
        f"'self' ws://127.0.0.1:{web.port} wss://127.0.0.1:{web.port}"
    )
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-frame-options"] == "DENY"
    body = page.text
    assert f'src="/static/app.js?v={version_of(APP_JS)}"' in body
    assert f'href="/static/app.css?v={version_of(APP_CSS)}"' in body
    assert 'href="/static/missing.svg"' in body  # a file that is not there is left alone


async def test_versioned_assets_are_immutable_and_others_revalidate(static_dir: Path) -> None:
    async with running_webserver(static_dir=static_dir) as web:
        version = version_of(APP_JS)
        pinned = await web.http.get(f"/static/app.js?v={version}", headers=PLAIN)
        assert pinned.status_code == 200
        assert pinned.text == APP_JS
        assert pinned.headers["content-type"] == "text/javascript; charset=utf-8"
        assert pinned.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert pinned.headers["x-content-type-options"] == "nosniff"

        for url in ("/static/app.js", "/static/app.js?v=0123456789abcdef"):  # none, stale
            loose = await web.http.get(url, headers=PLAIN)
            assert loose.status_code == 200
            assert loose.headers["cache-control"] == "public, max-age=300"
            assert loose.headers["etag"] == f'"{version}"'
            assert loose.headers["last-modified"].endswith("GMT")

        again = await web.http.get(
            "/static/app.js", headers={**PLAIN, "If-None-Match": f'"{version}"'}
        )
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == f'"{version}"'
        other = await web.http.get("/static/app.js", headers={**PLAIN, "If-None-Match": '"nope"'})
        assert other.status_code == 200
        since = await web.http.get(
            "/static/app.js",
            headers={**PLAIN, "If-Modified-Since": loose.headers["last-modified"]},
        )
        assert since.status_code == 304


async def test_text_assets_are_gzipped_for_clients_that_accept_it(static_dir: Path) -> None:
    async with (
        running_webserver(static_dir=static_dir) as web,
        httpx.AsyncClient(base_url=web.base) as raw,
    ):
        request = raw.build_request("GET", "/static/app.js", headers={"Accept-Encoding": "gzip"})
        response = await raw.send(request, stream=True)
        compressed = b"".join([chunk async for chunk in response.aiter_raw()])
        await response.aclose()
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.headers["etag"] == f'"{version_of(APP_JS)}-gz"'
    assert len(compressed) < len(APP_JS) // 4
    assert gzip.decompress(compressed).decode() == APP_JS


async def test_a_rebuilt_asset_gets_a_new_version(static_dir: Path) -> None:
    async with running_webserver(static_dir=static_dir) as web:
        before = (await web.http.get("/")).text
        (static_dir / "app.js").write_text(APP_JS + "// v2\n")
        after = (await web.http.get("/")).text
        new = version_of(APP_JS + "// v2\n")
        assert f"app.js?v={new}" in after
        assert f"app.js?v={new}" not in before
        assert (await web.http.get(f"/static/app.js?v={new}")).text.endswith("// v2\n")
        old = await web.http.get(f"/static/app.js?v={version_of(APP_JS)}")
        assert old.headers["cache-control"] == "public, max-age=300"  # no longer pinned


@pytest.mark.parametrize(
    "path",
    [
        "/static/.secret",
        "/static/../outside.txt",
        "/static/%2e%2e/outside.txt",
        "/static/sub",
        "/static/sub/../../outside.txt",
        "/static/nope.js",
        "/static/" + "a" * 300,
        "/static/a%00b",
    ],
)
async def test_static_serves_only_files_inside_the_directory(static_dir: Path, path: str) -> None:
    async with running_webserver(static_dir=static_dir) as web:
        response = await web.http.get(path)
        assert response.status_code == 404
        assert "error" in response.json()
        assert "outside" not in response.text
        assert (await web.http.get("/static/sub/x.txt")).text == "nested"


async def test_symlinks_out_of_the_static_directory_are_not_followed(static_dir: Path) -> None:
    (static_dir / "escape.txt").symlink_to(static_dir.parent / "outside.txt")
    async with running_webserver(static_dir=static_dir) as web:
        assert (await web.http.get("/static/escape.txt")).status_code == 404


async def test_missing_page_is_a_json_404(tmp_path: Path) -> None:
    async with running_webserver(static_dir=tmp_path) as web:
        response = await web.http.get("/")
    assert response.status_code == 404
    assert "not built" in response.json()["error"]


async def test_the_packaged_page_is_served() -> None:
    async with running_webserver() as web:
        page = await web.http.get("/")
        assert page.status_code == 200
        scripts = re.findall(r'src="(/static/[^"]+)"', page.text)
        assert scripts, "the built index.html loads a script"
        for src in scripts:
            asset = await web.http.get(src)
            assert asset.status_code == 200
            assert "immutable" in asset.headers["cache-control"]


# --- POST /api/terminal: identities ---------------------------------------------------------


async def test_tab_mode_issues_signed_ids_and_gives_the_same_id_the_same_terminal() -> None:
    async with running_webserver(identity="tab") as web:
        first = await web.http.post("/api/terminal", json={})
        assert first.status_code == 200
        answer = first.json()
        assert set(answer) == {"terminal", "url", "token", "reconnect", "client"}
        assert answer["reconnect"] is False
        assert first.headers["cache-control"] == "no-store"  # it carries a token
        client = answer["client"]
        random_part, dot, mac = client.partition(".")
        assert dot
        assert len(random_part) >= 22
        assert len(mac) >= 22

        again = (await web.http.post("/api/terminal", json={"client": client})).json()
        assert again["client"] == client
        assert (again["terminal"], again["reconnect"]) == (answer["terminal"], True)

        other = (await web.http.post("/api/terminal", json={})).json()
        assert other["client"] != client
        assert other["terminal"] != answer["terminal"]
        ids = web.manager.clients()
        assert ids[0] == ids[1] == f"tab:{random_part}"  # namespaced, without the MAC
        assert ids[2].startswith("tab:")
        assert ids[2] != ids[0]


@pytest.mark.parametrize(
    "presented",
    [
        "guessed-id",
        "AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
        None,
        "",
    ],
)
async def test_tab_mode_replaces_ids_it_did_not_issue(presented: str | None) -> None:
    async with running_webserver(identity="tab") as web:
        answer = (await web.http.post("/api/terminal", json={"client": presented})).json()
        assert answer["client"] != presented
        assert web.manager.clients() == [f"tab:{answer['client'].partition('.')[0]}"]


async def test_tab_mode_refuses_tampered_and_foreign_ids() -> None:
    async with running_webserver(identity="tab") as web:
        genuine = (await web.http.post("/api/terminal", json={})).json()["client"]
        random_part, _, mac = genuine.partition(".")
        tampered = f"{random_part[:-1]}{'A' if random_part[-1] != 'A' else 'B'}.{mac}"
        signed_elsewhere = issue_id(b"another-secret-0123456789abcdef", "tab")
        as_browser = issue_id(SECRET, "browser")  # right key, wrong kind
        for presented in (tampered, signed_elsewhere, as_browser):
            answer = (await web.http.post("/api/terminal", json={"client": presented})).json()
            assert answer["client"] not in (presented, genuine)
        assert len(set(web.manager.clients())) == 4


async def test_browser_mode_keeps_the_id_in_an_httponly_strict_cookie() -> None:
    async with running_webserver(identity="browser") as web:
        first = await web.http.post("/api/terminal", json={})
        assert first.json()["client"] is None  # never shown to scripts
        cookie = first.headers["set-cookie"]
        attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
        assert {"httponly", "path", "max-age"} <= attributes
        assert "samesite=strict" in cookie.lower()
        assert "secure" not in attributes  # plain http: a Secure cookie would be dropped
        value = web.http.cookies[COOKIE_NAME]
        # the client kept the cookie: the next request is the same browser
        second = await web.http.post("/api/terminal", json={})
        assert second.json()["terminal"] == first.json()["terminal"]
        assert second.json()["reconnect"] is True
        assert "set-cookie" not in second.headers
        # a tab id in the body means nothing in browser mode
        assert web.manager.clients()[0] == f"browser:{value.partition('.')[0]}"

        async with httpx.AsyncClient(
            base_url=web.base, cookies={COOKIE_NAME: f"{value.partition('.')[0]}.forged"}
        ) as stranger:
            forged = await stranger.post("/api/terminal", json={})
        assert forged.json()["terminal"] != first.json()["terminal"]
        assert COOKIE_NAME in forged.headers["set-cookie"]


async def test_browser_mode_cookie_is_secure_behind_a_trusted_tls_proxy() -> None:
    async with running_webserver(identity="browser", trusted_proxies=("127.0.0.1",)) as web:
        response = await web.http.post(
            "/api/terminal", json={}, headers={"X-Forwarded-Proto": "https"}
        )
        assert "secure" in response.headers["set-cookie"].lower().split("; ")
    async with running_webserver(identity="browser", trusted_proxies=("10.0.0.1",)) as web:
        response = await web.http.post(
            "/api/terminal", json={}, headers={"X-Forwarded-Proto": "https"}
        )
        assert "secure" not in response.headers["set-cookie"].lower().split("; ")


async def test_ip_mode_uses_the_peer_and_ignores_forwarded_for_from_strangers() -> None:
    async with running_webserver(identity="ip") as web:
        answer = await web.http.post(
            "/api/terminal", json={}, headers={"X-Forwarded-For": "203.0.113.9"}
        )
        assert answer.json()["client"] is None
        assert web.manager.clients() == ["ip:127.0.0.1"]


async def test_ip_mode_believes_trusted_proxies_and_takes_the_rightmost_untrusted_hop() -> None:
    async with running_webserver(identity="ip", trusted_proxies=("127.0.0.1", "10.0.0.0/8")) as web:
        for forwarded in (
            "203.0.113.9",
            "203.0.113.9, 10.1.2.3",  # our own ingress appended itself
            "198.51.100.66, 203.0.113.9, 10.1.2.3",  # the client made up the first hop
        ):
            await web.http.post("/api/terminal", json={}, headers={"X-Forwarded-For": forwarded})
        assert web.manager.clients() == ["ip:203.0.113.9"] * 3


async def test_ip_mode_reads_every_forwarded_for_line() -> None:
    # A proxy that adds its own line after the client's (HAProxy's option forwardfor)
    # must not let the client's made-up line name somebody else's address.
    async with running_webserver(identity="ip", trusted_proxies=("127.0.0.1",)) as web:
        headers = [("X-Forwarded-For", "198.51.100.66"), ("X-Forwarded-For", "203.0.113.9")]
        await web.http.post("/api/terminal", json={}, headers=headers)
        assert web.manager.clients() == ["ip:203.0.113.9"]


# --- POST /api/terminal: the URL the browser dials --------------------------------------------


async def test_proxy_mode_url_is_this_origin_and_wss_only_behind_trusted_tls() -> None:
    async with running_webserver(trusted_proxies=("127.0.0.1",)) as web:
        plain = (await web.http.post("/api/terminal", json={})).json()
        assert plain["url"] == f"ws://127.0.0.1:{web.port}/terminals/{plain['terminal']}/ws"
        behind = await web.http.post(
            "/api/terminal",
            json={},
            headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "term.example.org"},
        )
        name = behind.json()["terminal"]
        assert behind.json()["url"] == f"wss://term.example.org/terminals/{name}/ws"
        csp = (
            await web.http.get("/healthz", headers={"X-Forwarded-Host": "term.example.org"})
        ).headers["content-security-policy"]
        assert "connect-src 'self' ws://term.example.org wss://term.example.org" in csp
    async with running_webserver() as web:  # nobody trusted: the headers are ignored
        spoofed = await web.http.post(
            "/api/terminal",
            json={},
            headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"},
        )
        assert spoofed.json()["url"].startswith(f"ws://127.0.0.1:{web.port}/terminals/")


async def test_a_host_header_we_would_not_echo_is_refused() -> None:
    # (a Host header of that kind is refused before, on loopback, as not this machine's)
    async with running_webserver(trusted_proxies=("127.0.0.1",)) as web:
        response = await web.http.post(
            "/api/terminal", json={}, headers={"X-Forwarded-Host": "evil.example/x?y="}
        )
        assert response.status_code == 400
        assert "Host" in response.json()["error"]
        assert web.manager.clients() == []


async def test_nodeport_mode_url_is_the_terminals_public_address() -> None:
    manager = FakeManager(terminal_address="192.0.2.7:31234")
    async with running_webserver(manager, address_mode="nodeport") as web:
        answer = (await web.http.post("/api/terminal", json={})).json()
        assert answer["url"] == "ws://192.0.2.7:31234/ws"
        assert (
            "connect-src 'self' ws:;"
            in (await web.http.get("/")).headers["content-security-policy"]
        )
    async with running_webserver(
        manager, address_mode="nodeport", public_host="terminals.example.org"
    ) as web:
        answer = (await web.http.post("/api/terminal", json={})).json()
        assert answer["url"] == "ws://terminals.example.org:31234/ws"
        csp = (await web.http.get("/healthz")).headers["content-security-policy"]
        assert "connect-src 'self' ws://terminals.example.org:*;" in csp


# --- POST /api/terminal: refusals and errors ---------------------------------------------------


@pytest.mark.parametrize("status", [503, 429])
async def test_manager_refusals_pass_through_with_retry_after(status: int) -> None:
    manager = FakeManager()
    manager.override = lambda _: httpx.Response(
        status, json={"error": "all terminals are busy", "retry_after": 7}
    )
    async with running_webserver(manager) as web:
        response = await web.http.post("/api/terminal", json={})
    assert response.status_code == status
    assert response.json() == {"error": "all terminals are busy", "retry_after": 7}
    assert response.headers["retry-after"] == "7"


async def test_manager_retry_after_header_alone_is_passed_on() -> None:
    manager = FakeManager()
    manager.override = lambda _: httpx.Response(429, headers={"Retry-After": "12"}, text="slow")
    async with running_webserver(manager) as web:
        response = await web.http.post("/api/terminal", json={})
    assert response.status_code == 429
    assert response.json()["retry_after"] == 12
    assert response.headers["retry-after"] == "12"


def _down(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.mark.parametrize(
    "override",
    [
        _down,
        lambda _: httpx.Response(200, text="<html>not json</html>"),
        lambda _: httpx.Response(
            200, json={"terminal": "Bad Name!", "address": "x:1", "token": "t"}
        ),
        lambda _: httpx.Response(200, json=["terminal-0"]),
        lambda _: httpx.Response(500, text="internal"),
    ],
    ids=["unreachable", "not-json", "bad-name", "not-an-object", "500"],
)
async def test_a_broken_manager_is_a_503_with_retry_after(override: object) -> None:
    manager = FakeManager()
    manager.override = override  # type: ignore[assignment]
    async with running_webserver(manager) as web:
        response = await web.http.post("/api/terminal", json={})
        assert response.status_code == 503
        assert response.json()["retry_after"] >= 1
        assert int(response.headers["retry-after"]) >= 1
        assert set(response.json()) == {"error", "retry_after"}
        assert (await web.http.get("/healthz")).status_code == 200  # still serving


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'"client"', "application/json"),
        (b'{"client": 5}', "application/json"),
        (b'{"client": {"id": "x"}}', "application/json"),
        (b"\xff\xfe", "text/plain"),
        (b"[" * 5000 + b"]" * 5000, "application/json"),
    ],
)
async def test_bad_bodies_are_400_json(body: bytes, content_type: str) -> None:
    async with running_webserver() as web:
        response = await web.http.post(
            "/api/terminal", content=body, headers={"Content-Type": content_type}
        )
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"]
        assert web.manager.clients() == []


async def test_oversized_bodies_are_413_json() -> None:
    async with running_webserver() as web:
        for path in ("/api/terminal", "/getPseudoTerminalAddress"):
            response = await web.http.post(
                path,
                content=b'{"client":"' + b"x" * 20_000 + b'"}',
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code == 413
            assert response.json() == {"error": "request body too large"}
        assert web.manager.clients() == []


async def test_errors_are_json_everywhere() -> None:
    async with running_webserver() as web:
        for method, path, status in [
            ("GET", "/nowhere", 404),
            ("GET", "/api/terminal", 405),
            ("PUT", "/api/terminal", 405),
        ]:
            response = await web.http.request(method, path)
            assert response.status_code == status
            assert response.headers["content-type"] == "application/json"
            assert response.json()["error"]
            assert response.headers["x-content-type-options"] == "nosniff"


async def test_foreign_origins_cannot_drive_the_api() -> None:
    async with running_webserver(allowed_origins=("https://portal.example.org",)) as web:
        foreign = await web.http.post(
            "/api/terminal", json={}, headers={"Origin": "https://evil.example"}
        )
        assert foreign.status_code == 403
        assert web.manager.clients() == []
        for origin in (web.base, f"https://127.0.0.1:{web.port}", "https://portal.example.org"):
            ok = await web.http.post("/api/terminal", json={}, headers={"Origin": origin})
            assert ok.status_code == 200, origin


# --- giving a terminal back, and the original project's call ------------------------------------


async def test_delete_gives_the_callers_own_terminal_back() -> None:
    async with running_webserver() as web:
        client = (await web.http.post("/api/terminal", json={})).json()["client"]
        released = await web.http.request("DELETE", "/api/terminal", json={"client": client})
        assert released.json() == {"released": True}
        deletes = [r for r in web.manager.requests if r.method == "DELETE"]
        assert [r.url.path for r in deletes] == [f"/v1/allocations/tab:{client.partition('.')[0]}"]
        # a forged id speaks for nobody: the manager is not even asked
        forged = await web.http.request("DELETE", "/api/terminal", json={"client": "x.y"})
        assert forged.json() == {"released": False}
        assert len([r for r in web.manager.requests if r.method == "DELETE"]) == 1


async def test_legacy_call_answers_pod_name_and_address_for_the_callers_own_address() -> None:
    async with running_webserver(identity="tab") as web:
        tab = (await web.http.post("/api/terminal", json={})).json()
        claimed = f"tab:{tab['client'].partition('.')[0]}"
        for claim in ("10.9.8.7", claimed, tab["client"]):
            response = await web.http.post("/getPseudoTerminalAddress", json={"IP": claim})
            assert response.status_code == 200
            answer = response.json()
            assert set(answer) == {"podName", "ip"}
            assert answer["ip"] == web.manager.terminal_address
            assert answer["podName"] != tab["terminal"]  # never the tab's terminal
        assert web.manager.clients()[1:] == ["ip:127.0.0.1"] * 3
        bad = await web.http.post("/getPseudoTerminalAddress", json={"IP": 42})
        assert bad.status_code == 400


async def test_legacy_call_refuses_foreign_origins() -> None:
    async with running_webserver() as web:
        foreign = await web.http.post(
            "/getPseudoTerminalAddress",
            content=b'{"IP": "10.9.8.7"}',
            headers={"Origin": "https://evil.example", "Content-Type": "text/plain"},
        )
        assert foreign.status_code == 403
        assert web.manager.clients() == []


# --- probes, metrics, logs ---------------------------------------------------------------------


async def test_probes_and_metrics() -> None:
    manager = FakeManager()
    async with running_webserver(manager) as web:
        assert (await web.http.get("/healthz")).json() == {"status": "ok"}
        assert (await web.http.get("/readyz")).status_code == 200
        await web.http.post("/api/terminal", json={})
        manager.override = _down
        not_ready = await web.http.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["error"]
        metrics = await web.http.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'webterm_http_requests_total{route="/api/terminal",status="200"} 1.0' in text
    assert 'webterm_http_requests_total{route="/readyz",status="503"} 1.0' in text
    assert 'webterm_allocation_seconds_count{outcome="ok"} 1.0' in text
    assert "webterm_proxied_connections 0.0" in text
    assert "webterm_proxied_bytes_total" in text


async def test_one_log_line_per_request_without_tokens_or_identities(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="webterm.webserver")
    async with running_webserver() as web:
        first = (await web.http.post("/api/terminal?x=secret-query", json={})).json()
        await web.http.post("/api/terminal", json={"client": first["client"]})
        await web.http.get("/nowhere")
    lines = [r.getMessage() for r in caplog.records if r.name == "webterm.webserver"]
    requests = [line for line in lines if line.startswith("method=")]
    assert requests == [
        "method=POST path=/api/terminal status=200 " + requests[0].split()[-1],
        "method=POST path=/api/terminal status=200 " + requests[1].split()[-1],
        "method=GET path=/nowhere status=404 " + requests[2].split()[-1],
    ]
    assert all(re.fullmatch(r"ms=\d+\.\d", line.split()[-1]) for line in requests)
    everything = "\n".join(r.getMessage() for r in caplog.records)
    random_part = first["client"].partition(".")[0]
    assert first["token"] not in everything
    assert random_part not in everything
    assert "secret-query" not in everything


async def test_requests_are_rate_limited_per_client_and_capped_per_address() -> None:
    async with running_webserver(max_per_address=2) as web:
        a = (await web.http.post("/api/terminal", json={})).json()["client"]
        (await web.http.post("/api/terminal", json={})).json()
        capped = await web.http.post("/api/terminal", json={})
        assert capped.status_code == 429
        assert json.loads(capped.text)["retry_after"] >= 1
        statuses = [
            (await web.http.post("/api/terminal", json={"client": a})).status_code
            for _ in range(12)
        ]
        assert statuses[0] == 200
        assert 429 in statuses


async def test_parallel_requests_cannot_all_pass_the_per_address_cap() -> None:
    manager = FakeManager()
    answer = trio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/allocations":
            await answer.wait()  # a terminal is starting
        return manager.answer(request)

    async with running_webserver(manager, max_per_address=2) as web:

        async def post(statuses: list[int]) -> None:
            statuses.append((await web.http.post("/api/terminal", json={})).status_code)

        statuses: list[int] = []
        manager.override = slow
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(post, statuses)
            with trio.fail_after(10):
                while len(statuses) < 3:  # the over-cap requests are answered at once
                    await trio.sleep(0.01)
            assert statuses == [429, 429, 429]
            answer.set()
        assert sorted(statuses) == [200, 200, 429, 429, 429]
        assert len(manager.clients()) == 2


async def test_a_failed_allocation_does_not_count_against_the_cap() -> None:
    manager = FakeManager()
    async with running_webserver(manager, max_per_address=1) as web:
        manager.override = lambda request: httpx.Response(
            503, json={"error": "all terminals are busy", "retry_after": 5}
        )
        for _ in range(3):
            assert (await web.http.post("/api/terminal", json={})).status_code == 503
        manager.override = None
        assert (await web.http.post("/api/terminal", json={})).status_code == 200


async def test_a_session_the_proxy_relays_stays_counted_against_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Requests are remembered for HOLD_SECONDS; a session in use for longer than that
    # (no reconnect, so no new request) must still count.
    monkeypatch.setattr(app_module, "HOLD_SECONDS", 0.0)
    async with terminal_server() as terminal, running_webserver(max_per_address=1) as web:
        web.manager.terminal_address = terminal.address
        first = (await web.http.post("/api/terminal", json={})).json()
        async with proxied(web, terminal, first["terminal"], token=first["token"]) as ws:
            await ws.send_message(b"typing")
            assert await ws.get_message() == b"typing"
            assert (await web.http.post("/api/terminal", json={})).status_code == 429
        with trio.fail_after(10):
            while (await web.http.post("/api/terminal", json={})).status_code != 200:
                await trio.sleep(0.05)  # until the proxy has seen the relay end
