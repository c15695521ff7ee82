"""The kubernetes backend against the Kubernetes API stand-in: the same client code as
against a cluster, through a kubeconfig; pods are real `webterm pty` processes."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    open_websocket_url,
)

from tests.credentials import AUTH, CREDENTIAL, WEBSERVER_SECRET
from tests.kubeapi import (
    MANAGER_ROLE_RULES,
    PODS,
    SERVICES,
    KubeApi,
    KubeletConfig,
    Realism,
    run_kube_api,
)
from tests.terminal_client import run_in_terminal
from webterm.config import ManagerConfig, WebserverConfig
from webterm.manager.app import serve as serve_manager
from webterm.protocol import client_hash, subprotocols_for
from webterm.webserver.app import serve as serve_webserver

SUITE_REALISM = Realism.fast()
"""The cluster timing of this suite: a real cluster's behaviour at test speed (see
tests/kubeapi/README.md, "Timing")."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def cluster(tmp_path: Path, **api_options: Any) -> AsyncIterator[tuple[KubeApi, int]]:
    """The stand-in with the terminal StatefulSet at 0 replicas; yields it and the port
    the manager must use (the pods call it back for recycles)."""
    manager_port = free_port()
    api_options.setdefault("realism", SUITE_REALISM)
    async with run_kube_api(
        tmp_path,
        terminal_replicas=0,
        rbac=MANAGER_ROLE_RULES,
        pod_args=("--manager-url", f"http://127.0.0.1:{manager_port}"),
        **api_options,
    ) as api:
        yield api, manager_port


@asynccontextmanager
async def manager(api: KubeApi, port: int, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    config = ManagerConfig(
        **{
            "secret": api.secret, "signing_key": api.signing_key,
            "webserver_credential": CREDENTIAL, "backend": "kubernetes", "port": port,
            "kubeconfig": str(api.kubeconfig), "spares": 1, "max_terminals": 3,
            "ready_timeout": 20.0, **overrides,
        }
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_manager, config)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=60, headers=AUTH
        ) as http:
            yield http
        nursery.cancel_scope.cancel()


async def test_end_to_end_webserver_manager_and_pods(tmp_path: Path) -> None:
    async with cluster(tmp_path) as (api, port), manager(api, port):
        config = WebserverConfig(
            secret=WEBSERVER_SECRET,
            manager_url=f"http://127.0.0.1:{port}",
            manager_credential=CREDENTIAL,
            port=0,
        )  # its keys: the manager's /v1/keys
        async with trio.open_nursery() as nursery:
            web_port = await nursery.start(serve_webserver, config)
            base = f"http://127.0.0.1:{web_port}"
            async with httpx.AsyncClient(base_url=base, timeout=60) as web:
                answer = (await web.post("/api/terminal", json={})).json()
                assert (
                    answer["url"] == f"ws://127.0.0.1:{web_port}/terminals/{answer['terminal']}/ws"
                )
                out = await run_in_terminal(
                    answer["url"],
                    answer["token"],
                    "echo pod-$((6*7)); hostname",
                    "pod-42",
                    origin=base,
                )
                assert "pod-42" in out
            pod = api.pod(answer["terminal"])
            assert pod is not None
            annotations = pod["metadata"]["annotations"]
            assert annotations["webterm.dev/client"] == client_hash(
                api.secret, f"tab:{answer['client'].split('.')[0]}"
            )
            assert pod["metadata"]["labels"]["webterm.dev/state"] == "in-use"
            # one in use + one spare
            await api.wait_ready_count(2)
            nursery.cancel_scope.cancel()


async def test_scale_up_when_spares_run_out_never_past_the_cap(tmp_path: Path) -> None:
    async with (
        cluster(tmp_path) as (api, port),
        manager(api, port, spares=1, max_terminals=2) as http,
    ):
        first = await http.post("/v1/allocations", json={"client": "a"})
        second = await http.post("/v1/allocations", json={"client": "b"})
        assert first.status_code == second.status_code == 200
        assert first.json()["terminal"] != second.json()["terminal"]
        third = await http.post("/v1/allocations", json={"client": "c"})
        assert third.status_code == 503
        assert (
            api.get(
                __import__("tests.kubeapi", fromlist=["STATEFULSETS"]).STATEFULSETS, "terminal"
            )["spec"]["replicas"]
            == 2
        )


