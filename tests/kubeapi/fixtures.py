"""Run the Kubernetes API stand-in inside a test.

    async with run_kube_api(tmp_path) as api:
        # api.kubeconfig: a kubeconfig file for any Kubernetes client
        # api.store / api.faults / api.kubelet: in-process access
        ...

or, with pytest, the ``kube_api`` fixture (``from kubeapi.fixtures import kube_api``
in a conftest or test module). Everything runs in one nursery owned by the context
manager: leaving it stops the server, the controllers and every pod process."""

from __future__ import annotations

import copy
import logging
import secrets
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from webterm.config import generate_secret
from webterm.protocol import SigningKey

from . import resources as R
from .controllers import GarbageCollector, NamespaceController, StatefulSetController, is_ready
from .faults import Faults
from .httpserver import HttpServer
from .kubeconfig import write_incluster_files, write_kubeconfig
from .kubelet import Kubelet, KubeletConfig
from .manifests import terminal_service, terminal_statefulset
from .proxy import KubeProxy
from .realism import Realism
from .resources import ResourceType
from .selection import parse_field_selector, parse_label_selector
from .server import ApiServer, PolicyRule, RequestRecord
from .store import HISTORY_LIMIT, DeleteOptions, Obj, Store

log = logging.getLogger("kubeapi")

MANAGER_USER = "system:serviceaccount:webterm:webterm-manager"
ADMIN_USER = "kubernetes-admin"


