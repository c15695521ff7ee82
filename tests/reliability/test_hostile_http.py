"""Hostile HTTP: random bodies, wrong types, huge bodies and path tricks against the
manager API and the webserver. Every answer is a 4xx (or a 2xx for what happens to be
valid) with a JSON error — never a 5xx — and the servers keep serving."""

from __future__ import annotations

import json
from typing import Any

import httpx
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.credentials import AUTH, manager_keys
from tests.webserver.test_access import webserver
from webterm.config import ManagerConfig
from webterm.manager.app import serve as serve_manager

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["client", "connected", "reason", "IP"]), json_values).map(
        lambda v: json.dumps(v).encode()
    ),
)
segments = st.one_of(
    st.sampled_from(
        ["terminal-0", "..", "%2e%2e", "terminal-0/../../x", "a" * 300, "%00", "ü", ""]
    ),
    st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/?#%"),
        max_size=20,
    ),
)
MANAGER_ROUTES = [
    ("POST", "/v1/allocations"),
    ("DELETE", "/v1/allocations/{}"),
    ("GET", "/v1/terminals/{}"),
    ("POST", "/v1/terminals/{}/recycle"),
    ("POST", "/v1/terminals/{}/connection"),
    ("GET", "/v1/terminals"),
    ("PUT", "/v1/allocations"),
    ("GET", "/{}"),
]
WEB_ROUTES = [
    ("POST", "/api/terminal"),
    ("DELETE", "/api/terminal"),
    ("POST", "/getPseudoTerminalAddress"),
    ("GET", "/static/{}"),
    ("GET", "/{}"),
    ("PATCH", "/api/terminal"),
]


def check(response: httpx.Response, method: str, path: str) -> None:
    assert response.status_code < 500, f"{method} {path} -> {response.status_code}"
    if response.status_code >= 400 and not path.startswith("/static/"):
        assert "error" in response.json(), response.text


requests = st.tuples(st.integers(0, 1000), segments, bodies)


async def send(http: httpx.AsyncClient, routes: list[tuple[str, str]], batch: list[Any]) -> None:
    for pick, segment, body in batch:
        method, template = routes[pick % len(routes)]
        path = template.format(segment)
        with trio.fail_after(30):
            response = await http.request(
                method, path, content=body, headers={"Content-Type": "application/json"}
            )
        check(response, method, path)


async def test_manager_api_answers_garbage_with_4xx_and_stays_up() -> None:
    config = ManagerConfig(
        **manager_keys(),  # type: ignore[arg-type]
        port=0,
        spares=0,
        max_terminals=1,
    )
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_manager, config)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=30, headers=AUTH
        ) as http:

            @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
            @given(st.lists(requests, min_size=1, max_size=20))
            def run(batch: list[Any]) -> None:
                trio.from_thread.run(send, http, MANAGER_ROUTES, batch)

            await trio.to_thread.run_sync(run)
            huge = await http.post("/v1/allocations", content=b"x" * (2 * 1024 * 1024))
            assert huge.status_code == 413
            assert (await http.get("/healthz")).status_code == 200
        nursery.cancel_scope.cancel()


async def test_webserver_answers_garbage_with_4xx_and_stays_up() -> None:
    async with webserver(max_per_address=0) as http:

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(requests, min_size=1, max_size=20))
        def run(batch: list[Any]) -> None:
            trio.from_thread.run(send, http, WEB_ROUTES, batch)

        await trio.to_thread.run_sync(run)
        assert (await http.get("/healthz")).status_code == 200