async def test_recycle_brings_a_fresh_pod_the_old_token_cannot_open(tmp_path: Path) -> None:
    async with (
        cluster(tmp_path) as (api, port),
        manager(api, port, spares=1, max_terminals=1) as http,
    ):
        answer = (await http.post("/v1/allocations", json={"client": "a"})).json()
        old_uid = api.pod(answer["terminal"])["metadata"]["uid"]
        assert (await http.delete("/v1/allocations/a")).status_code == 200
        await api.wait_pod_gone(answer["terminal"], uid=old_uid)
        fresh = await api.wait_pod_ready(answer["terminal"], not_uid=old_uid)
        new_address = f"{fresh['status']['podIP']}:7681"
        with pytest.raises(ConnectionRejected):
            async with open_websocket_url(
                f"ws://{new_address}/ws", subprotocols=subprotocols_for(answer["token"])
            ):
                pass
        with trio.fail_after(30):
            while (
                again := await http.post("/v1/allocations", json={"client": "b"})
            ).status_code != 200:
                await trio.sleep(0.2)
        assert again.json()["terminal"] == answer["terminal"]
        out = await run_in_terminal(
            f"ws://{again.json()['address']}/ws",
            again.json()["token"],
            "echo fresh-$((1+2))",
            "fresh-3",
        )
        assert "fresh-3" in out


async def test_restarted_manager_keeps_every_allocation(tmp_path: Path) -> None:
    async with cluster(tmp_path) as (api, port):
        async with manager(api, port) as http:
            first = (await http.post("/v1/allocations", json={"client": "keep-me"})).json()
        async with manager(api, port) as http:
            again = (await http.post("/v1/allocations", json={"client": "keep-me"})).json()
            assert (again["terminal"], again["reconnect"]) == (first["terminal"], True)
            other = (await http.post("/v1/allocations", json={"client": "someone-else"})).json()
            assert other["terminal"] != first["terminal"]


async def test_two_managers_racing_never_double_allocate(tmp_path: Path) -> None:
    async with cluster(tmp_path) as (api, port):
        port_b = free_port()
        async with (
            manager(api, port, spares=4, max_terminals=4) as a,
            manager(api, port_b, spares=4, max_terminals=4) as b,
        ):
            await api.wait_ready_count(4)
            results: list[tuple[str, httpx.Response]] = []

            async def ask(http: httpx.AsyncClient, client: str) -> None:
                results.append(
                    (client, await http.post("/v1/allocations", json={"client": client}))
                )

            async with trio.open_nursery() as nursery:
                for i in range(4):
                    nursery.start_soon(ask, a, f"a{i}")
                    nursery.start_soon(ask, b, f"b{i}")
            granted = {c: r.json()["terminal"] for c, r in results if r.status_code == 200}
            assert len(set(granted.values())) == len(granted), granted  # no terminal twice
            owners = [
                p["metadata"].get("annotations", {}).get("webterm.dev/client") for p in api.pods()
            ]
            owners = [o for o in owners if o]
            assert len(owners) == len(set(owners)) == len(granted)


async def test_reflector_survives_dropped_watches_and_410_storms(tmp_path: Path) -> None:
    async with (
        cluster(tmp_path) as (api, port),
        manager(api, port, spares=2, max_terminals=3) as http,
    ):
        await api.wait_ready_count(2)
        for _ in range(3):
            api.faults.drop_watches(abort=True)
            api.faults.expire_resource_versions()
            await trio.sleep(0.2)
        api.faults.drop_watches_every = 2
        answer = (await http.post("/v1/allocations", json={"client": "x"})).json()  # scale to 3
        await api.wait_ready_count(3)
        api.faults.drop_watches_every = 0
        with trio.fail_after(30):
            while True:
                listing = {
                    t["name"]: t for t in (await http.get("/v1/terminals")).json()["terminals"]
                }
                server = {p["metadata"]["name"]: p["metadata"]["uid"] for p in api.pods()}
                if set(listing) == set(server) and all(
                    listing[n]["instance"] == uid and listing[n]["state"] in ("free", "in-use")
                    for n, uid in server.items()
                ):
                    break
                await trio.sleep(0.1)
        assert listing[answer["terminal"]]["state"] == "in-use"
        assert api.requests(verb="list", path="pods")  # it relisted after the 410s


