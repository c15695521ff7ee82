"""Concurrency: 500 clients at once against a pool capped at 50 — never two owners for
one terminal, every client gets a terminal or a clear 503, and the pool settles back to
its spares target once everyone is gone. Against the Kubernetes stand-in (pods without
processes, so 50 are cheap) and the local backend (real processes)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import jwt
import trio

from tests.credentials import AUTH, manager_keys
from tests.kube.test_kube_backend import free_port, manager
from tests.kubeapi import KubeletConfig, Realism, run_kube_api
from webterm.config import ManagerConfig
from webterm.manager.app import serve as serve_manager

CLIENTS = 500
CAP = 50


async def storm(http: httpx.AsyncClient) -> dict[str, httpx.Response]:
    answers: dict[str, httpx.Response] = {}

    async def ask(client: str) -> None:
        answers[client] = await http.post("/v1/allocations", json={"client": client})

    async with trio.open_nursery() as nursery:
        for i in range(CLIENTS):
            nursery.start_soon(ask, f"client-{i}")
    return answers


def check(answers: dict[str, httpx.Response]) -> list[str]:
    granted = {c: r.json()["terminal"] for c, r in answers.items() if r.status_code == 200}
    refused = [r for r in answers.values() if r.status_code != 200]
    assert len(granted) + len(refused) == CLIENTS
    assert all(r.status_code == 503 and int(r.headers["Retry-After"]) >= 1 for r in refused)
    assert all(r.json()["error"] for r in refused)
    # the invariant is per instance (a pod UID, a local process): a name may come back
    # with a new instance if the first one ended meanwhile, never the same instance
    instances = [
        (
            r.json()["terminal"],
            jwt.decode(r.json()["token"], options={"verify_signature": False})["instance"],
        )
        for r in answers.values()
        if r.status_code == 200
    ]
    twice = [pair for pair, n in Counter(instances).items() if n > 1]
    assert twice == [], f"terminal instances with two owners: {twice}"
    assert 0 < len(granted) <= CAP
    return list(granted)


async def settled(http: httpx.AsyncClient, spares: int) -> None:
    with trio.fail_after(120):
        while True:
            terminals = (await http.get("/v1/terminals")).json()["terminals"]
            states = Counter(t["state"] for t in terminals)
            if states["free"] >= spares and states["in-use"] == 0 and len(terminals) <= spares + 1:
                return
            await trio.sleep(0.2)


async def test_500_clients_against_a_cap_of_50_on_the_kubernetes_stand_in(tmp_path: Path) -> None:
    async with (
        run_kube_api(
            tmp_path,
            terminal_replicas=0,
            kubelet=KubeletConfig(mode="fake"),
            realism=Realism.fast(),
        ) as api,
        manager(api, free_port(), spares=5, max_terminals=CAP, ready_timeout=60.0) as http,
    ):
        await api.wait_ready_count(5)
        # with pods that take their time to start the manager holds requests longer:
        # the 100 connections are shared without a deadline for getting one
        async with httpx.AsyncClient(
            base_url=http.base_url,
            headers=http.headers,  # the webserver's credential, as the manager wants
            timeout=httpx.Timeout(120, pool=None),
            limits=httpx.Limits(max_connections=100),
        ) as wide:
            granted = check(await storm(wide))
        pods = api.pods()
        owners = [p["metadata"].get("annotations", {}).get("webterm.dev/client") for p in pods]
        owners = [o for o in owners if o]
        assert len(owners) == len(set(owners)) == len(granted)
        for client in granted:
            assert (await http.delete(f"/v1/allocations/{client}")).status_code == 200
        await settled(http, spares=5)


async def test_500_clients_against_a_cap_of_50_on_the_local_backend() -> None:
    config = ManagerConfig(
        **manager_keys(),  # type: ignore[arg-type]
        port=0, spares=2, max_terminals=CAP,
        shell=("/bin/sh",),
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_manager, config)
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits, headers=AUTH
        ) as http:
            granted = check(await storm(http))
            for client in granted:
                assert (await http.delete(f"/v1/allocations/{client}")).status_code == 200
            await settled(http, spares=2)
        nursery.cancel_scope.cancel()
