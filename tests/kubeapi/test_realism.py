"""The stand-in behaves like a real cluster in time and under failure: each knob of
:class:`~tests.kubeapi.realism.Realism` and each outage fault, seen by clients (the
official ``kubernetes`` client where it can express the call, httpx where it cannot:
a refused connection, a half-open watch)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException

from . import resources as R
from .fixtures import KubeApi, run_kube_api
from .kubelet import KubeletConfig
from .realism import Realism
from .testing import MERGE, open_watch, pod_manifest

PODS = "/api/v1/namespaces/webterm/pods"
GUARD = 30  # seconds: only so that a broken stand-in cannot hang the suite


@asynccontextmanager
async def standin(tmp_path: Path, realism: Realism, **options: Any) -> AsyncIterator[KubeApi]:
    async with run_kube_api(
        tmp_path, kubelet=KubeletConfig(mode="fake"), realism=realism, **options
    ) as api:
        yield api


def core_api(api: KubeApi) -> tuple[k8s.ApiClient, k8s.CoreV1Api]:
    cfg = k8s.Configuration()
    k8s_config.load_kube_config(config_file=str(api.kubeconfig), client_configuration=cfg)
    cfg.retries = False  # urllib3 would retry a refused connection by itself
    client = k8s.ApiClient(cfg)
    return client, k8s.CoreV1Api(client)


def test_defaults_are_a_real_clusters() -> None:
    real = Realism()
    assert real.controller_delay == (0.5, 5.0)
    assert real.pod_start == (2.0, 30.0)
    assert real.probes_from_spec
    assert real.watch_window == 75.0
    assert real.bookmark_interval == 60.0
    fast = Realism.fast()
    assert 0 < fast.controller_delay[0] < fast.controller_delay[1]  # jittered, never 0
    assert 0 < fast.pod_start[0] < fast.pod_start[1]
    assert fast.probes_from_spec
    samples = {round(real.pod_start_delay(), 3) for _ in range(50)}
    assert len(samples) > 1
    assert all(2.0 <= s <= 30.0 for s in samples)


async def test_a_resource_version_older_than_the_watch_window_is_410(tmp_path: Path) -> None:
    async with standin(tmp_path, Realism.fast(watch_window=1.0)) as api:
        api.faults.hold_pending("a")
        api.create(R.PODS, pod_manifest("a"))
        old = str(api.store.resource_version)

        def watch(rv: str) -> tuple[int, str]:
            client, core = core_api(api)
            with client:
                try:
                    for event in k8s_watch.Watch().stream(
                        core.list_namespaced_pod, "webterm", resource_version=rv, timeout_seconds=1
                    ):
                        if event["type"] == "MODIFIED":
                            return 200, ""
                except ApiException as exc:
                    return int(exc.status), str(exc.reason)
            return 0, ""

        api.store.patch(
            R.PODS, "webterm", "a", MERGE["content-type"], {"metadata": {"labels": {"x": "1"}}}
        )
        # within the window a watch from ``old`` would resume; past it, it is 410
        assert api.store.oldest_valid_rv() <= int(old)
        with trio.fail_after(GUARD):
            await trio.sleep(1.5)  # the window passes, with no write at all
            status, reason = await trio.to_thread.run_sync(watch, old)
        assert status == 410
        assert "too old resource version" in reason or "Expired" in reason or reason == "Gone"
        # an exact list from then is gone too; a list at "latest" is fine
        async with api.client() as http:
            r = await http.get(
                PODS, params={"resourceVersion": old, "resourceVersionMatch": "Exact"}
            )
            assert r.status_code == 410
            assert (await http.get(PODS)).status_code == 200


async def test_bookmarks_come_on_the_interval_and_before_the_timeout(tmp_path: Path) -> None:
    async with standin(tmp_path, Realism.fast(bookmark_interval=0.3)) as api, api.client() as http:
        with trio.fail_after(GUARD):
            async with open_watch(http, PODS, allowWatchBookmarks="true") as watch:
                kinds = [(await watch.next())["type"] for _ in range(2)]
            assert kinds == ["BOOKMARK", "BOOKMARK"]
    # a real cluster's minute-long interval: still one bookmark just before timeoutSeconds
    async with standin(tmp_path / "b", Realism()) as api, api.client() as http:
        assert api.server.bookmark_interval == 60.0
        with trio.fail_after(GUARD):
            async with open_watch(
                http, PODS, allowWatchBookmarks="true", timeoutSeconds=3
            ) as watch:
                events = await watch.rest()
        assert [e["type"] for e in events] == ["BOOKMARK"]
        assert events[0]["object"]["metadata"]["resourceVersion"] == str(api.store.resource_version)


async def test_an_outage_answers_503_with_retry_after_and_stops_the_cluster(
    tmp_path: Path,
) -> None:
    async with standin(tmp_path, Realism.fast(controller_delay=(0.05, 0.1))) as api:
        api.create_terminal_statefulset(replicas=0)
        async with api.client() as http:
            with trio.fail_after(GUARD):
                async with open_watch(http, PODS) as watch:
                    await api.faults.wait_for_watches(1)
                    api.faults.outage("503", retry_after=7)
                    assert await watch.rest() == []  # open watches end

        def call() -> tuple[int, str | None]:
            client, core = core_api(api)
            with client:
                try:
                    core.list_namespaced_pod("webterm")
                except ApiException as exc:
                    return int(exc.status), (exc.headers or {}).get("Retry-After")
            return 200, None

        with trio.fail_after(GUARD):
            assert await trio.to_thread.run_sync(call) == (503, "7")
            # the controllers are down with the API: a scale made meanwhile waits
            api.scale("terminal", 1)
            await trio.sleep(1)
            assert api.pod("terminal-0") is None
            api.faults.end_outage()
            assert await trio.to_thread.run_sync(call) == (200, None)
            await api.wait_pod_ready("terminal-0")


async def test_an_outage_can_refuse_connections_then_serve_the_same_port(
    tmp_path: Path,
) -> None:
    async with standin(tmp_path, Realism.fast()) as api, api.client() as http:
        assert (await http.get(PODS)).status_code == 200  # a kept-alive connection
        api.faults.outage("refused")
        with trio.fail_after(GUARD):
            for _ in range(3):
                try:
                    await http.get(PODS)
                except httpx.ConnectError:
                    break  # refused
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    continue  # the kept-alive connection, reset
                pytest.fail("answered during an outage")
            else:
                pytest.fail("never refused")
            with pytest.raises(httpx.ConnectError):
                await http.get(PODS)
            api.faults.end_outage()
            while True:
                try:
                    assert (await http.get(PODS)).status_code == 200
                    break
                except httpx.ConnectError:
                    await trio.sleep(0.05)  # reopening the listener


async def test_a_hanging_outage_never_answers(tmp_path: Path) -> None:
    async with standin(tmp_path, Realism.fast()) as api, api.client() as http:
        api.faults.outage("hang")
        with trio.move_on_after(1) as scope:
            await http.get(PODS)
        assert scope.cancelled_caught
        api.faults.end_outage()
        with trio.fail_after(GUARD):
            assert (await http.get(PODS)).status_code == 200


async def test_a_half_open_watch_delivers_nothing_and_never_ends(tmp_path: Path) -> None:
    async with (
        standin(tmp_path, Realism.fast(bookmark_interval=0.2)) as api,
        api.client() as http,
    ):
        api.faults.hold_pending("a")
        with trio.fail_after(GUARD):
            async with open_watch(http, PODS, allowWatchBookmarks="true") as watch:
                assert (await watch.next())["type"] == "BOOKMARK"
                assert api.faults.half_open_watches() == 1
                api.create(R.PODS, pod_manifest("a"))
                with trio.move_on_after(1.5) as scope:
                    await watch.next()  # no event, no bookmark, no end
                assert scope.cancelled_caught
                assert not watch.ended
            # a new watch works and sees the pod
            async with open_watch(http, PODS) as fresh:
                assert (await fresh.next())["object"]["metadata"]["name"] == "a"


async def test_a_concurrent_writer_makes_a_precondition_fail(tmp_path: Path) -> None:
    async with standin(tmp_path, Realism.fast()) as api:
        api.faults.hold_pending("a")
        api.create(R.PODS, pod_manifest("a"))
        api.faults.race_writes(2, verb="patch")

        def patches() -> tuple[int, str]:
            client, core = core_api(api)
            with client:
                pod = core.read_namespaced_pod("a", "webterm")
                status = 200
                try:
                    core.patch_namespaced_pod(
                        "a",
                        "webterm",
                        {
                            "metadata": {
                                "resourceVersion": pod.metadata.resource_version,
                                "labels": {"owner": "me"},
                            }
                        },
                    )
                except ApiException as exc:
                    status = int(exc.status)
                # without a precondition the last writer simply wins
                done = core.patch_namespaced_pod(
                    "a", "webterm", {"metadata": {"labels": {"owner": "me"}}}
                )
                return status, done.metadata.labels["owner"]

        with trio.fail_after(GUARD):
            assert await trio.to_thread.run_sync(patches) == (409, "me")
        pod = api.pod("a")
        assert pod is not None
        assert pod["metadata"]["annotations"]["kubeapi.test/concurrent-write"] == "2"


async def test_the_controller_acts_late_so_a_quick_undo_coalesces(tmp_path: Path) -> None:
    async with standin(tmp_path, Realism.fast(controller_delay=(30.0, 30.0))) as api:
        api.create_terminal_statefulset(replicas=0)
        api.scale("terminal", 1)
        await trio.sleep(0.5)
        api.scale("terminal", 0)
        await trio.sleep(0.5)
        assert api.pod("terminal-0") is None  # a 20 ms controller would have made it
    async with standin(tmp_path / "b", Realism.fast()) as api:
        api.create_terminal_statefulset(replicas=0)
        api.faults.pause_controller()
        api.scale("terminal", 1)
        await trio.sleep(1.5)
        assert api.pod("terminal-0") is None
        api.faults.resume_controller()
        with trio.fail_after(GUARD):
            await api.wait_pod_ready("terminal-0")


async def test_pods_take_their_time_to_start(tmp_path: Path) -> None:
    async with standin(tmp_path, Realism.fast(pod_start=(30.0, 30.0))) as api:
        api.create(R.PODS, pod_manifest("slow"))
        with trio.fail_after(GUARD):
            await api.wait_for(R.PODS, "slow", lambda p: p is not None and "nodeName" in p["spec"])
        await trio.sleep(0.5)
        pod = api.pod("slow")
        assert pod is not None
        assert pod["status"]["phase"] == "Pending"
        assert "podIP" not in pod["status"]


def probed_pod(name: str, **probes: dict[str, Any]) -> dict[str, Any]:
    pod = pod_manifest(name)
    pod["spec"]["containers"][0].update(probes)
    return pod


def http_probe(**settings: int) -> dict[str, Any]:
    return {"httpGet": {"path": "/healthz", "port": 7681}, **settings}


def ready(pod: dict[str, Any] | None) -> bool:
    return pod is not None and any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
    )


async def test_readiness_follows_the_spec_thresholds_and_timeouts(tmp_path: Path) -> None:
    async with standin(tmp_path, Realism.fast(pod_start=(0.1, 0.2))) as api:
        api.create(
            R.PODS,
            probed_pod("three", readinessProbe=http_probe(periodSeconds=1, successThreshold=3)),
        )
        with trio.fail_after(GUARD):
            await api.wait_for(R.PODS, "three", ready)
        three = api.kubelet.runtime("three")
        assert three is not None
        assert three.probes >= 3  # Ready only after three successes in a row
        # a starved container answers probes 2 s late: a 1 s timeout fails, a 5 s one passes
        for name, timeout in (("short", 1), ("long", 5)):
            probe = http_probe(periodSeconds=1, timeoutSeconds=timeout, failureThreshold=2)
            api.create(R.PODS, probed_pod(name, readinessProbe=probe))
        with trio.fail_after(GUARD):
            await api.wait_for(R.PODS, "short", ready)
            await api.wait_for(R.PODS, "long", ready)
            api.faults.starve_cpu("short", 2.0)
            api.faults.starve_cpu("long", 2.0)
            long = api.kubelet.runtime("long")
            assert long is not None
            before = long.probes
            await api.wait_for(R.PODS, "short", lambda p: not ready(p))
            while long.probes < before + 3:
                await trio.sleep(0.1)
        assert ready(api.pod("long"))


async def test_liveness_and_startup_failures_restart_the_container(tmp_path: Path) -> None:
    async with standin(tmp_path, Realism.fast(pod_start=(0.1, 0.2))) as api:
        api.faults.starve_cpu("live", 2.0)
        api.faults.starve_cpu("start", 2.0)
        api.create(
            R.PODS,
            probed_pod("live", livenessProbe=http_probe(periodSeconds=1, failureThreshold=2)),
        )
        api.create(
            R.PODS,
            probed_pod(
                "start",
                startupProbe=http_probe(periodSeconds=1, failureThreshold=2),
                readinessProbe=http_probe(periodSeconds=1),
            ),
        )

        def restarted(p: dict[str, Any] | None) -> bool:
            return p is not None and any(
                cs["restartCount"] >= 1 for cs in p["status"].get("containerStatuses", [])
            )

        with trio.fail_after(GUARD):
            await api.wait_for(R.PODS, "live", restarted)
            await api.wait_for(R.PODS, "start", restarted)
        assert not ready(api.pod("start"))  # readiness never ran before startup succeeded
        api.faults.starve_cpu("start", None)
        with trio.fail_after(GUARD):
            await api.wait_for(R.PODS, "start", ready)
