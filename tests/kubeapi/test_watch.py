"""Watch semantics over real HTTP: list-then-watch, synthetic ADDED, bookmarks,
410 for compacted resource versions, selector transitions, timeoutSeconds."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from . import resources as R
from .fixtures import KubeApi, run_kube_api
from .kubelet import KubeletConfig
from .realism import Realism
from .testing import MERGE, open_watch, pod_manifest

PODS = "/api/v1/namespaces/webterm/pods"


async def test_list_then_watch_from_its_resource_version(
    api: KubeApi, client: httpx.AsyncClient
) -> None:
    api.faults.hold_pending("a")  # keep the kubelet quiet so the events are ours
    api.faults.hold_pending("b")
    await client.post(PODS, json=pod_manifest("a"))
    listed = (await client.get(PODS)).json()
    rv = listed["metadata"]["resourceVersion"]
    with trio.fail_after(10):
        async with open_watch(client, PODS, resourceVersion=rv) as watch:
            await client.post(PODS, json=pod_manifest("b"))
            seen = []
            while not any(
                e["type"] == "ADDED" and e["object"]["metadata"]["name"] == "b" for e in seen
            ):
                seen.append(await watch.next_not_bookmark())
            # nothing from before the list's RV is replayed, and RVs only grow
            assert all(int(e["object"]["metadata"]["resourceVersion"]) > int(rv) for e in seen)
            rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in seen]
            assert rvs == sorted(rvs)
            assert len(set(rvs)) == len(rvs)
            assert seen[-1]["object"]["kind"] == "Pod"
            assert seen[-1]["object"]["apiVersion"] == "v1"
            await client.delete(f"{PODS}/b", params={"gracePeriodSeconds": 0})
            event = await watch.next_not_bookmark()
            while event["type"] != "DELETED":
                event = await watch.next_not_bookmark()
            assert event["object"]["metadata"]["name"] == "b"
            assert int(event["object"]["metadata"]["resourceVersion"]) > rvs[-1]


async def test_watch_without_resource_version_starts_with_synthetic_added(
    client: httpx.AsyncClient, api: KubeApi
) -> None:
    for name in ("a", "b"):
        api.faults.hold_pending(name)
        await client.post(PODS, json=pod_manifest(name))
    with trio.fail_after(10):
        for params in ({}, {"resourceVersion": "0"}):
            async with open_watch(client, PODS, **params) as watch:
                first = [await watch.next(), await watch.next()]
                assert [(e["type"], e["object"]["metadata"]["name"]) for e in first] == [
                    ("ADDED", "a"),
                    ("ADDED", "b"),
                ]


async def test_send_initial_events_ends_with_a_marked_bookmark(
    client: httpx.AsyncClient, api: KubeApi
) -> None:
    api.faults.hold_pending("a")
    await client.post(PODS, json=pod_manifest("a"))
    params = {
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true",
        "resourceVersion": "",
    }
    with trio.fail_after(10):
        async with open_watch(client, PODS, **params) as watch:
            assert (await watch.next())["type"] == "ADDED"
            marker = await watch.next()
            assert marker["type"] == "BOOKMARK"
            assert marker["object"]["metadata"]["annotations"] == {
                "k8s.io/initial-events-end": "true"
            }
    bad = await client.get(PODS, params={"watch": "1", "sendInitialEvents": "true"})
    assert bad.status_code == 422


async def test_bookmarks_carry_the_latest_resource_version(
    client: httpx.AsyncClient, api: KubeApi
) -> None:
    rv = (await client.get(PODS)).json()["metadata"]["resourceVersion"]
    with trio.fail_after(10):
        async with open_watch(
            client, PODS, resourceVersion=rv, allowWatchBookmarks="true"
        ) as watch:
            # a write elsewhere (a Service) moves the global resourceVersion
            await client.post(
                "/api/v1/namespaces/webterm/services",
                json={"metadata": {"name": "s"}, "spec": {"ports": [{"port": 1}]}},
            )
            target = api.store.resource_version
            while True:
                event = await watch.next()
                assert event["type"] == "BOOKMARK"
                obj = event["object"]
                assert set(obj) == {"kind", "apiVersion", "metadata"}
                assert obj["kind"] == "Pod"
                if int(obj["metadata"]["resourceVersion"]) >= target:
                    break
        # no bookmarks unless asked for
        api.faults.hold_pending("x")
        async with open_watch(client, PODS, resourceVersion=rv) as watch:
            await client.post(PODS, json=pod_manifest("x"))
            assert (await watch.next())["type"] == "ADDED"
            await client.patch(
                f"{PODS}/x", json={"metadata": {"labels": {"k": "v"}}}, headers=MERGE
            )
            events = [await watch.next() for _ in range(2)]
            assert all(e["type"] != "BOOKMARK" for e in events)


@pytest.mark.parametrize("mode", ["event", "http"])
async def test_compacted_resource_version_is_410(
    client: httpx.AsyncClient, api: KubeApi, mode: str
) -> None:
    api.faults.watch_expired_mode = mode  # type: ignore[assignment]
    rv = (await client.get(PODS)).json()["metadata"]["resourceVersion"]
    api.faults.hold_pending("a")
    await client.post(PODS, json=pod_manifest("a"))
    oldest = api.faults.expire_resource_versions()
    assert oldest > int(rv)
    with trio.fail_after(10):
        if mode == "event":
            async with open_watch(client, PODS, resourceVersion=rv) as watch:
                events = await watch.rest()
            assert len(events) == 1
            assert events[0]["type"] == "ERROR"
            status = events[0]["object"]
        else:
            response = await client.get(PODS, params={"watch": "1", "resourceVersion": rv})
            assert response.status_code == 410
            status = response.json()
        assert status["kind"] == "Status"
        assert status["code"] == 410
        assert status["reason"] == "Expired"
        assert status["message"].startswith(f"too old resource version: {rv}")
        exact = await client.get(
            PODS, params={"resourceVersion": rv, "resourceVersionMatch": "Exact"}
        )
        assert exact.status_code == 410
        # watching from the current list works again
        fresh = (await client.get(PODS)).json()["metadata"]["resourceVersion"]
        async with open_watch(client, PODS, resourceVersion=fresh, timeoutSeconds=1) as watch:
            assert all(e["type"] != "ERROR" for e in await watch.rest())


async def test_history_window_bounds_replay(tmp_path: Path) -> None:
    async with (
        run_kube_api(
            tmp_path, realism=Realism.fast(), kubelet=KubeletConfig(mode="fake"), history_limit=5
        ) as api,
        api.client() as client,
    ):
        rv = (await client.get(PODS)).json()["metadata"]["resourceVersion"]
        for i in range(10):
            await client.post(
                "/api/v1/namespaces/webterm/services",
                json={"metadata": {"name": f"s{i}"}, "spec": {"ports": [{"port": 1}]}},
            )
        with trio.fail_after(10):
            async with open_watch(client, PODS, resourceVersion=rv) as watch:
                event = await watch.next()
        assert event["type"] == "ERROR"
        assert event["object"]["code"] == 410


async def test_label_selector_transitions_are_added_and_deleted(
    client: httpx.AsyncClient, api: KubeApi
) -> None:
    api.faults.hold_pending("p")
    await client.post(PODS, json=pod_manifest("p", labels={"state": "free"}))
    rv = (await client.get(PODS)).json()["metadata"]["resourceVersion"]
    with trio.fail_after(10):
        async with open_watch(
            client, PODS, resourceVersion=rv, labelSelector="state=free"
        ) as watch:
            r = await client.patch(
                f"{PODS}/p", json={"metadata": {"labels": {"state": "used"}}}, headers=MERGE
            )
            left = await watch.next()
            assert left["type"] == "DELETED"
            # the previous content, stamped with the change's resourceVersion
            assert left["object"]["metadata"]["labels"] == {"state": "free"}
            assert (
                left["object"]["metadata"]["resourceVersion"]
                == r.json()["metadata"]["resourceVersion"]
            )
            await client.patch(
                f"{PODS}/p", json={"metadata": {"labels": {"other": "x"}}}, headers=MERGE
            )  # still not matching: nothing
            back = await client.patch(
                f"{PODS}/p", json={"metadata": {"labels": {"state": "free"}}}, headers=MERGE
            )
            came = await watch.next()
            assert came["type"] == "ADDED"
            assert (
                came["object"]["metadata"]["resourceVersion"]
                == back.json()["metadata"]["resourceVersion"]
            )
            await client.patch(
                f"{PODS}/p", json={"metadata": {"annotations": {"a": "b"}}}, headers=MERGE
            )
            assert (await watch.next())["type"] == "MODIFIED"


async def test_field_selector_and_legacy_watch_path(
    client: httpx.AsyncClient, api: KubeApi
) -> None:
    for name in ("a", "b"):
        api.faults.hold_pending(name)
        await client.post(PODS, json=pod_manifest(name))
    with trio.fail_after(10):
        async with open_watch(client, PODS, fieldSelector="metadata.name=b") as watch:
            assert (await watch.next())["object"]["metadata"]["name"] == "b"
        async with client.stream(
            "GET", "/api/v1/watch/namespaces/webterm/pods/a", params={"timeoutSeconds": "1"}
        ) as response:
            lines = [line async for line in response.aiter_lines() if line]
        assert lines
        assert all('"name":"a"' in line for line in lines)


async def test_timeout_seconds_ends_the_stream_cleanly(client: httpx.AsyncClient) -> None:
    with trio.fail_after(15):
        async with open_watch(client, PODS, timeoutSeconds=1) as watch:
            await watch.rest()  # ends without an exception: the final chunk arrived
            assert watch.ended
        # the connection is reusable afterwards (keep-alive)
        assert (await client.get(PODS)).status_code == 200


async def test_watch_all_namespaces_and_statefulsets(
    client: httpx.AsyncClient, api: KubeApi
) -> None:
    with trio.fail_after(10):
        async with open_watch(client, "/apis/apps/v1/statefulsets") as watch:
            api.create_terminal_statefulset(replicas=0)
            event = await watch.next()
            assert event["type"] == "ADDED"
            assert event["object"]["kind"] == "StatefulSet"
        await client.post("/api/v1/namespaces", json={"metadata": {"name": "other"}})
        async with open_watch(client, "/api/v1/pods") as watch:
            api.faults.hold_pending("x")
            api.create(R.PODS, pod_manifest("x"), namespace="other")
            event = await watch.next()
            assert event["object"]["metadata"]["namespace"] == "other"


async def test_too_large_resource_version_is_an_error_event(
    client: httpx.AsyncClient, api: KubeApi
) -> None:
    api.server.too_large_wait = 0.2  # the apiserver waits 3 s for its cache to catch up
    future = api.store.resource_version + 100
    with trio.fail_after(15):
        async with open_watch(client, PODS, resourceVersion=future) as watch:
            event = await watch.next()
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 504