class KubeApi:
    """A running stand-in. Attributes for clients: ``url``, ``token``,
    ``kubeconfig`` (path), ``ca_file`` (with TLS), ``namespace``, ``secret`` (for the
    manager's client hashes), ``signing_key`` (the manager's: pods get its public key
    set as WEBTERM_PUBLIC_KEYS, nothing that signs), ``node_ip`` (NodePort services
    listen there).
    In-process: ``store``, ``faults``, ``kubelet``, ``server`` and the helpers below,
    which return deep copies."""

    def __init__(
        self,
        *,
        store: Store,
        faults: Faults,
        kubelet: Kubelet,
        server: ApiServer,
        proxy: KubeProxy | None,
        url: str,
        port: int,
        token: str,
        admin_token: str,
        namespace: str,
        secret: bytes,
        signing_key: SigningKey,
        kubeconfig: Path,
        ca_pem: bytes | None,
        ca_file: Path | None,
        directory: Path,
        realism: Realism,
        statefulset_controller: StatefulSetController,
    ) -> None:
        self.realism = realism
        self.statefulset_controller = statefulset_controller
        self.store = store
        self.faults = faults
        self.kubelet = kubelet
        self.server = server
        self.proxy = proxy
        self.url = url
        self.port = port
        self.token = token
        self.admin_token = admin_token
        self.namespace = namespace
        self.secret = secret
        self.signing_key = signing_key
        self.kubeconfig = kubeconfig
        self.ca_pem = ca_pem
        self.ca_file = ca_file
        self.directory = directory

    @property
    def node_ip(self) -> str:
        return self.kubelet.ips.node_ip

    # ------------------------------------------------------------------ clients

    def client(self, *, admin: bool = False, **kwargs: Any) -> httpx.AsyncClient:
        """An httpx client with the base URL, the bearer token and the CA set."""
        token = self.admin_token if admin else self.token
        return httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            verify=ssl.create_default_context(cadata=self.ca_pem.decode()) if self.ca_pem else True,
            trust_env=False,
            **kwargs,
        )

    def incluster_files(self) -> dict[str, Any]:
        """Arguments for ``InClusterConfigLoader`` (TLS only)."""
        assert self.ca_pem is not None, "in-cluster config needs run_kube_api(tls=True)"
        return write_incluster_files(
            self.directory, "127.0.0.1", self.port, self.token, self.ca_pem
        )

    # ------------------------------------------------------------------ reads

    def get(self, rt: ResourceType, name: str, namespace: str | None = None) -> Obj | None:
        obj = self.store.find(rt, namespace if namespace is not None else self.namespace, name)
        return copy.deepcopy(obj)

    def pod(self, name: str, namespace: str | None = None) -> Obj | None:
        return self.get(R.PODS, name, namespace)

    def list_objects(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        labels: str | None = None,
        fields: str | None = None,
    ) -> list[Obj]:
        result = self.store.list_objects(
            rt,
            namespace if namespace is not None else self.namespace,
            labels=parse_label_selector(labels),
            fields=parse_field_selector(fields, rt.kind),
        )
        return copy.deepcopy(result.items)

    def pods(self, namespace: str | None = None, *, labels: str | None = None) -> list[Obj]:
        return self.list_objects(R.PODS, namespace, labels=labels)

    def requests(self, verb: str | None = None, path: str | None = None) -> list[RequestRecord]:
        """Requests served so far (``path``: substring), for assertions like "listed once"."""
        return [
            r
            for r in self.server.requests
            if (verb is None or r.verb == verb) and (path is None or path in r.path)
        ]

    # ------------------------------------------------------------------ waits

    async def wait_for(
        self,
        rt: ResourceType,
        name: str,
        predicate: Callable[[Obj | None], bool],
        namespace: str | None = None,
    ) -> Obj | None:
        """Block until ``predicate(object or None)``; no polling (woken by writes).
        Put a ``trio.fail_after`` around it."""
        obj = await self.store.wait_for(
            rt, namespace if namespace is not None else self.namespace, name, predicate
        )
        return copy.deepcopy(obj)

    async def wait_pod_ready(
        self, name: str, namespace: str | None = None, *, not_uid: str | None = None
    ) -> Obj:
        """The pod once Running, Ready and not terminating (and not incarnation ``not_uid``)."""
        pod = await self.wait_for(
            R.PODS,
            name,
            lambda p: (
                is_ready(p)
                and p is not None
                and not p["metadata"].get("deletionTimestamp")
                and p["metadata"]["uid"] != not_uid
            ),
            namespace,
        )
        assert pod is not None
        return pod

    async def wait_pod_gone(
        self, name: str, namespace: str | None = None, *, uid: str | None = None
    ) -> None:
        """Until no pod ``name`` exists (or at least not incarnation ``uid``)."""
        await self.wait_for(
            R.PODS,
            name,
            lambda p: p is None or (uid is not None and p["metadata"]["uid"] != uid),
            namespace,
        )

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        await self.store.wait_until(predicate)

    async def wait_ready_count(
        self, count: int, *, labels: str | None = None, namespace: str | None = None
    ) -> list[Obj]:
        """Until exactly ``count`` pods (matching ``labels``) are Ready and not terminating."""

        ns = namespace if namespace is not None else self.namespace
        selector = parse_label_selector(labels)

        def ready() -> list[Obj]:
            return [
                p
                for p in self.store.objects(R.PODS, ns)
                if is_ready(p)
                and not p["metadata"].get("deletionTimestamp")
                and selector.matches(p["metadata"].get("labels"))
            ]

        await self.store.wait_until(lambda: len(ready()) == count)
        return copy.deepcopy(ready())

    # ------------------------------------------------------------------ writes

    def create(self, rt: ResourceType, obj: Obj, namespace: str | None = None) -> Obj:
        ns = (
            namespace
            if namespace is not None
            else obj.get("metadata", {}).get("namespace", self.namespace)
        )
        return copy.deepcopy(self.store.create(rt, ns if rt.namespaced else "", obj))

    def delete(
        self,
        rt: ResourceType,
        name: str,
        namespace: str | None = None,
        *,
        grace_period: int | None = None,
    ) -> Obj:
        obj, _ = self.store.delete(
            rt,
            namespace if namespace is not None else self.namespace,
            name,
            DeleteOptions(grace_period=grace_period),
        )
        return copy.deepcopy(obj)

    def create_terminal_statefulset(
        self, *, replicas: int = 0, service: bool = True, **kwargs: Any
    ) -> Obj:
        """The ``terminal`` StatefulSet (and its headless Service) as deployed."""
        kwargs.setdefault("namespace", self.namespace)
        sts = self.create(R.STATEFULSETS, terminal_statefulset(replicas=replicas, **kwargs))
        if service:
            self.create(
                R.SERVICES,
                terminal_service(name=sts["metadata"]["name"], namespace=kwargs["namespace"]),
            )
        return sts

    def scale(self, name: str, replicas: int, namespace: str | None = None) -> Obj:
        return copy.deepcopy(
            self.store.patch(
                R.STATEFULSETS,
                namespace if namespace is not None else self.namespace,
                name,
                "application/merge-patch+json",
                {"spec": {"replicas": replicas}},
                subresource="scale",
            )
        )


