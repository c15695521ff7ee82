"""The StatefulSet controller, the kubelet (real processes), garbage collection,
namespaces and the NodePort proxy."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
import pytest
import trio
import trio.testing

from webterm.pty import LISTENING_PREFIX, listening_line

from . import resources as R
from .controllers import is_ready
from .fixtures import KubeApi, run_kube_api
from .kubelet import FAKEPOD_ARGS_ANNOTATION, KubeletConfig, fake_pod_command
from .realism import Realism
from .testing import pod_manifest

HANG_GUARD = 30  # seconds: generous, only so a broken controller cannot hang the suite


@pytest.fixture
async def papi(tmp_path: Path) -> AsyncIterator[KubeApi]:
    """Pods are real (tiny) processes."""
    async with run_kube_api(
        tmp_path, realism=Realism.fast(), kubelet=KubeletConfig(command=fake_pod_command())
    ) as api:
        yield api


def container_pid(api: KubeApi, name: str) -> int:
    runtime = api.kubelet.runtime(name)
    assert runtime is not None
    assert runtime.process is not None
    return runtime.process.pid


async def healthz(ip: str, port: int = 7681) -> int:
    async with httpx.AsyncClient(trust_env=False) as client:
        return (await client.get(f"http://{ip}:{port}/healthz")).status_code


async def test_scale_up_and_down_runs_and_stops_processes(papi: KubeApi) -> None:
    api = papi
    api.create_terminal_statefulset(replicas=3, env={"EXTRA": "from-template"})
    with trio.fail_after(HANG_GUARD):
        pods = await api.wait_ready_count(3)
    ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods}
    assert len(set(ips.values())) == 3
    assert all(ip.startswith("127.") for ip in ips.values())
    for name, ip in ips.items():
        assert await healthz(ip) == 200
        pod = api.pod(name)
        assert pod is not None
        meta = pod["metadata"]
        assert meta["labels"]["statefulset.kubernetes.io/pod-name"] == name
        assert meta["labels"]["app.kubernetes.io/component"] == "terminal"
        assert meta["ownerReferences"][0]["kind"] == "StatefulSet"
        assert meta["ownerReferences"][0]["controller"] is True
        assert pod["spec"]["hostname"] == name
        assert pod["spec"]["subdomain"] == "terminal"
        assert pod["status"]["phase"] == "Running"
        cs = pod["status"]["containerStatuses"][0]
        assert cs["ready"]
        assert cs["started"]
        assert "running" in cs["state"]
        env = psutil.Process(container_pid(api, name)).environ()
        assert env["WEBTERM_INSTANCE"] == meta["uid"]
        assert env["EXTRA"] == "from-template"
        assert "WEBTERM_SECRET" not in env  # the fake pod command does not hand it out
    pids = [container_pid(api, n) for n in ("terminal-1", "terminal-2")]
    api.scale("terminal", 1)
    with trio.fail_after(HANG_GUARD):
        await api.wait_pod_gone("terminal-2")
        await api.wait_pod_gone("terminal-1")
        await api.wait_for(
            R.STATEFULSETS, "terminal", lambda s: s is not None and s["status"]["replicas"] == 1
        )
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert [p["metadata"]["name"] for p in api.pods()] == ["terminal-0"]
    log = api.kubelet.logs("webterm", "terminal-0")
    assert log is not None
    assert listening_line(ips["terminal-0"], 7681) in log


async def test_deleted_pod_is_recreated_with_a_new_uid(papi: KubeApi) -> None:
    api = papi
    api.create_terminal_statefulset(replicas=1)
    with trio.fail_after(HANG_GUARD):
        old = await api.wait_pod_ready("terminal-0")
        old_pid = container_pid(api, "terminal-0")
        api.delete(R.PODS, "terminal-0")
        new = await api.wait_pod_ready("terminal-0", not_uid=old["metadata"]["uid"])
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    assert new["status"]["podIP"] != old["status"]["podIP"]
    assert container_pid(api, "terminal-0") != old_pid
    assert new["status"]["containerStatuses"][0]["restartCount"] == 0


async def test_graceful_delete_waits_for_the_grace_period_then_kills(papi: KubeApi) -> None:
    api = papi
    pod = pod_manifest("stubborn", terminationGracePeriodSeconds=1)
    pod["metadata"]["annotations"] = {FAKEPOD_ARGS_ANNOTATION: "--ignore-sigterm"}
    # Ready only once it serves, i.e. after it installed its SIGTERM handler
    pod["spec"]["containers"][0]["readinessProbe"] = {
        "httpGet": {"path": "/healthz", "port": 7681},
        "periodSeconds": 1,
    }
    api.create(R.PODS, pod)
    with trio.fail_after(HANG_GUARD):
        await api.wait_pod_ready("stubborn")
        pid = container_pid(api, "stubborn")
        async with api.client() as client:
            r = await client.delete("/api/v1/namespaces/webterm/pods/stubborn")
            assert r.json()["metadata"]["deletionGracePeriodSeconds"] == 1
            # still there while the process ignores SIGTERM, and it is the same process
            terminating = api.pod("stubborn")
            assert terminating is not None
            assert terminating["metadata"]["deletionTimestamp"]
            assert psutil.pid_exists(pid)
        await api.wait_pod_gone("stubborn")
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    log = api.server.requests
    assert log[-1].verb == "delete"


async def test_container_restart_after_its_process_dies(papi: KubeApi) -> None:
    api = papi
    api.create_terminal_statefulset(replicas=1)
    with trio.fail_after(HANG_GUARD):
        first = await api.wait_pod_ready("terminal-0")
        pid = container_pid(api, "terminal-0")
        assert api.faults.kill_pod_process("terminal-0", signal.SIGKILL)
        restarted = await api.wait_for(
            R.PODS,
            "terminal-0",
            lambda p: (
                is_ready(p)
                and p is not None
                and p["status"]["containerStatuses"][0]["restartCount"] == 1
            ),
        )
    assert restarted is not None
    assert restarted["metadata"]["uid"] == first["metadata"]["uid"]  # same pod, new container
    assert restarted["status"]["podIP"] == first["status"]["podIP"]
    last = restarted["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 137
    assert last["reason"] == "Error"
    assert container_pid(api, "terminal-0") != pid


async def test_restart_policy_never_ends_the_pod(papi: KubeApi) -> None:
    api = papi
    pod = pod_manifest("job", restartPolicy="Never")
    pod["metadata"]["annotations"] = {FAKEPOD_ARGS_ANNOTATION: "--exit-after 0.2 --exit-code 3"}
    api.create(R.PODS, pod)
    with trio.fail_after(HANG_GUARD):
        done = await api.wait_for(
            R.PODS, "job", lambda p: p is not None and p["status"].get("phase") == "Failed"
        )
    assert done is not None
    assert done["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3


async def test_ordered_ready_creates_one_pod_at_a_time(api: KubeApi) -> None:
    api.faults.block_readiness("terminal-0")
    api.create_terminal_statefulset(replicas=2, parallel=False)
    with trio.fail_after(HANG_GUARD):
        await api.wait_for(
            R.PODS, "terminal-0", lambda p: p is not None and p["status"].get("phase") == "Running"
        )
        # let the controller act on that change (wrongly, it must not): an absence check
        await api.statefulset_controller.wait_idle()
        assert api.pod("terminal-1") is None  # waits for terminal-0 to be Ready
        api.faults.unblock_readiness("terminal-0")
        await api.wait_ready_count(2)
        # scale down deletes the highest ordinal first
        api.faults.ignore_sigterm("terminal-1")
        api.scale("terminal", 0)
        await api.wait_for(
            R.PODS,
            "terminal-1",
            lambda p: p is not None and bool(p["metadata"].get("deletionTimestamp")),
        )
        await trio.testing.wait_all_tasks_blocked()
        zero = api.pod("terminal-0")
        assert zero is not None
        assert not zero["metadata"].get("deletionTimestamp")
        api.delete(R.PODS, "terminal-1", grace_period=0)
        await api.wait_pod_gone("terminal-0")


async def test_hold_pending_and_readiness_faults(api: KubeApi) -> None:
    api.faults.hold_pending("terminal-0")
    api.create_terminal_statefulset(replicas=1)
    with trio.fail_after(HANG_GUARD):
        await api.wait_for(
            R.PODS, "terminal-0", lambda p: p is not None and bool(p["spec"].get("nodeName"))
        )
        await trio.testing.wait_all_tasks_blocked()
        pod = api.pod("terminal-0")
        assert pod is not None
        assert pod["status"]["phase"] == "Pending"
        assert "podIP" not in pod["status"]
        api.faults.release_pending("terminal-0")
        await api.wait_pod_ready("terminal-0")


async def test_deleting_the_statefulset_collects_its_pods(api: KubeApi) -> None:
    api.create_terminal_statefulset(replicas=2)
    with trio.fail_after(HANG_GUARD):
        await api.wait_ready_count(2)
        async with api.client() as client:
            r = await client.delete("/apis/apps/v1/namespaces/webterm/statefulsets/terminal")
            assert r.json()["status"] == "Success"
        await api.wait_until(lambda: not api.pods())


async def test_orphan_propagation_keeps_the_pods(api: KubeApi) -> None:
    api.create_terminal_statefulset(replicas=1)
    with trio.fail_after(HANG_GUARD):
        await api.wait_pod_ready("terminal-0")
        async with api.client() as client:
            await client.request(
                "DELETE",
                "/apis/apps/v1/namespaces/webterm/statefulsets/terminal",
                json={"propagationPolicy": "Orphan"},
            )
        await trio.testing.wait_all_tasks_blocked()
    pod = api.pod("terminal-0")
    assert pod is not None
    assert "ownerReferences" not in pod["metadata"]


async def test_namespace_deletion_removes_its_content(api: KubeApi) -> None:
    async with api.client() as client:
        await client.post("/api/v1/namespaces", json={"metadata": {"name": "tmp"}})
        api.faults.ignore_sigterm("p")  # its pod lingers, so the namespace stays Terminating
        api.create(R.PODS, pod_manifest("p", terminationGracePeriodSeconds=3600), namespace="tmp")
        with trio.fail_after(HANG_GUARD):
            await api.wait_pod_ready("p", namespace="tmp")
        r = await client.delete("/api/v1/namespaces/tmp")
        assert r.json()["status"]["phase"] == "Terminating"
        refused = await client.post("/api/v1/namespaces/tmp/pods", json=pod_manifest("q"))
        assert refused.status_code == 403
        api.delete(R.PODS, "p", namespace="tmp", grace_period=0)
        with trio.fail_after(HANG_GUARD):
            await api.wait_for(R.NAMESPACES, "tmp", lambda n: n is None, namespace="")
        assert api.pods("tmp") == []


async def test_node_port_proxy_reaches_a_ready_pod(papi: KubeApi) -> None:
    api = papi
    api.create_terminal_statefulset(replicas=1)
    with trio.fail_after(HANG_GUARD):
        await api.wait_pod_ready("terminal-0")
        async with api.client() as client:
            svc = {
                "metadata": {"name": "terminal-0-np"},
                "spec": {
                    "type": "NodePort",
                    "selector": {"statefulset.kubernetes.io/pod-name": "terminal-0"},
                    "ports": [{"port": 7681, "targetPort": "terminal"}],
                },
            }
            created = (await client.post("/api/v1/namespaces/webterm/services", json=svc)).json()
            node_port = created["spec"]["ports"][0]["nodePort"]
            assert api.proxy is not None
            await api.proxy.wait_listening(node_port)
            assert await healthz(api.node_ip, node_port) == 200
            await client.delete("/api/v1/namespaces/webterm/services/terminal-0-np")
            await api.proxy.wait_listening(node_port, listening=False)
            with pytest.raises(httpx.ConnectError):
                await healthz(api.node_ip, node_port)


async def test_leaving_the_stand_in_stops_every_pod_process(tmp_path: Path) -> None:
    async with run_kube_api(
        tmp_path, realism=Realism.fast(), kubelet=KubeletConfig(command=fake_pod_command())
    ) as api:
        stubborn = pod_manifest("stubborn")
        stubborn["metadata"]["annotations"] = {FAKEPOD_ARGS_ANNOTATION: "--ignore-sigterm"}
        stubborn["spec"]["containers"][0]["readinessProbe"] = {
            "httpGet": {"path": "/healthz", "port": 7681},
            "periodSeconds": 1,
        }
        api.create(R.PODS, stubborn)
        api.create_terminal_statefulset(replicas=2)
        with trio.fail_after(HANG_GUARD):
            await api.wait_ready_count(3)
        pids = [container_pid(api, n) for n in ("terminal-0", "terminal-1", "stubborn")]
        async with api.client() as client:
            r = await client.get("/api/v1/namespaces/webterm/pods/terminal-0/log")
        assert r.status_code == 200
        assert LISTENING_PREFIX in r.text
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def test_thousands_of_fake_pods(api: KubeApi) -> None:
    api.create_terminal_statefulset(replicas=1000)
    with trio.fail_after(120):
        await api.wait_ready_count(1000)
        async with api.client() as client:
            listed = (
                await client.get(
                    "/api/v1/namespaces/webterm/pods",
                    params={"labelSelector": "app.kubernetes.io/component=terminal"},
                )
            ).json()
            assert len(listed["items"]) == 1000
            api.scale("terminal", 10)
            await api.wait_until(lambda: sum(1 for _ in api.store.objects(R.PODS)) == 10)
