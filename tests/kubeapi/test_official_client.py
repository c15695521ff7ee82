"""The official ``kubernetes`` Python client against the stand-in, through the
generated kubeconfig: proof that the JSON shapes and the config are what a real
cluster gives. The client is blocking, so it runs in a worker thread."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException
from kubernetes.config.incluster_config import InClusterConfigLoader

from .fixtures import KubeApi, run_kube_api
from .kubelet import KubeletConfig
from .realism import Realism


@pytest.fixture(params=["http", "https"])
async def kapi(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KubeApi]:
    async with run_kube_api(
        tmp_path,
        realism=Realism.fast(),
        kubelet=KubeletConfig(mode="fake"),
        tls=request.param == "https",
        terminal_replicas=2,
    ) as api:
        yield api


def configuration(api: KubeApi) -> k8s.Configuration:
    cfg = k8s.Configuration()
    k8s_config.load_kube_config(config_file=str(api.kubeconfig), client_configuration=cfg)
    return cfg


async def test_kubeconfig_loads(kapi: KubeApi) -> None:
    cfg = configuration(kapi)
    assert cfg.host == kapi.url
    # kubernetes>=3x keys it "BearerToken" (older: "authorization"); the value is the header
    assert list(cfg.api_key.values()) == [f"Bearer {kapi.token}"]
    _contexts, current = k8s_config.list_kube_config_contexts(config_file=str(kapi.kubeconfig))
    assert current["name"] == "standin"
    assert current["context"]["namespace"] == "webterm"
    if kapi.ca_pem is not None:
        assert cfg.ssl_ca_cert
        assert await trio.Path(cfg.ssl_ca_cert).read_bytes() == kapi.ca_pem


async def test_core_and_apps_calls(kapi: KubeApi) -> None:
    with trio.fail_after(30):
        await kapi.wait_ready_count(2)

    def calls() -> dict[str, Any]:
        with k8s.ApiClient(configuration(kapi)) as api_client:
            core = k8s.CoreV1Api(api_client)
            apps = k8s.AppsV1Api(api_client)
            out: dict[str, Any] = {}
            pods = core.list_namespaced_pod(
                "webterm", label_selector="app.kubernetes.io/component=terminal"
            )
            out["names"] = sorted(p.metadata.name for p in pods.items)
            out["list_rv"] = pods.metadata.resource_version
            pod = pods.items[0]
            out["ready"] = [c.status for c in pod.status.conditions if c.type == "Ready"]
            out["ip"] = pod.status.pod_ip
            patched = core.patch_namespaced_pod(
                pod.metadata.name, "webterm", {"metadata": {"labels": {"webterm/state": "used"}}}
            )
            out["label"] = patched.metadata.labels["webterm/state"]
            try:
                core.patch_namespaced_pod(
                    pod.metadata.name,
                    "webterm",
                    {
                        "metadata": {
                            "resourceVersion": pod.metadata.resource_version,
                            "labels": {"x": "y"},
                        }
                    },
                )
            except ApiException as exc:
                out["conflict"] = exc.status
            try:
                core.read_namespaced_pod("nope", "webterm")
            except ApiException as exc:
                out["missing"] = exc.status
            scale = apps.read_namespaced_stateful_set_scale("terminal", "webterm")
            out["scale"] = scale.spec.replicas
            apps.patch_namespaced_stateful_set_scale(
                "terminal", "webterm", {"spec": {"replicas": 3}}
            )
            sts = apps.read_namespaced_stateful_set("terminal", "webterm")
            out["sts_replicas"] = sts.spec.replicas
            svc = core.create_namespaced_service(
                "webterm",
                k8s.V1Service(
                    metadata=k8s.V1ObjectMeta(name="terminal-0-np"),
                    spec=k8s.V1ServiceSpec(
                        type="NodePort",
                        selector={"statefulset.kubernetes.io/pod-name": "terminal-0"},
                        ports=[k8s.V1ServicePort(port=7681, target_port=7681)],
                    ),
                ),
            )
            out["node_port"] = svc.spec.ports[0].node_port
            deleted = core.delete_namespaced_pod("terminal-1", "webterm", grace_period_seconds=0)
            out["deleted"] = deleted.metadata.name
            out["namespaces"] = sorted(n.metadata.name for n in core.list_namespace().items)
            out["version"] = k8s.VersionApi(api_client).get_code().git_version
            return out

    out = await trio.to_thread.run_sync(calls)
    assert out["names"] == ["terminal-0", "terminal-1"]
    assert out["ready"] == ["True"]
    assert out["ip"].startswith("127.")
    assert out["label"] == "used"
    assert out["conflict"] == 409
    assert out["missing"] == 404
    assert out["scale"] == 2
    assert out["sts_replicas"] == 3
    assert 30000 <= out["node_port"] <= 32767
    assert out["deleted"] == "terminal-1"
    assert {"default", "webterm"} <= set(out["namespaces"])
    assert out["version"].startswith("v1.")


async def test_watch_stream_with_timeout(kapi: KubeApi) -> None:
    def watch() -> list[tuple[str, str]]:
        with k8s.ApiClient(configuration(kapi)) as api_client:
            core = k8s.CoreV1Api(api_client)
            listed = core.list_namespaced_pod("webterm")
            rv = listed.metadata.resource_version
            core.patch_namespaced_pod(
                "terminal-0", "webterm", {"metadata": {"labels": {"touched": "1"}}}
            )
            w = k8s_watch.Watch()
            seen = []
            for event in w.stream(
                core.list_namespaced_pod,
                "webterm",
                resource_version=rv,
                timeout_seconds=1,
                allow_watch_bookmarks=True,
            ):
                seen.append(
                    (
                        event["type"],
                        event["object"].metadata.name if event["type"] != "BOOKMARK" else "",
                    )
                )
            return seen

    with trio.fail_after(30):
        await kapi.wait_ready_count(2)
        seen = await trio.to_thread.run_sync(watch)
    assert ("MODIFIED", "terminal-0") in seen


async def test_watch_410_surfaces_as_api_exception(kapi: KubeApi) -> None:
    def watch(rv: str) -> int:
        with k8s.ApiClient(configuration(kapi)) as api_client:
            core = k8s.CoreV1Api(api_client)
            try:
                for _ in k8s_watch.Watch().stream(
                    core.list_namespaced_pod, "webterm", resource_version=rv, timeout_seconds=5
                ):
                    pass
            except ApiException as exc:
                return int(exc.status)
            return 0

    rv = str(kapi.store.resource_version)
    kapi.create_terminal_statefulset(name="other", service=False)
    kapi.faults.expire_resource_versions()
    with trio.fail_after(30):
        assert await trio.to_thread.run_sync(watch, rv) == 410


async def test_in_cluster_config(tmp_path: Path) -> None:
    async with run_kube_api(
        tmp_path, realism=Realism.fast(), kubelet=KubeletConfig(mode="fake"), tls=True
    ) as api:
        cfg = k8s.Configuration()
        InClusterConfigLoader(**api.incluster_files()).load_and_set(cfg)

        def names() -> list[str]:
            with k8s.ApiClient(cfg) as api_client:
                return [n.metadata.name for n in k8s.CoreV1Api(api_client).list_namespace().items]

        assert "webterm" in await trio.to_thread.run_sync(names)