async def test_nodeport_services_are_created_and_deleted(tmp_path: Path) -> None:
    async with (
        cluster(tmp_path) as (api, port),
        manager(
            api, port, address_mode="nodeport", public_host=api.node_ip, spares=1, max_terminals=1
        ) as http,
    ):
        answer = (await http.post("/v1/allocations", json={"client": "np"})).json()
        service = api.get(SERVICES, f"{answer['terminal']}-np")
        assert service is not None
        node_port = service["spec"]["ports"][0]["nodePort"]
        assert answer["address"] == f"{api.node_ip}:{node_port}"
        out = await run_in_terminal(
            f"ws://{answer['address']}/ws", answer["token"], "echo np-$((2*4))", "np-8"
        )
        assert "np-8" in out
        await http.delete("/v1/allocations/np")
        await api.wait_for(SERVICES, f"{answer['terminal']}-np", lambda s: s is None)


async def test_shell_exit_in_a_pod_recycles_it(tmp_path: Path) -> None:
    async with (
        cluster(tmp_path) as (api, port),
        manager(api, port, spares=1, max_terminals=1) as http,
    ):
        answer = (await http.post("/v1/allocations", json={"client": "a"})).json()
        uid = api.pod(answer["terminal"])["metadata"]["uid"]
        async with open_websocket_url(
            f"ws://{answer['address']}/ws", subprotocols=subprotocols_for(answer["token"])
        ) as ws:
            await ws.send_message(b"exit\n")
            with trio.fail_after(20), pytest.raises(ConnectionClosed):
                while True:
                    message = await ws.get_message()
                    if isinstance(message, str):
                        json.loads(message)
        await api.wait_pod_ready(answer["terminal"], not_uid=uid)


async def test_metrics_count_watches_and_relists(tmp_path: Path) -> None:
    async with cluster(tmp_path) as (api, port), manager(api, port) as http:
        await api.wait_ready_count(1)
        api.faults.drop_watches()
        with trio.fail_after(20):
            while "webterm_watch_requests 2.0" not in (
                metrics := (await http.get("/metrics")).text
            ):
                await trio.sleep(0.1)
        assert "webterm_watch_lists 1.0" in metrics  # a dropped watch resumes, no relist
        assert 'webterm_terminals{state="free"}' in metrics


async def test_api_errors_and_a_slow_api_are_ridden_out(tmp_path: Path) -> None:
    async with cluster(tmp_path) as (api, port):
        api.faults.fail_next(2, status=429, verb="list", retry_after=1)  # at start-up
        api.faults.fail_next(2, status=500, verb="watch")
        async with manager(api, port, spares=1, max_terminals=2) as http:
            await api.wait_ready_count(1)
            api.faults.fail_next(2, status=500, verb="patch")  # the claim and the scale
            api.faults.latency = 0.2
            answer = await http.post("/v1/allocations", json={"client": "steady"})
            assert answer.status_code == 200
            api.faults.latency = 0
            pod = api.pod(answer.json()["terminal"])
            assert pod["metadata"]["annotations"]["webterm.dev/client"]
            await api.wait_ready_count(2)  # the scale-up went through despite the 500s


async def test_a_pod_deleted_under_a_user_frees_its_owner(tmp_path: Path) -> None:
    async with (
        cluster(tmp_path) as (api, port),
        manager(api, port, spares=1, max_terminals=2) as http,
    ):
        first = (await http.post("/v1/allocations", json={"client": "victim"})).json()
        uid = api.pod(first["terminal"])["metadata"]["uid"]
        api.delete(PODS, first["terminal"], grace_period=1)
        await api.wait_for(
            PODS, first["terminal"], lambda p: p is None or p["metadata"]["uid"] != uid
        )
        with trio.fail_after(30):
            while True:
                again = (await http.post("/v1/allocations", json={"client": "victim"})).json()
                if again.get("reconnect") is False:
                    break  # not the dead pod again: a fresh terminal
                await trio.sleep(0.2)
        with pytest.raises(ConnectionRejected):  # the old token dies with the old pod
            async with open_websocket_url(
                f"ws://{again['address']}/ws", subprotocols=subprotocols_for(first["token"])
            ):
                pass


