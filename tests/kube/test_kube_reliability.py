"""The kubernetes backend under the faults of a real cluster (issue 13): each test
reproduces one defect against the stand-in, through the real client and a kubeconfig."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import yaml
from trio_websocket import open_websocket_url

from tests.credentials import AUTH, CREDENTIAL
from tests.kube.tcpproxy import forwarder
from tests.kube.test_kube_backend import SUITE_REALISM, cluster, free_port, manager
from tests.kubeapi import LEASES, PODS, STATEFULSETS, KubeletConfig, Realism, run_kube_api
from webterm.config import ManagerConfig
from webterm.manager.kube import backend as kube_backend
from webterm.manager.kube.client import KubeClient, KubeError, load_connection
from webterm.manager.kube.pods import Pod, PodInfo, host_port
from webterm.manager.kube.workqueue import retry_hint
from webterm.protocol import client_hash, subprotocols_for

OWNER = "webterm.dev/client"
MERGE = {"Content-Type": "application/merge-patch+json"}


def owner_of(pod: dict[str, Any] | None) -> str | None:
    assert pod is not None
    return (pod["metadata"].get("annotations") or {}).get(OWNER)


async def until_ok(http: httpx.AsyncClient, client: str, seconds: float = 60) -> dict[str, Any]:
    with trio.fail_after(seconds):
        while True:
            answer = await http.post("/v1/allocations", json={"client": client})
            if answer.status_code == 200:
                return dict(answer.json())
            await trio.sleep(0.2)


# --- defect 1: a failed ownership write --------------------------------------------------


async def test_a_failed_claim_write_is_undone_and_a_reconnect_rewrites_the_owner(
    tmp_path: Path,
) -> None:
    """The claim patch fails with 503s (not a conflict): the client is told to retry
    and the terminal is not kept as its; a reconnect answers only once the pod names
    its owner, and a restarted manager never hands that pod to somebody else."""
    async with cluster(tmp_path) as (api, port):
        async with manager(api, port, spares=1, max_terminals=2) as http:
            await api.wait_ready_count(1)
            fault = api.faults.fail_next(10_000, status=503, verb="patch", path="/pods/")
            first = await http.post("/v1/allocations", json={"client": "a"})
            fault.remaining = 0
            assert first.status_code == 503, first.text
            assert int(first.headers["Retry-After"]) > 0
            assert all(owner_of(p) is None for p in api.pods())  # nothing recorded
            again = await until_ok(http, "a")
            assert owner_of(api.pod(again["terminal"])) == client_hash(api.secret, "a")
            # the annotation vanishes behind the manager's back: a reconnect rewrites it
            async with api.client(admin=True) as admin:
                path = f"/api/v1/namespaces/webterm/pods/{again['terminal']}"
                patch = {"metadata": {"annotations": {OWNER: None}}}
                assert (await admin.patch(path, json=patch, headers=MERGE)).status_code == 200
            reconnect = (await http.post("/v1/allocations", json={"client": "a"})).json()
            assert reconnect["reconnect"] is True
            assert owner_of(api.pod(again["terminal"])) == client_hash(api.secret, "a")
        async with manager(api, port, spares=1, max_terminals=2) as http:
            other = await until_ok(http, "b")
            assert other["terminal"] != again["terminal"]
            owners = [owner_of(p) for p in api.pods() if owner_of(p)]
            assert len(owners) == len(set(owners)) == 2


# --- defect 2: decisions survive an API outage --------------------------------------------


async def test_a_recycle_decided_during_an_api_outage_is_carried_out_when_it_returns(
    tmp_path: Path,
) -> None:
    """The API is gone for longer than any one call's retries: the give-back is
    answered 503 + Retry-After (not durable: the pod's delete failed), the decision is
    kept, and it ends in the old pod's deletion and a fresh terminal once the API is
    back; the same give-back asked again then answers 200."""
    async with (
        cluster(tmp_path) as (api, port),
        manager(api, port, spares=1, max_terminals=2, resync_period=5.0) as http,
    ):
        answer = await until_ok(http, "leaving")
        uid = api.pod(answer["terminal"])["metadata"]["uid"]
        api.faults.go_down()
        refused = await http.delete("/v1/allocations/leaving")
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["Retry-After"]) > 0
        assert "not yet carried out" in refused.json()["error"]
        await trio.sleep(8)  # past the old 3.5 s of retries
        api.faults.come_back()
        with trio.fail_after(60):
            await api.wait_pod_gone(answer["terminal"], uid=uid)
        assert (await http.delete("/v1/allocations/leaving")).status_code == 200
        # confirmed once: the client holds nothing now
        assert (await http.delete("/v1/allocations/leaving")).status_code == 404
        # a fresh terminal for the next client: the old name again, or another if the
        # pool scaled it away meanwhile (which pods a realistic controller keeps varies)
        fresh = await until_ok(http, "next")
        fresh_pod = api.pod(fresh["terminal"])
        assert fresh_pod["metadata"]["uid"] != uid
        assert owner_of(fresh_pod) is not None  # now the next client's, nobody else's


async def test_a_give_back_refused_in_an_outage_then_a_manager_kill_is_carried_out_when_asked_again(
    tmp_path: Path,
) -> None:
    """The soak's released-pod-not-deleted (its first case): a give-back during an API
    outage, then the manager dies before its loop got the delete through. It never
    said 200, so the client asks again; the next manager (which adopted the pod as the
    client's, from its owner annotation) recycles it then, and only then says 200."""
    async with cluster(tmp_path) as (api, port):
        async with manager(api, port, spares=1, max_terminals=2) as http:
            answer = await until_ok(http, "leaving")
            uid = api.pod(answer["terminal"])["metadata"]["uid"]
            api.faults.go_down()
            assert (await http.delete("/v1/allocations/leaving")).status_code == 503
        api.faults.come_back()
        async with manager(api, port, spares=1, max_terminals=2, stale_after=600.0) as http:
            with trio.fail_after(30):
                while (again := await http.delete("/v1/allocations/leaving")).status_code != 200:
                    assert again.status_code == 503, again.text  # not ready yet
                    await trio.sleep(0.2)
            with trio.fail_after(30):
                await api.wait_pod_gone(answer["terminal"], uid=uid)


async def test_a_give_back_answered_survives_the_manager_dying_right_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The soak's released-pod-not-deleted: a give-back answered 200 while the delete
    was only in the manager's memory, and the manager then killed. The restarted one
    listed the pod, still annotated with its owner, and adopted it as in use until
    --stale-after. Answered means on the pod: the next manager sees it being deleted.
    (A slow reconcile loop, as on a loaded node, stands for the window after the 200.)"""
    async with cluster(tmp_path) as (api, port):
        async with manager(api, port, spares=1, max_terminals=2) as http:
            answer = await until_ok(http, "leaving")
            uid = api.pod(answer["terminal"])["metadata"]["uid"]
            monkeypatch.setattr(kube_backend, "COALESCE", 30.0)
            await trio.sleep(1)  # the loop is idle, waiting for a change
            assert (await http.delete("/v1/allocations/leaving")).status_code == 200
        # the first manager is gone; the next one must not keep the given-back pod
        async with manager(api, port, spares=1, max_terminals=2, stale_after=600.0) as http:
            with trio.fail_after(30):
                await api.wait_pod_gone(answer["terminal"], uid=uid)
            other = await until_ok(http, "next")
            assert owner_of(api.pod(other["terminal"])) == client_hash(api.secret, "next")


# --- defect 4: a Ready pod hidden after a quick scale-down then up -----------------------


async def test_a_pod_kept_through_a_quick_scale_down_and_up_is_handed_out(
    tmp_path: Path,
) -> None:
    """The controller is slow (2 s): the manager scales 3 -> 1 -> 2 before it acts, so
    terminal-1 never changes and is never re-announced by the watch; the pool must
    still know it from the cache and hand it out."""
    slow_controller = Realism.fast(controller_delay=(2.0, 2.0))
    async with run_kube_api(tmp_path, terminal_replicas=3, realism=slow_controller) as api:
        await api.wait_ready_count(3)
        async with manager(api, free_port(), spares=1, max_terminals=3, ready_timeout=10.0) as http:
            await api.wait_for(STATEFULSETS, "terminal", lambda s: s["spec"]["replicas"] == 1)
            first = (await http.post("/v1/allocations", json={"client": "a"})).json()
            second = await http.post("/v1/allocations", json={"client": "b"})
            assert second.status_code == 200, second.text
            assert {first["terminal"], second.json()["terminal"]} == {"terminal-0", "terminal-1"}


# --- defect 5: an in-use pod briefly not ready ---------------------------------------------


async def test_an_in_use_pod_briefly_not_ready_keeps_its_session(tmp_path: Path) -> None:
    ready_timeout = 3.0
    async with (
        cluster(tmp_path) as (api, port),
        manager(api, port, spares=1, max_terminals=2, ready_timeout=ready_timeout) as http,
    ):
        answer = await until_ok(http, "busy")
        name = answer["terminal"]
        uid = api.pod(name)["metadata"]["uid"]
        api.faults.block_readiness(name)  # a user saturating the CPU: probes time out
        await api.wait_for(
            PODS, name, lambda p: p is not None and "Ready" not in _true_conditions(p)
        )
        await trio.sleep(ready_timeout + 3)
        pod = api.pod(name)
        assert pod is not None
        assert pod["metadata"]["uid"] == uid
        assert "deletionTimestamp" not in pod["metadata"]
        api.faults.unblock_readiness(name)
        await api.wait_pod_ready(name)
        again = (await http.post("/v1/allocations", json={"client": "busy"})).json()
        assert (again["terminal"], again["reconnect"]) == (name, True)


def _true_conditions(pod: dict[str, Any]) -> set[str]:
    return {c["type"] for c in pod["status"].get("conditions") or [] if c["status"] == "True"}


# --- defect 6: Pending is not failure -------------------------------------------------------


async def test_a_pending_pod_is_not_failed_and_the_client_is_told_to_retry(
    tmp_path: Path,
) -> None:
    """Pending past --ready-timeout (a node being added, an image pull): the waiting
    client gets 503 + Retry-After, the pod is kept (no delete-and-requeue), and once
    it runs the client gets that very pod."""
    async with cluster(tmp_path) as (api, port):
        api.faults.hold_pending("terminal-0")
        # no spares: the pod exists only for the waiting client, and must outlive its
        # timed-out request (the client retries), not be scaled away and started anew
        async with manager(api, port, spares=0, max_terminals=1, ready_timeout=6.0) as http:
            answer = await http.post("/v1/allocations", json={"client": "a"})
            assert answer.status_code == 503
            assert int(answer.headers["Retry-After"]) > 0
            uid = api.pod("terminal-0")["metadata"]["uid"]
            await trio.sleep(8)  # well past the ready timeout
            pod = api.pod("terminal-0")
            assert pod is not None
            assert pod["metadata"]["uid"] == uid
            assert "deletionTimestamp" not in pod["metadata"]
            api.faults.release_pending("terminal-0")
            got = await until_ok(http, "a")
            assert got["terminal"] == "terminal-0"
            assert api.pod("terminal-0")["metadata"]["uid"] == uid


# --- defect 7: a half-open watch ----------------------------------------------------------


async def test_a_half_open_watch_is_noticed_and_restarted(tmp_path: Path) -> None:
    """The watch's connection goes silent without a FIN: no bookmark arrives within
    --watch-timeout, the manager watches again and sees the changes it missed."""
    async with (
        cluster(tmp_path) as (api, port),
        forwarder(("127.0.0.1", api.port)) as (fwd, fport),
    ):
        kubeconfig = _kubeconfig(api, tmp_path / "via-forwarder", f"http://127.0.0.1:{fport}")
        async with manager(
            api, port, kubeconfig=str(kubeconfig), spares=1, max_terminals=1, watch_timeout=3.0
        ) as http:
            await api.wait_ready_count(1)
            with trio.fail_after(10):
                while (await http.get("/v1/terminals/terminal-0")).json()["state"] != "free":
                    await trio.sleep(0.1)
            assert fwd.freeze() >= 1
            old = api.pod("terminal-0")["metadata"]["uid"]
            api.delete(PODS, "terminal-0", grace_period=0)
            fresh = await api.wait_pod_ready("terminal-0", not_uid=old)
            with trio.fail_after(30):
                while (await http.get("/v1/terminals/terminal-0")).json()["instance"] != (
                    fresh["metadata"]["uid"]
                ):
                    await trio.sleep(0.1)


def _kubeconfig(api: Any, path: Path, server: str, **cluster_extra: Any) -> Path:
    doc = yaml.safe_load(api.kubeconfig.read_text())
    doc["clusters"][0]["cluster"]["server"] = server
    doc["clusters"][0]["cluster"].update(cluster_extra)
    path.write_text(yaml.safe_dump(doc))
    return path


# --- defect 8: clocks, Retry-After, kubeconfig, IPv6 ------------------------------------


async def test_an_adopted_unconnected_terminal_is_recycled_as_stale(tmp_path: Path) -> None:
    """A restarted manager adopts an allocation nobody connects to: it is recycled
    after --stale-after (the annotation's wall-clock time on the pool's clock)."""
    async with cluster(tmp_path) as (api, port):
        async with manager(api, port, spares=1, max_terminals=2) as http:
            answer = await until_ok(http, "gone-away")
        uid = api.pod(answer["terminal"])["metadata"]["uid"]
        async with manager(api, port, spares=1, max_terminals=2, stale_after=2.0):
            with trio.fail_after(30):
                await api.wait_pod_gone(answer["terminal"], uid=uid)


async def test_an_adopted_connected_session_is_not_recycled_as_stale(tmp_path: Path) -> None:
    """A browser stays attached across a manager restart (a leader change): the new
    manager knows from the pod's connected annotation that the session is live, and
    does not recycle it as stale under its user."""
    async with cluster(tmp_path) as (api, port), trio.open_nursery() as nursery:
        first_scope = trio.CancelScope()
        allocated, stopped = trio.Event(), trio.Event()
        got: dict[str, Any] = {}

        async def first_manager() -> None:
            try:
                with first_scope:
                    async with manager(api, port, spares=1, max_terminals=2) as http:
                        got.update(await until_ok(http, "still-here"))
                        allocated.set()
                        await trio.sleep_forever()
            finally:
                stopped.set()

        nursery.start_soon(first_manager)
        await allocated.wait()
        name = got["terminal"]
        uid = api.pod(name)["metadata"]["uid"]
        async with open_websocket_url(
            f"ws://{got['address']}/ws", subprotocols=subprotocols_for(got["token"])
        ) as ws:
            await _run(ws, "echo before-$((2*3))", "before-6")
            await api.wait_for(
                PODS,
                name,
                lambda p: (p["metadata"].get("annotations") or {}).get(CONNECTED) == "true",
            )
            first_scope.cancel()
            await stopped.wait()
            async with manager(api, port, spares=1, max_terminals=2, stale_after=2.0):
                await trio.sleep(6)  # three times --stale-after
                pod = api.pod(name)
                assert pod is not None
                assert pod["metadata"]["uid"] == uid
                assert "deletionTimestamp" not in pod["metadata"]
                await _run(ws, "echo after-$((3*3))", "after-9")


CONNECTED = "webterm.dev/connected"


async def _run(ws: Any, command: str, marker: str) -> None:
    await ws.send_message(command.encode() + b"\n")
    seen = b""
    with trio.fail_after(20):
        while marker.encode() not in seen:
            message = await ws.get_message()
            if isinstance(message, bytes):
                seen += message


async def test_retry_after_from_the_api_server_is_honoured(tmp_path: Path) -> None:
    async with run_kube_api(
        tmp_path, kubelet=KubeletConfig(mode="fake"), realism=SUITE_REALISM
    ) as api:
        config = ManagerConfig(
            secret=api.secret, signing_key=api.signing_key, webserver_credential=CREDENTIAL,
            kubeconfig=str(api.kubeconfig),
        )  # fmt: skip
        client = KubeClient(load_connection(config))
        try:
            for status in (429, 503):
                api.faults.fail_next(1, status=status, verb="get", retry_after=7)
                with pytest.raises(KubeError) as caught:
                    await client.get_pod("nothing-here")
                assert caught.value.status == status
                assert caught.value.retry_after == 7
                assert retry_hint(caught.value) == 7.0  # the wait stamina uses
            api.faults.fail_next(1, status=500, verb="get")
            with pytest.raises(KubeError) as caught:
                await client.get_pod("nothing-here")
            assert caught.value.retry_after is None
            assert retry_hint(caught.value) is True  # retried, on the usual backoff
        finally:
            await client.aclose()


async def test_kubeconfig_tls_server_name_and_proxy_url_are_honoured(tmp_path: Path) -> None:
    """The server is reached at an address its certificate does not name, with
    ``tls-server-name`` naming one it does; and through an HTTP CONNECT proxy."""
    async with (
        run_kube_api(
            tmp_path, kubelet=KubeletConfig(mode="fake"), tls=True, realism=SUITE_REALISM
        ) as api,
        forwarder(("127.0.0.1", api.port), host="127.0.0.2") as (_, fport),
        forwarder(("127.0.0.1", api.port), connect_proxy=True) as (proxy, pport),
    ):
        renamed = _kubeconfig(
            api,
            tmp_path / "renamed",
            f"https://127.0.0.2:{fport}",
            **{"tls-server-name": "localhost"},
        )
        proxied = _kubeconfig(
            api, tmp_path / "proxied", api.url, **{"proxy-url": f"http://127.0.0.1:{pport}"}
        )
        for kubeconfig in (renamed, proxied):
            config = ManagerConfig(
                secret=api.secret, signing_key=api.signing_key, webserver_credential=CREDENTIAL,
                kubeconfig=str(kubeconfig),
            )  # fmt: skip
            client = KubeClient(load_connection(config))
            try:
                listed = await client.list_pods("app.kubernetes.io/component=terminal")
                assert listed.metadata.resourceVersion
            finally:
                await client.aclose()
        assert proxy.connects
        assert proxy.connects[0].startswith(b"CONNECT 127.0.0.1:")


def test_ipv6_pod_addresses_are_bracketed() -> None:
    pod = Pod()
    pod.metadata.name, pod.metadata.uid = "terminal-0", "u"
    pod.status.podIP = "fd00:10:244::5"
    assert PodInfo.from_pod(pod).address(7681) == "[fd00:10:244::5]:7681"
    assert host_port("10.1.2.3", 7681) == "10.1.2.3:7681"


# --- high availability ------------------------------------------------------------------------


def _standin_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/component": "manager"}},
        "spec": {"containers": [{"name": "manager", "image": "webterm:dev"}]},
    }


async def test_a_killed_leader_loses_no_allocation_and_a_follower_takes_over(
    tmp_path: Path,
) -> None:
    """Two managers with --leader-elect (client-go's default timings: 15 s lease,
    10 s renew deadline, 2 s retry). The leader (a real process) is SIGKILLed in the
    middle of an allocation; every allocation it answered is still its client's on the
    new leader, the interrupted one is served by the new leader, the Service label
    moves, and no pod has two owners. Prints the takeover time."""
    async with cluster(tmp_path) as (api, port):
        api.create(PODS, _standin_pod("manager-a"))
        api.create(PODS, _standin_pod("manager-b"))
        port_a = free_port()
        (tmp_path / "signing-key.pem").write_bytes(api.signing_key.to_pem())
        (tmp_path / "credential").write_bytes(CREDENTIAL)
        env = {
            **os.environ,
            "WEBTERM_SECRET": api.secret.decode(),
            "WEBTERM_SIGNING_KEY_FILE": str(tmp_path / "signing-key.pem"),
            "WEBTERM_WEBSERVER_CREDENTIAL_FILE": str(tmp_path / "credential"),
        }
        leader = subprocess.Popen(
            [
                sys.executable, "-m", "webterm", "manager", "--backend", "kubernetes",
                "--kubeconfig", str(api.kubeconfig), "--port", str(port_a), "--spares", "1",
                "--max-terminals", "4", "--leader-elect", "--pod-name", "manager-a",
            ],
            env=env,
        )  # fmt: skip
        try:
            urls = [f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port}"]
            async with httpx.AsyncClient(timeout=60, headers=AUTH) as a:
                with trio.fail_after(30):
                    while True:
                        try:
                            if (await a.get(f"{urls[0]}/readyz")).json().get("status") == "ready":
                                break
                        except httpx.HTTPError:
                            pass
                        await trio.sleep(0.1)
                async with manager(
                    api, port, spares=1, max_terminals=4, leader_elect=True, pod_name="manager-b"
                ) as b:
                    with trio.fail_after(20):
                        while (await b.get("/readyz")).status_code != 200:
                            await trio.sleep(0.1)
                    assert (await b.get("/readyz")).json()["status"] == "standby"
                    refused = await b.post("/v1/allocations", json={"client": "x"})
                    assert refused.status_code == 503
                    assert refused.headers["Retry-After"]
                    await api.wait_for(
                        PODS, "manager-a", lambda p: p["metadata"]["labels"].get(LEADER) == "true"
                    )
                    held = {}
                    for client in ("c1", "c2"):
                        held[client] = await _allocate_anywhere(a, urls, client)
                    api.faults.latency = 1.0  # the next claim is under way when the leader dies
                    interrupted = trio.Event()

                    async def kill_mid_allocation() -> None:
                        await trio.sleep(0.3)
                        leader.send_signal(signal.SIGKILL)
                        interrupted.set()

                    killed_at = 0.0
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(kill_mid_allocation)
                        try:
                            await a.post(f"{urls[0]}/v1/allocations", json={"client": "c3"})
                            raise AssertionError("the allocation finished before the kill")
                        except httpx.HTTPError:
                            pass
                        await interrupted.wait()
                        killed_at = trio.current_time()
                    api.faults.latency = 0.0
                    third = await _allocate_anywhere(a, urls, "c3")
                    takeover = trio.current_time() - killed_at
                    print(
                        f"\nleader killed mid-allocation; next allocation served in {takeover:.1f} s"
                    )
                    assert third["terminal"] not in {h["terminal"] for h in held.values()}
                    for client, first in held.items():
                        again = await _allocate_anywhere(a, urls, client)
                        assert (again["terminal"], again["reconnect"]) == (first["terminal"], True)
                    lease = api.get(LEASES, "webterm-manager")
                    assert lease is not None
                    assert lease["spec"]["leaseTransitions"] >= 1
                    await api.wait_for(
                        PODS, "manager-b", lambda p: p["metadata"]["labels"].get(LEADER) == "true"
                    )
                    await api.wait_for(
                        PODS, "manager-a", lambda p: LEADER not in p["metadata"]["labels"]
                    )
                    owners = [owner_of(p) for p in api.pods() if owner_of(p)]
                    assert len(owners) == len(set(owners)) == 3
        finally:
            leader.kill()
            leader.wait()


LEADER = "webterm.dev/leader"


async def _allocate_anywhere(
    http: httpx.AsyncClient, urls: list[str], client: str
) -> dict[str, Any]:
    """What the webserver sees through the Service: whichever manager answers, with
    503 + Retry-After (standby) or a refused connection meaning "ask again"."""
    with trio.fail_after(60):
        while True:
            for url in urls:
                try:
                    answer = await http.post(f"{url}/v1/allocations", json={"client": client})
                except httpx.HTTPError:
                    continue
                if answer.status_code == 200:
                    return dict(answer.json())
            await trio.sleep(0.1)
