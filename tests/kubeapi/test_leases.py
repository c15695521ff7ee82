"""coordination.k8s.io/v1 Leases: what leader election needs (create, get, update with a
resourceVersion precondition, patch, list, watch), over HTTP and through the official
client's CoordinationV1Api."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from .fixtures import KubeApi, run_kube_api
from .kubelet import KubeletConfig
from .manifests import MANAGER_ROLE_RULES
from .realism import Realism
from .testing import MERGE, open_watch

LEASES = "/apis/coordination.k8s.io/v1/namespaces/webterm/leases"


def lease(name: str, holder: str, **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, **spec},
    }


async def test_discovery_lists_the_coordination_group(client: httpx.AsyncClient) -> None:
    groups = (await client.get("/apis")).json()
    assert "coordination.k8s.io" in [g["name"] for g in groups["groups"]]
    resources = (await client.get("/apis/coordination.k8s.io/v1")).json()
    assert [(r["name"], r["namespaced"], r["kind"]) for r in resources["resources"]] == [
        ("leases", True, "Lease")
    ]


async def test_update_needs_the_version_it_read(client: httpx.AsyncClient) -> None:
    created = await client.post(LEASES, json=lease("webterm-manager", "a"))
    assert created.status_code == 201
    first = created.json()
    assert (await client.post(LEASES, json=lease("webterm-manager", "b"))).status_code == 409
    # candidate b read the same version as a; a renews first, b's takeover must fail
    renewed = dict(first, spec={**first["spec"], "renewTime": "2026-01-01T00:00:01.000000Z"})
    r = await client.put(f"{LEASES}/webterm-manager", json=renewed)
    assert r.status_code == 200
    assert int(r.json()["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    stolen = dict(first, spec={**first["spec"], "holderIdentity": "b"})
    r = await client.put(f"{LEASES}/webterm-manager", json=stolen)
    assert r.status_code == 409
    assert r.json()["reason"] == "Conflict"
    # an update that names no version at all is refused (AllowUnconditionalUpdate=false)
    blind = {"metadata": {"name": "webterm-manager"}, "spec": {"holderIdentity": "b"}}
    r = await client.put(f"{LEASES}/webterm-manager", json=blind)
    assert r.status_code == 422
    assert r.json()["details"]["causes"][0]["field"] == "metadata.resourceVersion"
    current = (await client.get(f"{LEASES}/webterm-manager")).json()
    assert current["spec"]["holderIdentity"] == "a"
    # a patch carrying a stale resourceVersion is a precondition too
    r = await client.patch(
        f"{LEASES}/webterm-manager",
        json={"metadata": {"resourceVersion": first["metadata"]["resourceVersion"]}},
        headers=MERGE,
    )
    assert r.status_code == 409
    r = await client.patch(
        f"{LEASES}/webterm-manager", json={"spec": {"leaseTransitions": 1}}, headers=MERGE
    )
    assert r.status_code == 200
    assert r.json()["spec"]["leaseTransitions"] == 1


async def test_validation(client: httpx.AsyncClient) -> None:
    r = await client.post(LEASES, json=lease("x", "a", leaseDurationSeconds=0))
    assert r.status_code == 422
    assert r.json()["details"]["causes"][0]["field"] == "spec.leaseDurationSeconds"


async def test_list_and_watch(client: httpx.AsyncClient) -> None:
    await client.post(LEASES, json=lease("one", "a"))
    listed = (await client.get(LEASES)).json()
    assert listed["kind"] == "LeaseList"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["one"]
    with trio.fail_after(10):
        async with open_watch(
            client, LEASES, resourceVersion=listed["metadata"]["resourceVersion"]
        ) as watch:
            await client.patch(
                f"{LEASES}/one", json={"spec": {"holderIdentity": "b"}}, headers=MERGE
            )
            event = await watch.next_not_bookmark()
    assert event["type"] == "MODIFIED"
    assert event["object"]["spec"]["holderIdentity"] == "b"


async def test_manager_role_may_take_leases_and_the_official_client_can(
    tmp_path: Path,
) -> None:
    async with run_kube_api(
        tmp_path,
        realism=Realism.fast(),
        kubelet=KubeletConfig(mode="fake"),
        rbac=MANAGER_ROLE_RULES,
    ) as api:

        def elect() -> tuple[str, int, int]:
            cfg = k8s.Configuration()
            k8s_config.load_kube_config(config_file=str(api.kubeconfig), client_configuration=cfg)
            with k8s.ApiClient(cfg) as api_client:
                coord = k8s.CoordinationV1Api(api_client)
                body = k8s.V1Lease(
                    metadata=k8s.V1ObjectMeta(name="webterm-manager"),
                    spec=k8s.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15),
                )
                created = coord.create_namespaced_lease("webterm", body)
                read = coord.read_namespaced_lease("webterm-manager", "webterm")
                read.spec.holder_identity = "b"
                coord.replace_namespaced_lease("webterm-manager", "webterm", read)
                stale = 0
                try:
                    created.spec.holder_identity = "c"
                    coord.replace_namespaced_lease("webterm-manager", "webterm", created)
                except ApiException as exc:
                    stale = exc.status
                forbidden = 0
                try:
                    coord.delete_namespaced_lease("webterm-manager", "webterm")
                except ApiException as exc:
                    forbidden = exc.status
                final = coord.read_namespaced_lease("webterm-manager", "webterm")
                return final.spec.holder_identity, stale, forbidden

        with trio.fail_after(30):
            holder, stale, forbidden = await trio.to_thread.run_sync(elect)
    assert (holder, stale, forbidden) == ("b", 409, 403)


async def test_store_facade(api: KubeApi) -> None:
    from . import resources as R

    api.create(R.LEASES, lease("via-facade", "x"))
    got = api.get(R.LEASES, "via-facade")
    assert got is not None
    assert got["spec"]["holderIdentity"] == "x"