def _tls_material(directory: Path) -> tuple[ssl.SSLContext, bytes]:
    from .tls import make_ca_and_server_cert

    ca_pem, cert_pem, key_pem = make_ca_and_server_cert(["127.0.0.1", "localhost"])
    cert = directory / "apiserver.crt"
    key = directory / "apiserver.key"
    cert.write_bytes(cert_pem + ca_pem)
    key.write_bytes(key_pem)
    key.chmod(0o600)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    context.set_alpn_protocols(["http/1.1"])
    return context, ca_pem


@asynccontextmanager
async def run_kube_api(
    directory: Path | None = None,
    *,
    namespace: str = "webterm",
    namespaces: Sequence[str] = (),
    secret: bytes | None = None,
    signing_key: SigningKey | None = None,
    kubelet: KubeletConfig | None = None,
    tls: bool = False,
    rbac: Sequence[PolicyRule] | None = None,
    realism: Realism | None = None,
    history_limit: int = HISTORY_LIMIT,
    bookmark_interval: float | None = None,
    default_watch_timeout: float | None = None,
    terminal_replicas: int | None = None,
    pod_args: Sequence[str] = (),
    pod_env: Mapping[str, str] | None = None,
    kube_proxy: bool = True,
    check_internal_errors: bool = True,
) -> AsyncIterator[KubeApi]:
    """Start the stand-in; yields a :class:`KubeApi`.

    - ``directory``: where the kubeconfig (and TLS files) go; default a temp dir.
    - ``namespace``: the kubeconfig context's namespace; created with ``namespaces``,
      ``default`` and ``kube-system``. Other namespaces answer 404 until created.
    - ``kubelet``: pod behaviour (``KubeletConfig(mode="fake")`` for no processes).
    - ``rbac``: rules of the Role bound to the kubeconfig's user in ``namespace``
      (e.g. ``manifests.MANAGER_ROLE_RULES``); None: that user may do anything.
      ``api.admin_token`` always may.
    - ``terminal_replicas``: also create the ``terminal`` StatefulSet + Service.
    - ``pod_args`` / ``pod_env``: appended to the default ``webterm pty`` command line /
      added to its environment (also settable later: ``api.kubelet.extra_args`` and
      ``api.kubelet.extra_env`` apply to containers started afterwards).
    - ``realism``: the cluster's timing (:class:`~.realism.Realism`); default a real
      cluster's (pods take 2-30 s to start...), ``Realism.fast()`` for test suites.
    - ``bookmark_interval``: seconds between BOOKMARK events on watches that allow them
      (default: the realism's).
    - ``check_internal_errors``: fail at exit if the stand-in itself crashed on a request.
    """
    secret = secret if secret is not None else generate_secret()
    signing_key = signing_key if signing_key is not None else SigningKey.generate()
    token = secrets.token_urlsafe(24)
    admin_token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="kubeapi-") as tmp:
        where = directory if directory is not None else Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        realism = realism if realism is not None else Realism()
        store = Store(history_limit=history_limit, watch_window=realism.watch_window)
        for ns in dict.fromkeys(["default", "kube-system", namespace, *namespaces]):
            store.create(R.NAMESPACES, "", {"metadata": {"name": ns}})
        faults = Faults(store=store)
        kube = Kubelet(
            store,
            faults,
            kubelet or KubeletConfig(),
            public_keys=signing_key.key_set(),
            realism=realism,
        )
        kube.extra_args.extend(pod_args)
        kube.extra_env.update(pod_env or {})
        store.create(
            R.NODES,
            "",
            {
                "metadata": {
                    "name": kube.config.node_name,
                    "labels": {
                        "kubernetes.io/hostname": kube.config.node_name,
                        "kubernetes.io/os": "linux",
                    },
                },
                "spec": {},
                "status": {
                    "addresses": [
                        {"type": "InternalIP", "address": kube.ips.node_ip},
                        {"type": "Hostname", "address": kube.config.node_name},
                    ],
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                },
            },
        )
        server = ApiServer(
            store=store,
            faults=faults,
            tokens={token: MANAGER_USER, admin_token: ADMIN_USER},
            rbac={MANAGER_USER: (namespace, list(rbac))} if rbac is not None else {},
            bookmark_interval=(
                bookmark_interval if bookmark_interval is not None else realism.bookmark_interval
            ),
            default_watch_timeout=default_watch_timeout,
            pod_logs=kube.logs,
        )
        ssl_context = ca_pem = None
        ca_file = None
        if tls:
            ssl_context, ca_pem = _tls_material(where)
            ca_file = where / "ca.crt"
            ca_file.write_bytes(ca_pem)
        http = HttpServer(
            server.handle,
            ssl_context=ssl_context,
            unreachable=lambda: faults.unreachable,
            refusing=lambda: faults.outage_mode == "refused",
            hanging=lambda: faults.outage_mode == "hang",
            changed=faults.wait_changed,
        )
        statefulsets = StatefulSetController(store, realism, faults)
        proxy = KubeProxy(store, kube.ips.node_ip) if kube_proxy else None
        async with trio.open_nursery() as nursery:
            port = await nursery.start(http.run, "127.0.0.1", 0)
            url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
            server.server_address = f"127.0.0.1:{port}"
            await nursery.start(GarbageCollector(store, faults).run)
            await nursery.start(NamespaceController(store, faults).run)
            await nursery.start(statefulsets.run)
            await nursery.start(kube.run)
            if proxy is not None:
                await nursery.start(proxy.run)
            kubeconfig = write_kubeconfig(
                where / "kubeconfig", url, token, namespace=namespace, ca_pem=ca_pem
            )
            api = KubeApi(
                store=store,
                faults=faults,
                kubelet=kube,
                server=server,
                proxy=proxy,
                url=url,
                port=port,
                token=token,
                admin_token=admin_token,
                namespace=namespace,
                secret=secret,
                signing_key=signing_key,
                kubeconfig=kubeconfig,
                ca_pem=ca_pem,
                ca_file=ca_file,
                directory=where,
                realism=realism,
                statefulset_controller=statefulsets,
            )
            if terminal_replicas is not None:
                api.create_terminal_statefulset(replicas=terminal_replicas)
            try:
                yield api
            finally:
                nursery.cancel_scope.cancel()
        if check_internal_errors and server.internal_errors:
            raise AssertionError(
                f"the Kubernetes API stand-in failed internally: {server.internal_errors!r}"
            )


@pytest.fixture
async def kube_api(tmp_path: Path) -> AsyncIterator[KubeApi]:
    """A stand-in whose pods run ``webterm pty``, on the test-speed timing
    ``Realism.fast()`` (see :func:`run_kube_api`)."""
    async with run_kube_api(tmp_path, realism=Realism.fast()) as api:
        yield api
