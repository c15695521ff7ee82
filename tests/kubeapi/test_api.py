"""The stand-in's REST semantics over real HTTP (raw httpx): the verbs, resource
versions, optimistic concurrency, subresources, Service allocation, Status errors,
authentication and RBAC."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from . import resources as R
from .fixtures import KubeApi, run_kube_api
from .kubelet import KubeletConfig
from .manifests import MANAGER_ROLE_RULES, terminal_statefulset
from .realism import Realism
from .testing import JSON_PATCH, MERGE, STRATEGIC, pod_manifest

PODS = "/api/v1/namespaces/webterm/pods"
SERVICES = "/api/v1/namespaces/webterm/services"
STS = "/apis/apps/v1/namespaces/webterm/statefulsets"


def assert_status(response: httpx.Response, code: int, reason: str) -> dict:
    assert response.status_code == code, response.text
    body = response.json()
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == code
    assert body["reason"] == reason
    assert body["message"]
    return body


async def test_discovery(client: httpx.AsyncClient) -> None:
    assert (await client.get("/version")).json()["major"] == "1"
    assert (await client.get("/api")).json()["versions"] == ["v1"]
    groups = (await client.get("/apis")).json()
    assert groups["kind"] == "APIGroupList"
    assert [g["name"] for g in groups["groups"]] == ["apps", "coordination.k8s.io"]
    core = (await client.get("/api/v1")).json()
    names = {r["name"] for r in core["resources"]}
    assert {"pods", "pods/status", "services", "namespaces"} <= names
    apps = (await client.get("/apis/apps/v1")).json()
    scale = next(r for r in apps["resources"] if r["name"] == "statefulsets/scale")
    assert scale["group"] == "autoscaling"
    assert scale["kind"] == "Scale"
    assert_status(await client.get("/apis/nope/v1"), 404, "NotFound")


async def test_create_get_list_with_resource_versions(client: httpx.AsyncClient) -> None:
    r = await client.post(PODS, json=pod_manifest("p1", labels={"app": "a"}))
    assert r.status_code == 201
    p1 = r.json()
    meta = p1["metadata"]
    assert p1["kind"] == "Pod"
    assert p1["apiVersion"] == "v1"
    assert meta["uid"]
    assert meta["creationTimestamp"].endswith("Z")
    assert meta["namespace"] == "webterm"
    assert p1["status"]["phase"] == "Pending"
    assert p1["spec"]["restartPolicy"] == "Always"
    assert p1["spec"]["terminationGracePeriodSeconds"] == 30

    r = await client.post(PODS, json={**pod_manifest(""), "metadata": {"generateName": "gen-"}})
    generated = r.json()["metadata"]
    assert r.status_code == 201
    assert generated["name"].startswith("gen-")
    assert len(generated["name"]) == 9
    assert int(generated["resourceVersion"]) > int(meta["resourceVersion"])

    assert_status(await client.post(PODS, json=pod_manifest("p1")), 409, "AlreadyExists")
    got = (await client.get(f"{PODS}/p1")).json()
    assert got["metadata"]["uid"] == meta["uid"]

    listed = (await client.get(PODS)).json()
    assert listed["kind"] == "PodList"
    assert listed["apiVersion"] == "v1"
    assert int(listed["metadata"]["resourceVersion"]) >= int(generated["resourceVersion"])
    assert (
        "kind" not in listed["items"][0]
    )  # list items carry no kind/apiVersion, like the apiserver's
    names = [i["metadata"]["name"] for i in listed["items"]]
    assert "p1" in names
    assert generated["name"] in names

    selected = (await client.get(PODS, params={"labelSelector": "app=a"})).json()["items"]
    assert [i["metadata"]["name"] for i in selected] == ["p1"]
    by_name = (
        await client.get(PODS, params={"fieldSelector": f"metadata.name={generated['name']}"})
    ).json()["items"]
    assert [i["metadata"]["name"] for i in by_name] == [generated["name"]]
    everywhere = (await client.get("/api/v1/pods")).json()["items"]
    assert len(everywhere) >= 2
    assert_status(await client.get(PODS, params={"labelSelector": "app in ("}), 400, "BadRequest")


async def test_list_limit_continue_and_exact_resource_version(client: httpx.AsyncClient) -> None:
    for i in range(5):
        await client.post(PODS, json=pod_manifest(f"p{i}"))
    page1 = (await client.get(PODS, params={"limit": 2})).json()
    assert [i["metadata"]["name"] for i in page1["items"]] == ["p0", "p1"]
    assert page1["metadata"]["remainingItemCount"] == 3
    await client.delete(f"{PODS}/p3", params={"gracePeriodSeconds": 0})  # after the snapshot
    page2 = (
        await client.get(PODS, params={"limit": 2, "continue": page1["metadata"]["continue"]})
    ).json()
    page3 = (
        await client.get(PODS, params={"limit": 2, "continue": page2["metadata"]["continue"]})
    ).json()
    assert [i["metadata"]["name"] for i in page2["items"] + page3["items"]] == ["p2", "p3", "p4"]
    assert "continue" not in page3["metadata"]

    rv = page1["metadata"]["resourceVersion"]
    exact = (
        await client.get(PODS, params={"resourceVersion": rv, "resourceVersionMatch": "Exact"})
    ).json()
    assert exact["metadata"]["resourceVersion"] == rv
    assert len(exact["items"]) == 5
    now = (
        await client.get(
            PODS, params={"resourceVersion": rv, "resourceVersionMatch": "NotOlderThan"}
        )
    ).json()
    assert len(now["items"]) == 4
    too_large = await client.get(PODS, params={"resourceVersion": str(int(rv) + 1000)})
    assert_status(too_large, 504, "Timeout")
    assert_status(await client.get(PODS, params={"resourceVersionMatch": "Exact"}), 422, "Invalid")


async def test_patch_merge_strategic_json_and_optimistic_concurrency(
    api: KubeApi, client: httpx.AsyncClient
) -> None:
    api.faults.hold_pending("p")  # the kubelet leaves its status alone
    created = (await client.post(PODS, json=pod_manifest("p", labels={"a": "1"}))).json()
    rv0 = created["metadata"]["resourceVersion"]
    r = await client.patch(
        f"{PODS}/p",
        json={"metadata": {"labels": {"b": "2"}, "annotations": {"x": "y"}}},
        headers=MERGE,
    )
    assert r.status_code == 200
    patched = r.json()
    assert patched["metadata"]["labels"] == {"a": "1", "b": "2"}
    assert int(patched["metadata"]["resourceVersion"]) > int(rv0)

    # A patch carrying a stale resourceVersion is refused; the current one is accepted.
    stale = await client.patch(
        f"{PODS}/p",
        json={"metadata": {"resourceVersion": rv0, "labels": {"c": "3"}}},
        headers=MERGE,
    )
    body = assert_status(stale, 409, "Conflict")
    assert "the object has been modified" in body["message"]
    assert body["details"] == {
        "name": "p",
        "kind": "pods",
    }
    ok = await client.patch(
        f"{PODS}/p",
        json={
            "metadata": {
                "resourceVersion": patched["metadata"]["resourceVersion"],
                "labels": {"c": "3"},
            }
        },
        headers=STRATEGIC,
    )
    assert ok.status_code == 200
    assert ok.json()["metadata"]["labels"] == {
        "a": "1",
        "b": "2",
        "c": "3",
    }
    # uid in the body is a precondition too (another incarnation of the same name)
    assert_status(
        await client.patch(f"{PODS}/p", json={"metadata": {"uid": "other"}}, headers=MERGE),
        409,
        "Conflict",
    )

    jp = await client.patch(
        f"{PODS}/p", json=[{"op": "remove", "path": "/metadata/labels/a"}], headers=JSON_PATCH
    )
    assert jp.status_code == 200
    assert "a" not in jp.json()["metadata"]["labels"]
    failed = await client.patch(
        f"{PODS}/p",
        json=[{"op": "test", "path": "/metadata/labels/b", "value": "x"}],
        headers=JSON_PATCH,
    )
    assert failed.status_code == 422

    # a no-op patch changes nothing, not even the resourceVersion
    with trio.fail_after(10):
        await api.wait_for(R.PODS, "p", lambda p: p is not None and bool(p["spec"].get("nodeName")))
    current = (await client.get(f"{PODS}/p")).json()
    same = await client.patch(f"{PODS}/p", json={"metadata": {"labels": {"b": "2"}}}, headers=MERGE)
    assert same.json()["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]

    # status is not writable through the main resource, only through /status
    ignored = await client.patch(f"{PODS}/p", json={"status": {"phase": "Running"}}, headers=MERGE)
    assert ignored.json()["status"]["phase"] == "Pending"
    written = await client.patch(
        f"{PODS}/p/status",
        json={"status": {"phase": "Running"}, "metadata": {"labels": {"z": "1"}}},
        headers=MERGE,
    )
    assert written.json()["status"]["phase"] == "Running"
    assert "z" not in written.json()["metadata"]["labels"]

    # the pod spec is immutable apart from images
    forbidden = await client.patch(
        f"{PODS}/p", json={"spec": {"restartPolicy": "Never"}}, headers=MERGE
    )
    assert (
        "Forbidden: pod updates may not change fields"
        in assert_status(forbidden, 422, "Invalid")["message"]
    )
    image = await client.patch(
        f"{PODS}/p",
        json={"spec": {"containers": [{"name": "main", "image": "busybox:2"}]}},
        headers=STRATEGIC,
    )
    assert image.json()["spec"]["containers"][0]["image"] == "busybox:2"

    apply = await client.patch(
        f"{PODS}/p", content=b"{}", headers={"content-type": "application/apply-patch+yaml"}
    )
    assert_status(apply, 415, "UnsupportedMediaType")
    too_long = await client.patch(
        f"{PODS}/p", json={"metadata": {"labels": {"owner": "x" * 64}}}, headers=MERGE
    )
    body = assert_status(too_long, 422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.labels"


async def test_update_put_checks_resource_version(client: httpx.AsyncClient) -> None:
    svc = {"metadata": {"name": "s"}, "spec": {"selector": {"a": "b"}, "ports": [{"port": 80}]}}
    created = (await client.post(SERVICES, json=svc)).json()
    newer = created | {"metadata": created["metadata"] | {"labels": {"v": "1"}}}
    r = await client.put(f"{SERVICES}/s", json=newer)
    assert r.status_code == 200
    assert r.json()["metadata"]["labels"] == {"v": "1"}
    assert r.json()["spec"]["clusterIP"] == created["spec"]["clusterIP"]
    assert_status(
        await client.put(f"{SERVICES}/s", json=newer), 409, "Conflict"
    )  # created's RV is stale now
    assert_status(await client.put(f"{SERVICES}/other", json=newer), 404, "NotFound")
    wrong_name = await client.put(
        f"{SERVICES}/s", json=r.json() | {"metadata": r.json()["metadata"] | {"name": "q"}}
    )
    assert_status(wrong_name, 400, "BadRequest")
    unconditional = r.json() | {
        "metadata": {"name": "s", "labels": {"v": "2"}}
    }  # no resourceVersion: allowed
    assert (await client.put(f"{SERVICES}/s", json=unconditional)).json()["metadata"]["labels"] == {
        "v": "2"
    }
    new_ip = r.json() | {"spec": r.json()["spec"] | {"clusterIP": "10.96.9.9"}}
    new_ip["metadata"].pop("resourceVersion")
    assert_status(await client.put(f"{SERVICES}/s", json=new_ip), 422, "Invalid")


async def test_delete_pod_graceful_and_preconditions(
    api: KubeApi, client: httpx.AsyncClient
) -> None:
    api.faults.ignore_sigterm("p")
    pod = (await client.post(PODS, json=pod_manifest("p"))).json()
    with trio.fail_after(10):
        await api.wait_pod_ready("p")
    wrong = await client.request("DELETE", f"{PODS}/p", json={"preconditions": {"uid": "nope"}})
    assert (
        "Precondition failed: UID in precondition"
        in assert_status(wrong, 409, "Conflict")["message"]
    )
    r = await client.request(
        "DELETE",
        f"{PODS}/p",
        json={"gracePeriodSeconds": 3600, "preconditions": {"uid": pod["metadata"]["uid"]}},
    )
    assert r.status_code == 200
    terminating = r.json()
    assert terminating["kind"] == "Pod"  # pods answer with the object, not a Status
    assert terminating["metadata"]["deletionTimestamp"]
    assert terminating["metadata"]["deletionGracePeriodSeconds"] == 3600
    assert (await client.get(f"{PODS}/p")).status_code == 200  # still there, terminating
    # a shorter grace period moves the deadline; 0 removes it at once (force)
    r = await client.delete(f"{PODS}/p", params={"gracePeriodSeconds": 0})
    assert r.status_code == 200
    assert_status(await client.get(f"{PODS}/p"), 404, "NotFound")
    assert_status(await client.delete(f"{PODS}/p"), 404, "NotFound")

    # an unscheduled pod (held Pending) has no one to stop it: deleted at once
    api.faults.hold_pending("q")
    await client.post(PODS, json=pod_manifest("q"))
    await api.wait_for(R.PODS, "q", lambda p: p is not None and bool(p["spec"].get("nodeName")))
    r = await client.delete(f"{PODS}/q")
    assert r.status_code == 200
    with trio.fail_after(10):
        await api.wait_pod_gone("q")


async def test_delete_collection_and_success_status(client: httpx.AsyncClient) -> None:
    svc = {"metadata": {"name": "s1"}, "spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}}
    await client.post(SERVICES, json=svc)
    r = await client.delete(f"{SERVICES}/s1")
    body = r.json()
    assert r.status_code == 200
    assert body["kind"] == "Status"
    assert body["status"] == "Success"
    assert body["details"]["name"] == "s1"
    assert body["details"]["kind"] == "services"
    for i in range(3):
        await client.post(
            PODS, json=pod_manifest(f"d{i}", labels={"del": "yes" if i < 2 else "no"})
        )
    r = await client.request(
        "DELETE", PODS, params={"labelSelector": "del=yes", "gracePeriodSeconds": "0"}
    )
    assert r.json()["kind"] == "PodList"
    assert len(r.json()["items"]) == 2
    assert [p["metadata"]["name"] for p in (await client.get(PODS)).json()["items"]] == ["d2"]


async def test_services_cluster_ip_and_node_ports(client: httpx.AsyncClient) -> None:
    def svc(name: str, **spec: object) -> dict:
        return {
            "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 7681}], **spec},
        }

    plain = (await client.post(SERVICES, json=svc("plain"))).json()
    assert plain["spec"]["type"] == "ClusterIP"
    assert plain["spec"]["clusterIP"].startswith("10.96.")
    assert plain["spec"]["clusterIPs"] == [plain["spec"]["clusterIP"]]
    assert "nodePort" not in plain["spec"]["ports"][0]
    assert plain["spec"]["ports"][0]["targetPort"] == 7681
    headless = (await client.post(SERVICES, json=svc("headless", clusterIP="None"))).json()
    assert headless["spec"]["clusterIP"] == "None"

    a = (await client.post(SERVICES, json=svc("a", type="NodePort"))).json()
    b = (await client.post(SERVICES, json=svc("b", type="NodePort"))).json()
    port_a, port_b = a["spec"]["ports"][0]["nodePort"], b["spec"]["ports"][0]["nodePort"]
    assert 30000 <= port_a <= 32767
    assert 30000 <= port_b <= 32767
    assert port_a != port_b
    assert a["spec"]["clusterIP"] != b["spec"]["clusterIP"]
    taken = await client.post(
        SERVICES, json=svc("c", type="NodePort", ports=[{"port": 1, "nodePort": port_a}])
    )
    assert "provided port is already allocated" in assert_status(taken, 422, "Invalid")["message"]
    out_of_range = await client.post(
        SERVICES, json=svc("c", type="NodePort", ports=[{"port": 1, "nodePort": 80}])
    )
    assert_status(out_of_range, 422, "Invalid")
    await client.delete(f"{SERVICES}/a")
    reused = await client.post(
        SERVICES, json=svc("c", type="NodePort", ports=[{"port": 1, "nodePort": port_a}])
    )
    assert reused.status_code == 201
    assert reused.json()["spec"]["ports"][0]["nodePort"] == port_a
    assert_status(await client.post(SERVICES, json=svc("Bad_Name")), 422, "Invalid")
    assert_status(
        await client.post(SERVICES, json={"metadata": {"name": "noports"}, "spec": {}}),
        422,
        "Invalid",
    )


async def test_statefulset_scale_subresource(api: KubeApi, client: httpx.AsyncClient) -> None:
    r = await client.post(STS, json=terminal_statefulset(replicas=0))
    assert r.status_code == 201
    assert r.json()["metadata"]["generation"] == 1
    scale = (await client.get(f"{STS}/terminal/scale")).json()
    assert scale["kind"] == "Scale"
    assert scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 0}
    assert (
        scale["status"]["selector"]
        == "app.kubernetes.io/component=terminal,app.kubernetes.io/name=webterm"
    )
    r = await client.patch(f"{STS}/terminal/scale", json={"spec": {"replicas": 3}}, headers=MERGE)
    assert r.status_code == 200
    assert r.json()["spec"]["replicas"] == 3
    with trio.fail_after(10):
        ready = await api.wait_ready_count(3)
    assert sorted(p["metadata"]["name"] for p in ready) == [
        "terminal-0",
        "terminal-1",
        "terminal-2",
    ]
    # PUT of a Scale with a stale resourceVersion conflicts; with the current one it scales down
    stale = scale | {"spec": {"replicas": 1}}
    assert_status(await client.put(f"{STS}/terminal/scale", json=stale), 409, "Conflict")
    current = (await client.get(f"{STS}/terminal/scale")).json()
    r = await client.put(f"{STS}/terminal/scale", json=current | {"spec": {"replicas": 1}})
    assert r.status_code == 200
    with trio.fail_after(10):
        await api.wait_pod_gone("terminal-2")
        await api.wait_pod_gone("terminal-1")
    sts = (await client.get(f"{STS}/terminal")).json()
    assert sts["spec"]["replicas"] == 1
    assert sts["metadata"]["generation"] == 3
    with trio.fail_after(10):
        await api.wait_for(
            R.STATEFULSETS,
            "terminal",
            lambda s: (
                s is not None
                and s["status"].get("replicas") == 1
                and s["status"].get("readyReplicas") == 1
            ),
        )
    negative = await client.patch(
        f"{STS}/terminal/scale", json={"spec": {"replicas": -1}}, headers=MERGE
    )
    assert_status(negative, 422, "Invalid")
    mismatched = terminal_statefulset(name="bad")
    mismatched["spec"]["selector"] = {"matchLabels": {"other": "x"}}
    assert (
        "selector` does not match template `labels`"
        in assert_status(await client.post(STS, json=mismatched), 422, "Invalid")["message"]
    )


async def test_errors_are_status_objects(client: httpx.AsyncClient) -> None:
    body = assert_status(await client.get(f"{PODS}/nope"), 404, "NotFound")
    assert body["message"] == 'pods "nope" not found'
    assert body["details"] == {
        "name": "nope",
        "kind": "pods",
    }
    body = assert_status(await client.get(f"{STS}/nope"), 404, "NotFound")
    assert body["message"] == 'statefulsets.apps "nope" not found'
    assert body["details"]["group"] == "apps"
    assert_status(await client.get("/api/v1/namespaces/elsewhere/pods/x"), 404, "NotFound")
    assert_status(
        await client.post("/api/v1/namespaces/elsewhere/pods", json=pod_manifest("x")),
        404,
        "NotFound",
    )
    assert_status(
        await client.post(PODS, json={"metadata": {"name": "x"}, "spec": {}}), 422, "Invalid"
    )
    assert_status(await client.post(PODS, content=b"{not json"), 400, "BadRequest")
    assert_status(await client.post(f"{PODS}/x", json=pod_manifest("x")), 405, "MethodNotAllowed")
    assert_status(await client.get("/api/v1/namespaces/webterm/widgets"), 404, "NotFound")


async def test_authentication_is_required(api: KubeApi) -> None:
    async with httpx.AsyncClient(base_url=api.url, trust_env=False) as anonymous:
        assert_status(await anonymous.get(PODS), 401, "Unauthorized")
        assert_status(
            await anonymous.get(PODS, headers={"Authorization": "Bearer wrong"}),
            401,
            "Unauthorized",
        )
        assert (await anonymous.get("/healthz")).status_code == 200
        assert (await anonymous.get("/version")).status_code == 200


async def test_rbac_role_limits_the_manager(tmp_path: Path) -> None:
    async with (
        run_kube_api(
            tmp_path,
            realism=Realism.fast(),
            kubelet=KubeletConfig(mode="fake"),
            rbac=MANAGER_ROLE_RULES,
            terminal_replicas=1,
        ) as api,
        api.client() as manager,
        api.client(admin=True) as admin,
    ):
        assert (await manager.get(PODS)).status_code == 200
        assert (await manager.get(f"{STS}/terminal/scale")).status_code == 200
        r = await manager.patch(
            f"{STS}/terminal/scale", json={"spec": {"replicas": 2}}, headers=MERGE
        )
        assert r.status_code == 200
        body = assert_status(await manager.get(f"{STS}/terminal"), 403, "Forbidden")
        assert body["message"] == (
            'statefulsets.apps "terminal" is forbidden: User "system:serviceaccount:webterm:webterm-manager" '
            'cannot get resource "statefulsets" in API group "apps" in the namespace "webterm"'
        )
        assert_status(await manager.post(PODS, json=pod_manifest("x")), 403, "Forbidden")
        assert_status(await manager.get("/api/v1/pods"), 403, "Forbidden")
        assert_status(await manager.get("/api/v1/namespaces/default/pods"), 403, "Forbidden")
        assert (await admin.post(PODS, json=pod_manifest("x"))).status_code == 201
        assert all(r.status in (200, 201, 403) for r in api.requests())


async def test_leases_for_leader_election(tmp_path: Path) -> None:
    """coordination.k8s.io/v1 Leases: create (AlreadyExists for the second), and an
    update fenced by metadata.resourceVersion (409 for a stale one), as client-go's
    leaderelection relies on."""
    leases = "/apis/coordination.k8s.io/v1/namespaces/webterm/leases"
    async with (
        run_kube_api(tmp_path, kubelet=KubeletConfig(mode="fake"), rbac=MANAGER_ROLE_RULES) as api,
        api.client() as manager,
    ):
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "webterm-manager"},
            "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
        }
        created = await manager.post(leases, json=body)
        assert created.status_code == 201
        assert_status(await manager.post(leases, json=body), 409, "AlreadyExists")
        lease = created.json()
        lease["spec"]["holderIdentity"] = "b"
        updated = await manager.put(f"{leases}/webterm-manager", json=lease)
        assert updated.status_code == 200
        assert updated.json()["spec"]["holderIdentity"] == "b"
        assert_status(await manager.put(f"{leases}/webterm-manager", json=lease), 409, "Conflict")
        assert (await manager.get("/apis/coordination.k8s.io/v1")).status_code == 200