async def test_a_killed_terminal_server_restarts_and_its_owner_gets_a_working_shell(
    tmp_path: Path,
) -> None:
    """The container dies mid-session (kubelet restarts it): the client's socket closes, and
    asking again gives this client a working shell — never one somebody else holds."""
    async with (
        cluster(tmp_path) as (api, port),
        manager(api, port, spares=1, max_terminals=3) as http,
    ):
        first = (await http.post("/v1/allocations", json={"client": "crashy"})).json()
        other = (await http.post("/v1/allocations", json={"client": "bystander"})).json()
        name = first["terminal"]
        async with open_websocket_url(
            f"ws://{first['address']}/ws", subprotocols=subprotocols_for(first["token"])
        ) as ws:
            await ws.send_message(b"echo BEFORE-$((1+1))\n")
            with trio.fail_after(20), pytest.raises(ConnectionClosed):
                seen = b""
                while True:
                    message = await ws.get_message()
                    seen += message if isinstance(message, bytes) else b""
                    if b"BEFORE-2" in seen:
                        assert api.faults.kill_pod_process(name)
                        seen = b""
        await api.wait_for(
            PODS,
            name,
            lambda p: p is not None and p["status"]["containerStatuses"][0]["restartCount"] >= 1,
        )
        with trio.fail_after(60):
            while True:
                again = await http.post("/v1/allocations", json={"client": "crashy"})
                if again.status_code == 200:
                    try:
                        out = await run_in_terminal(
                            f"ws://{again.json()['address']}/ws",
                            again.json()["token"],
                            "echo AFTER-$((2+2))",
                            "AFTER-4",
                        )
                        break
                    except (ConnectionRejected, ConnectionClosed, HandshakeError, OSError):
                        pass  # the restarted container is not listening yet
                await trio.sleep(0.3)
        assert "AFTER-4" in out
        assert again.json()["terminal"] != other["terminal"]
        owners = [
            p["metadata"].get("annotations", {}).get("webterm.dev/client") for p in api.pods()
        ]
        owned = [owner for owner in owners if owner]
        assert len(owned) == len(set(owned))  # no terminal with two owners


async def test_a_manager_starts_with_more_pods_than_fit_in_a_channel(tmp_path: Path) -> None:
    """The first list is one pool event per pod, sent before the manager's loop runs:
    1,500 existing pods once deadlocked a bounded channel of 1,024 at start-up. Started,
    the manager serves, and scales the idle surplus down to its spares."""
    async with run_kube_api(
        tmp_path, terminal_replicas=1500, kubelet=KubeletConfig(mode="fake"), realism=SUITE_REALISM
    ) as api:
        await api.wait_ready_count(1500)
        with trio.fail_after(300):  # a hang guard: 1,500 pods go slowly on a loaded machine
            async with manager(api, free_port(), spares=1, max_terminals=2000) as http:
                answer = await http.post("/v1/allocations", json={"client": "one-of-many"})
                assert answer.status_code == 200
                while len(api.pods()) > 2:  # the one in use and one spare
                    await trio.sleep(0.2)
                assert api.pod(answer.json()["terminal"]) is not None


async def test_a_pod_ready_during_a_watch_gap_is_not_failed_after_the_relist(
    tmp_path: Path,
) -> None:
    """The pod turns Ready while the API is unreachable, and the watch resumes with a
    410, so the manager learns it from a relist, not from a watch event: its readiness
    watchdog must not report the pod failed at --ready-timeout (which once deleted the
    pod, and with it the session of the user it had been handed to)."""
    ready_timeout = 20.0
    async with cluster(tmp_path) as (api, port):
        api.faults.hold_pending("terminal-0")
        async with manager(
            api, port, spares=1, max_terminals=1, ready_timeout=ready_timeout
        ) as http:
            with trio.fail_after(20):
                while (await http.get("/v1/terminals/terminal-0")).status_code != 200:
                    await trio.sleep(0.05)
            watched_since = trio.current_time()  # it saw the pod Pending: its watchdog runs
            lists = len(api.requests(verb="list", path="pods"))
            api.faults.go_down()
            api.faults.release_pending("terminal-0")
            uid = (await api.wait_pod_ready("terminal-0"))["metadata"]["uid"]
            api.faults.expire_resource_versions()
            api.faults.come_back()
            with trio.fail_after(20):
                while (await http.get("/v1/terminals/terminal-0")).json()["state"] != "free":
                    await trio.sleep(0.05)
            assert len(api.requests(verb="list", path="pods")) > lists  # learnt by a relist
            await trio.sleep_until(watched_since + ready_timeout + 1)  # past the deadline
            pod = api.pod("terminal-0")
            assert pod is not None
            assert pod["metadata"]["uid"] == uid
            assert "deletionTimestamp" not in pod["metadata"]
            answer = (await http.post("/v1/allocations", json={"client": "user"})).json()
            assert answer["terminal"] == "terminal-0"
            claimed = api.pod("terminal-0")
            assert claimed is not None
            assert claimed["metadata"]["uid"] == uid  # the user got the pod that was spared


