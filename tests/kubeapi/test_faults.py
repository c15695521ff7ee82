"""Faults on demand: failing requests, latency, dropped watches, expiry, pods."""

from __future__ import annotations

import httpx
import pytest
import trio

from . import resources as R
from .fixtures import KubeApi
from .testing import open_watch, pod_manifest

PODS = "/api/v1/namespaces/webterm/pods"


async def test_fail_next_with_500_then_recovers(client: httpx.AsyncClient, api: KubeApi) -> None:
    fault = api.faults.fail_next(2, status=500, verb="list")
    for _ in range(2):
        r = await client.get(PODS)
        assert r.status_code == 500
        body = r.json()
        assert body["reason"] == "InternalError"
        assert body["message"] == "Internal error occurred: injected fault"
    assert (await client.get(PODS)).status_code == 200
    assert fault.hits == 2
    assert fault.remaining == 0
    assert [r.status for r in api.requests(verb="list")] == [500, 500, 200]


async def test_429_carries_retry_after_and_matches_by_path(
    client: httpx.AsyncClient, api: KubeApi
) -> None:
    api.faults.fail_next(1, status=429, path=r"/statefulsets/.*/scale$", retry_after=3)
    assert (await client.get(PODS)).status_code == 200  # other paths unaffected
    api.create_terminal_statefulset()
    r = await client.get("/apis/apps/v1/namespaces/webterm/statefulsets/terminal/scale")
    assert r.status_code == 429
    assert r.headers["retry-after"] == "3"
    body = r.json()
    assert body["reason"] == "TooManyRequests"
    assert body["details"]["retryAfterSeconds"] == 3
    assert (
        await client.get("/apis/apps/v1/namespaces/webterm/statefulsets/terminal/scale")
    ).status_code == 200


async def test_failing_watch_requests(client: httpx.AsyncClient, api: KubeApi) -> None:
    api.faults.fail_next(1, status=503, verb="watch")
    r = await client.get(PODS, params={"watch": "true"})
    assert r.status_code == 503
    assert r.json()["reason"] == "ServiceUnavailable"


async def test_latency_delays_requests(client: httpx.AsyncClient, api: KubeApi) -> None:
    api.faults.latency = 3600
    with trio.move_on_after(0.2) as scope:
        await client.get(PODS)
    assert scope.cancelled_caught  # still waiting: the answer is delayed
    api.faults.latency = 0
    assert (await client.get(PODS)).status_code == 200


async def test_drop_watches_cleanly(client: httpx.AsyncClient, api: KubeApi) -> None:
    with trio.fail_after(10):
        async with open_watch(client, PODS) as watch:
            await api.faults.wait_for_watches(1)
            assert api.faults.drop_watches() == 1
            assert await watch.rest() == []  # ended normally
    assert not api.faults.watches


async def test_drop_watches_abort_resets_the_connection(
    client: httpx.AsyncClient, api: KubeApi
) -> None:
    api.faults.hold_pending("p")
    api.create(R.PODS, pod_manifest("p"))
    with trio.fail_after(10):
        async with open_watch(client, PODS) as watch:
            await watch.next()
            api.faults.drop_watches(abort=True)
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                await watch.rest()
        assert (await client.get(PODS)).status_code == 200  # new connections are fine


async def test_go_down_resets_everything_until_it_comes_back(
    client: httpx.AsyncClient, api: KubeApi
) -> None:
    with trio.fail_after(10):
        async with open_watch(client, PODS) as watch:
            await api.faults.wait_for_watches(1)
            api.faults.go_down()
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                await watch.rest()
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await client.get(PODS)
        api.faults.come_back()
        assert (await client.get(PODS)).status_code == 200


async def test_drop_every_n_events(client: httpx.AsyncClient, api: KubeApi) -> None:
    for name in ("a", "b", "c"):
        api.faults.hold_pending(name)
        api.create(R.PODS, pod_manifest(name))
    api.faults.drop_watches_every = 2
    with trio.fail_after(10):
        async with open_watch(client, PODS) as watch:
            events = await watch.rest()
    assert [e["object"]["metadata"]["name"] for e in events] == ["a", "b"]


async def test_kill_pod_process_in_fake_mode_restarts_the_container(api: KubeApi) -> None:
    api.create_terminal_statefulset(replicas=1)
    with trio.fail_after(10):
        await api.wait_pod_ready("terminal-0")
        assert api.faults.kill_pod_process("terminal-0")
        pod = await api.wait_for(
            R.PODS,
            "terminal-0",
            lambda p: (
                p is not None
                and p["status"]["containerStatuses"][0]["restartCount"] == 1
                and p["status"]["containerStatuses"][0]["ready"]
            ),
        )
    assert pod is not None
    assert not api.faults.kill_pod_process("nonexistent")


async def test_delay_and_block_readiness(api: KubeApi) -> None:
    api.faults.block_readiness("terminal-0")
    api.faults.delay_readiness("terminal-1", 0.3)
    api.create_terminal_statefulset(replicas=2)
    with trio.fail_after(10):
        await api.wait_pod_ready("terminal-1")
        zero = await api.wait_for(
            R.PODS, "terminal-0", lambda p: p is not None and p["status"]["phase"] == "Running"
        )
        runtime = api.kubelet.runtime("terminal-0")
        assert runtime is not None
        while runtime.probes < 2:  # probed, and failed, more than once
            await trio.sleep(0.1)
        zero = api.pod("terminal-0")
        assert zero is not None
        assert [c["status"] for c in zero["status"]["conditions"] if c["type"] == "Ready"] == [
            "False"
        ]
        api.faults.unblock_readiness("terminal-0")
        await api.wait_pod_ready("terminal-0")
        # and a Ready pod that starts failing its probe turns unready
        api.faults.block_readiness("terminal-0")
        await api.wait_for(
            R.PODS,
            "terminal-0",
            lambda p: (
                p is not None
                and [c["status"] for c in p["status"]["conditions"] if c["type"] == "Ready"]
                == ["False"]
            ),
        )
