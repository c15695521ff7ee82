"""A small async Kubernetes REST client over httpx: the calls the manager needs.

Connection settings come from the ``kubernetes`` package's own loaders (in-cluster
service account, else kubeconfig), so TLS, bearer tokens, client certificates and
token rotation behave exactly as ``kubectl``'s Python twin does; the HTTP itself is
httpx, trio-native and streaming. Pods are decoded with msgspec into the few fields the
manager reads (:mod:`webterm.manager.kube.pods`): the ``kubernetes`` models, and even
``json.loads``, are far too slow for a watch stream of 50,000 events a second.

Error tree::

    KubeError                 any failed call; .status and .reason from the Status
    ├── Conflict              409: a stale resourceVersion or an existing object
    ├── NotFound              404
    └── Gone                  410: the resourceVersion is too old; list again
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, TypeVar

import httpx
import msgspec

from webterm.config import ManagerConfig
from webterm.errors import WebtermError
from webterm.manager.kube.pods import (
    Pod,
    PodList,
    pod_decoder,
    pod_event_decoder,
    pod_list_decoder,
)

Obj = dict[str, Any]
T = TypeVar("T")

MERGE_PATCH: Final = "application/merge-patch+json"
REQUEST_TIMEOUT: Final = httpx.Timeout(connect=10.0, read=30.0, write=10.0, pool=10.0)
WATCH_READ_TIMEOUT: Final = 150.0
"""The apiserver sends a watch bookmark about every minute (the watch cache's 1 min
bookmark timer, sooner before ``timeoutSeconds``): a watch silent for 2.5 minutes is a
half-open socket (a dead NAT entry, a vanished load balancer), restarted."""
RETRY_AFTER_MAX: Final = 60.0
"""A ``Retry-After`` beyond this is capped: the API's advice, not an outage plan."""