async def test_a_server_that_ends_every_watch_at_once_is_backed_off(tmp_path: Path) -> None:
    """Every watch ends cleanly right away, with no event (a proxy cutting long
    requests): the manager backs off as after an error instead of re-watching in a
    tight loop, and carries on as usual once watches last again."""
    async with (
        cluster(tmp_path) as (api, port),
        manager(api, port, spares=1, max_terminals=2) as http,
    ):
        await api.wait_ready_count(1)
        before = len(api.requests(verb="watch", path="pods"))
        api.faults.end_watches_at_once = True
        api.faults.drop_watches()
        await trio.sleep(3)
        watches = len(api.requests(verb="watch", path="pods")) - before
        # backed off 0.8 s, 1.6 s, 3.2 s...: a few; a tight loop makes hundreds a second
        assert 1 <= watches <= 6, watches
        api.faults.end_watches_at_once = False
        answer = await http.post("/v1/allocations", json={"client": "after"})
        assert answer.status_code == 200
        with trio.fail_after(30):  # the new spare's readiness comes by a watch again
            while sorted(
                t["state"] for t in (await http.get("/v1/terminals")).json()["terminals"]
            ) != ["free", "in-use"]:
                await trio.sleep(0.1)


async def test_a_share_link_attaches_a_viewer_to_the_pod_and_dies_with_its_recycle(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as (api, port), manager(api, port, max_terminals=2):
        config = WebserverConfig(
            secret=WEBSERVER_SECRET,
            manager_url=f"http://127.0.0.1:{port}",
            manager_credential=CREDENTIAL,
            port=0,
        )
        async with trio.open_nursery() as nursery:
            web_port = await nursery.start(serve_webserver, config)
            base = f"http://127.0.0.1:{web_port}"
            origin = [(b"origin", base.encode())]
            async with httpx.AsyncClient(base_url=base, timeout=60) as web:
                owner = (await web.post("/api/terminal", json={})).json()
                body = {"client": owner["client"], "mode": "view"}
                shared = (await web.post("/api/terminal/share", json=body)).json()
                where = await web.post("/api/terminal/shared", json={"token": shared["token"]})
                assert where.json()["url"] == owner["url"]
                async with (
                    open_websocket_url(
                        owner["url"], subprotocols=subprotocols_for(owner["token"]),
                        extra_headers=origin,
                    ) as owner_ws,
                    open_websocket_url(
                        owner["url"], subprotocols=subprotocols_for(shared["token"]),
                        extra_headers=origin,
                    ) as viewer,
                ):  # fmt: skip
                    await owner_ws.send_message(b"echo shared-pod-$((6*7))\n")
                    with trio.fail_after(20):
                        seen = b""
                        while b"shared-pod-42" not in seen:
                            message = await viewer.get_message()
                            if isinstance(message, bytes):
                                seen += message
                old_uid = api.pod(owner["terminal"])["metadata"]["uid"]
                given = await web.request(
                    "DELETE", "/api/terminal", json={"client": owner["client"]}
                )
                assert given.json()["released"]
                await api.wait_pod_gone(owner["terminal"], uid=old_uid)
                # the link died with that instance: the page is told so, the proxy refuses it
                with trio.fail_after(20):  # once the manager's watch has seen the pod go
                    while (
                        await web.post("/api/terminal/shared", json={"token": shared["token"]})
                    ).status_code != 410:
                        await trio.sleep(0.2)
                async with open_websocket_url(
                    owner["url"], subprotocols=subprotocols_for(shared["token"]),
                    extra_headers=origin,
                ) as refused:  # fmt: skip
                    with trio.fail_after(20), pytest.raises(ConnectionClosed) as closed:
                        await refused.get_message()
                    assert closed.value.reason.code in (4401, 4404)
            nursery.cancel_scope.cancel()