class KubeError(WebtermError):
    """A failed call: the API server refused (``status``, ``reason``) or could not be
    reached (0). ``retry_after``: the server's ``Retry-After`` (header or the Status'
    ``details.retryAfterSeconds``), for 429 and 503, in seconds."""

    error_status_hint = 502

    def __init__(
        self, status: int, reason: str, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Worth trying again: unreachable (0), throttled (429), or a server error."""
        return self.status in (0, 429) or self.status >= 500


class Conflict(KubeError):
    error_status_hint = 409


class NotFound(KubeError):
    error_status_hint = 404


class Gone(KubeError):
    error_status_hint = 410


def _raise_for(response: httpx.Response, body: bytes) -> None:
    if response.status_code < 400:
        return
    retry_after = _seconds(response.headers.get("Retry-After"))
    try:
        status = json.loads(body)
        reason, message = str(status.get("reason", "")), str(status.get("message", ""))
        details = status.get("details")
        if retry_after is None and isinstance(details, dict):
            retry_after = _seconds(details.get("retryAfterSeconds"))
    except (ValueError, AttributeError):
        reason, message = response.reason_phrase, body[:200].decode(errors="replace")
    kind = {409: Conflict, 404: NotFound, 410: Gone}.get(response.status_code, KubeError)
    raise kind(response.status_code, reason, message, retry_after=retry_after)


def _seconds(value: object) -> float | None:
    """A Retry-After in seconds (the apiserver sends integers), capped; None if absent
    or not a number (an HTTP date is not worth parsing for an API server)."""
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX) if seconds == seconds else None


@dataclass(frozen=True)
class ClusterConnection:
    base_url: str
    verify: ssl.SSLContext | bool
    auth: httpx.Auth | None
    cert: tuple[str, str] | None
    namespace: str
    tls_server_name: str | None = None  # kubeconfig ``tls-server-name``: SNI and verification
    proxy: str | None = None  # kubeconfig ``proxy-url`` (http, https or socks5)


class _KubernetesAuth(httpx.Auth):
    """Asks the loaded configuration for the Authorization header on every request, so
    a rotating token (the in-cluster token file, exec plugins) is always current."""

    def __init__(self, configuration: Any) -> None:
        self.configuration = configuration

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        hook = getattr(self.configuration, "refresh_api_key_hook", None)
        if hook is not None:
            hook(self.configuration)
        # kubernetes >= 30 keys the token "BearerToken"; auth_settings() names the header
        for setting in self.configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                request.headers[setting["key"]] = setting["value"]
        yield request


def load_connection(config: ManagerConfig) -> ClusterConnection:
    """Connection settings via the ``kubernetes`` package's loaders. Reads files:
    call it once at start-up (in a thread under trio)."""
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config

    configuration = k8s_client.Configuration()
    in_cluster = config.kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ
    if in_cluster:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=config.kubeconfig, context=config.context,
            client_configuration=configuration,
        )  # fmt: skip
    verify: ssl.SSLContext | bool = bool(configuration.verify_ssl)
    if configuration.verify_ssl and configuration.ssl_ca_cert:
        verify = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    cert = (
        (configuration.cert_file, configuration.key_file)
        if configuration.cert_file and configuration.key_file
        else None
    )
    if cert is not None and isinstance(verify, ssl.SSLContext):
        verify.load_cert_chain(*cert)
        cert = None
    return ClusterConnection(
        base_url=configuration.host.rstrip("/"),
        verify=verify,
        auth=_KubernetesAuth(configuration),
        cert=cert,
        namespace=config.namespace,
        tls_server_name=getattr(configuration, "tls_server_name", None) or None,
        proxy=getattr(configuration, "proxy", None) or None,
    )


class KubeClient:
    """The calls the manager makes, namespaced. Owns no nursery; close with aclose()."""

    def __init__(
        self, connection: ClusterConnection, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.namespace = connection.namespace
        self._watch_read_timeout = WATCH_READ_TIMEOUT
        kwargs: dict[str, Any] = {}
        if connection.cert is not None:
            kwargs["cert"] = connection.cert
        if connection.proxy is not None and transport is None:
            kwargs["proxy"] = connection.proxy
        if connection.tls_server_name is not None:
            kwargs["event_hooks"] = {"request": [partial(_sni, connection.tls_server_name)]}
        self.http = httpx.AsyncClient(
            base_url=connection.base_url,
            verify=connection.verify,
            auth=connection.auth,
            timeout=REQUEST_TIMEOUT,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "webterm-manager"},
            **kwargs,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    def watch_read_timeout(self, seconds: float) -> None:
        """How long a watch may stay silent before it counts as dead (default 150 s)."""
        self._watch_read_timeout = seconds

    def _path(
        self, group: str, resource: str, name: str | None = None, sub: str | None = None
    ) -> str:
        base = "/api/v1" if group == "" else f"/apis/{group}"
        path = f"{base}/namespaces/{self.namespace}/{resource}"
        if name is not None:
            path += f"/{name}"
        if sub is not None:
            path += f"/{sub}"
        return path

    async def _call(self, method: str, path: str, **kwargs: Any) -> Obj:
        data: Obj = json.loads(await self._call_raw(method, path, **kwargs))
        return data

    async def _call_raw(self, method: str, path: str, **kwargs: Any) -> bytes:
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise KubeError(0, "Unreachable", str(exc) or type(exc).__name__) from exc
        _raise_for(response, response.content)
        return response.content

    # --- pods ------------------------------------------------------------------------------

    async def list_pods(self, selector: str) -> PodList:
        raw = await self._call_raw(
            "GET", self._path("", "pods"), params={"labelSelector": selector}
        )
        return _decode(pod_list_decoder, raw, "pod list")

    async def get_pod(self, name: str) -> Pod:
        raw = await self._call_raw("GET", self._path("", "pods", name))
        return _decode(pod_decoder, raw, f"pod {name}")

    async def patch_pod(self, name: str, patch: Obj) -> Pod:
        raw = await self._call_raw(
            "PATCH", self._path("", "pods", name), content=json.dumps(patch),
            headers={"Content-Type": MERGE_PATCH},
        )  # fmt: skip
        return _decode(pod_decoder, raw, f"pod {name}")

    async def delete_pod(self, name: str, *, uid: str, grace_period: int) -> None:
        body = {"gracePeriodSeconds": grace_period, "preconditions": {"uid": uid}}
        # NotFound: already gone; Conflict: already replaced by a newer pod
        with contextlib.suppress(NotFound, Conflict):
            await self._call(
                "DELETE",
                self._path("", "pods", name),
                content=json.dumps(body),
                headers={"Content-Type": "application/json"},
            )

    async def watch_pods(
        self, selector: str, resource_version: str, timeout_seconds: int
    ) -> AsyncIterator[list[tuple[str, Pod]]]:
        """Events of one watch request, until the server ends it, in batches (the lines
        of each chunk read: one await per chunk, not per event). Raises :class:`Gone`
        for an expired resourceVersion (as an HTTP 410 or an ERROR event), and
        :class:`KubeError` for an ERROR event or a line that is not a pod event."""
        params = {
            "watch": "1", "labelSelector": selector, "resourceVersion": resource_version,
            "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout_seconds),
        }  # fmt: skip
        timeout = httpx.Timeout(connect=10.0, read=self._watch_read_timeout, write=10.0, pool=10.0)
        try:
            async with self.http.stream(
                "GET", self._path("", "pods"), params=params, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    _raise_for(response, await response.aread())
                pending = b""
                async for chunk in response.aiter_bytes():
                    *lines, pending = (pending + chunk).split(b"\n")
                    yield [_watch_event(line) for line in lines if line.strip()]
                if pending.strip():
                    yield [_watch_event(pending)]
        except httpx.HTTPError as exc:
            raise KubeError(0, "WatchBroken", str(exc) or type(exc).__name__) from exc

    # --- statefulset scale -------------------------------------------------------------

    async def get_replicas(self, statefulset: str) -> int:
        return (await self.get_scale(statefulset))[0]

    async def get_scale(self, statefulset: str) -> tuple[int, str]:
        """(spec.replicas, resourceVersion) of the StatefulSet's scale subresource."""
        scale = await self._call("GET", self._path("apps/v1", "statefulsets", statefulset, "scale"))
        version = str(scale.get("metadata", {}).get("resourceVersion", ""))
        return int(scale.get("spec", {}).get("replicas", 0)), version

    async def set_replicas(
        self, statefulset: str, replicas: int, *, resource_version: str | None = None
    ) -> None:
        """Patch spec.replicas; with ``resource_version`` only if nothing changed the
        StatefulSet since (else :class:`Conflict`)."""
        patch: Obj = {"spec": {"replicas": replicas}}
        if resource_version:
            patch["metadata"] = {"resourceVersion": resource_version}
        await self._call(
            "PATCH", self._path("apps/v1", "statefulsets", statefulset, "scale"),
            content=json.dumps(patch), headers={"Content-Type": MERGE_PATCH},
        )  # fmt: skip

    # --- leases (coordination.k8s.io/v1) -------------------------------------------------

    async def get_lease(self, name: str) -> Obj:
        return await self._call("GET", self._path("coordination.k8s.io/v1", "leases", name))

    async def create_lease(self, lease: Obj) -> Obj:
        """Create; :class:`Conflict` (AlreadyExists) when another candidate was first."""
        return await self._call("POST", self._path("coordination.k8s.io/v1", "leases"), json=lease)

    async def update_lease(self, lease: Obj) -> Obj:
        """Replace; the body's ``metadata.resourceVersion`` is the precondition
        (:class:`Conflict` when another candidate wrote the lease since it was read)."""
        name = lease["metadata"]["name"]
        return await self._call(
            "PUT", self._path("coordination.k8s.io/v1", "leases", name), json=lease
        )

    # --- services ------------------------------------------------------------------------

    async def create_service(self, service: Obj) -> Obj:
        try:
            return await self._call("POST", self._path("", "services"), json=service)
        except Conflict:
            return await self._call("GET", self._path("", "services", service["metadata"]["name"]))

    async def delete_service(self, name: str) -> None:
        with contextlib.suppress(NotFound):
            await self._call("DELETE", self._path("", "services", name))

    async def list_services(self, selector: str) -> list[Obj]:
        listed = await self._call(
            "GET", self._path("", "services"), params={"labelSelector": selector}
        )
        items: list[Obj] = listed.get("items", [])
        return items


async def _sni(name: str, request: httpx.Request) -> None:
    """kubeconfig ``tls-server-name``: the name sent as SNI and checked against the
    server's certificate, whatever the URL's host (an IP address, a load balancer)."""
    request.extensions = {**request.extensions, "sni_hostname": name}


def _decode(decoder: msgspec.json.Decoder[T], raw: bytes, what: str) -> T:
    try:
        return decoder.decode(raw)
    except msgspec.MsgspecError as exc:
        raise KubeError(0, "BadResponse", f"{what}: {exc}") from exc


def _watch_event(line: bytes) -> tuple[str, Pod]:
    """One watch line: (type, pod); an ERROR event raises what it reports."""
    try:
        event = pod_event_decoder.decode(line)
        if event.type != "ERROR":
            return event.type, event.object
    except msgspec.ValidationError:
        pass  # an ERROR's object is a Status, not a Pod
    except msgspec.DecodeError as exc:
        raise KubeError(0, "BadWatchEvent", f"{exc}: {line[:200]!r}") from exc
    raw = msgspec.json.decode(line)
    obj = raw.get("object") if isinstance(raw, dict) else None
    if not isinstance(obj, dict) or raw.get("type") != "ERROR":
        raise KubeError(0, "BadWatchEvent", f"not a pod event: {line[:200]!r}")
    code = obj.get("code")
    code = code if isinstance(code, int) else 500
    error = Gone if code == 410 else KubeError
    raise error(code, str(obj.get("reason", "")), str(obj.get("message", "")))
