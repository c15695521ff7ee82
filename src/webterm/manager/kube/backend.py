"""The ``kubernetes`` backend: terminals are the pods of a StatefulSet.

The reflector keeps a compact cache of the terminal pods and turns each change into a
pool event. Pool decisions become API calls: :class:`ScaleTo` patches the StatefulSet's
scale subresource, :class:`Restart` deletes the pod (with a UID precondition, so a
newer pod of the same name is never hit) and the StatefulSet controller brings a fresh
one with a new UID.

The cluster is the source of truth for ownership: a claim is a merge patch of the pod's
``webterm.dev/client`` annotation (the client *hash*) carrying the pod's last seen
``resourceVersion``, so two managers racing for one pod cannot both win — the loser
gets 409, re-reads the pod, and the manager retries with another. A restarted manager
rebuilds every allocation from one list.

Fan-out: each pod change is routed by name (a dict lookup) to the channels of whoever
waits for that pod; a pod that does not become Ready within ``--ready-timeout`` is
reported failed, and the pool has it replaced.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Final, ParamSpec, TypeVar

import trio
from prometheus_client import CollectorRegistry, Gauge

from webterm.config import ManagerConfig
from webterm.manager.backend import BackendDecision, ClaimLost
from webterm.manager.kube.client import Conflict, KubeClient, KubeError, NotFound, load_connection
from webterm.manager.kube.reflector import (
    ALLOCATED_ANNOTATION,
    OWNER_ANNOTATION,
    STATE_LABEL,
    PodInfo,
    ReflectorStats,
    reflect,
)
from webterm.manager.pool import (
    Assign,
    Event,
    Listed,
    Restart,
    ScaleTo,
    TerminalAppeared,
    TerminalFailed,
    TerminalGone,
    TerminalReady,
)

log = logging.getLogger("webterm.manager.kube")
P = ParamSpec("P")
T = TypeVar("T")

COMPONENT_SELECTOR: Final = "app.kubernetes.io/component=terminal"
TERMINAL_PORT: Final = 7681
NODEPORT_LABEL: Final = "webterm.dev/nodeport"
WRITE_ATTEMPTS: Final = 4
"""Writes that hit 429/5xx are retried this often, backing off 0.5, 1, 2 s."""


class KubernetesBackend:
    def __init__(
        self,
        config: ManagerConfig,
        *,
        client: KubeClient | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.config = config
        self._client = client
        self.pods: dict[str, PodInfo] = {}
        self.selector = f"{COMPONENT_SELECTOR},statefulset.kubernetes.io/pod-name"
        self._subscribers: dict[str, list[trio.MemorySendChannel[PodInfo | None]]] = defaultdict(
            list
        )
        self._events: trio.MemorySendChannel[Event] | None = None
        self._nursery: trio.Nursery | None = None
        self._watched: set[str] = set()  # uids with a readiness watchdog
        self._public: dict[str, str] = {}  # pod -> host:nodePort
        self.stats = ReflectorStats()
        registry = registry or CollectorRegistry()
        stats = self.stats
        Gauge("webterm_watch_lists", "Full pod lists so far", registry=registry).set_function(
            lambda: stats.lists
        )
        Gauge("webterm_watch_requests", "Watch requests so far", registry=registry).set_function(
            lambda: stats.watches
        )
        Gauge("webterm_watch_errors", "Watches that broke", registry=registry).set_function(
            lambda: stats.watch_errors
        )

    @property
    def client(self) -> KubeClient:
        assert self._client is not None, "the backend is not running"
        return self._client

    # --- Backend interface ---------------------------------------------------------------

    async def run(
        self,
        events: trio.MemorySendChannel[Event],
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        if self._client is None:
            connection = await trio.to_thread.run_sync(load_connection, self.config)
            self._client = KubeClient(connection)
        self._events = events
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(
                    partial(
                        reflect, self.client, self.selector, self._on_listed, self._on_event,
                        stats=self.stats,
                    )
                )  # fmt: skip
                replicas = await self._retry(self.client.get_replicas, self.config.statefulset)
                if self.config.address_mode == "nodeport":
                    nursery.start_soon(self._clean_orphaned_services)
                task_status.started(replicas)
        finally:
            with trio.CancelScope(shield=True):
                await self.client.aclose()

    async def apply(self, decision: BackendDecision) -> None:
        if isinstance(decision, ScaleTo):
            log.info("scaling %s to %d", self.config.statefulset, decision.replicas)
            await self._retry(self.client.set_replicas, self.config.statefulset, decision.replicas)
        elif isinstance(decision, Restart):
            log.info("recycling %s (uid %s)", decision.name, decision.instance)
            await self._retry(self._delete_pod, decision.name, decision.instance)
            if self.config.address_mode == "nodeport":
                self._public.pop(decision.name, None)
                await self._retry(self.client.delete_service, f"{decision.name}-np")

    async def claim(self, assign: Assign) -> str:
        if not assign.reconnect:
            await self._write_owner(assign)
        if self.config.address_mode == "nodeport":
            return await self._public_address(assign.name)
        return assign.address

    # --- writes -----------------------------------------------------------------------------

    async def _retry(self, call: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        delay = 0.5
        for attempt in range(WRITE_ATTEMPTS):
            try:
                return await call(*args, **kwargs)
            except (Conflict, NotFound):
                raise
            except KubeError as exc:
                retryable = exc.status in (0, 429) or exc.status >= 500
                if not retryable or attempt == WRITE_ATTEMPTS - 1:
                    raise
                log.info("API call failed (%s); retrying in %.1f s", exc, delay)
                await trio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    async def _delete_pod(self, name: str, uid: str) -> None:
        await self.client.delete_pod(name, uid=uid, grace_period=self.config.delete_grace_period)

    async def _write_owner(self, assign: Assign) -> None:
        pod = self.pods.get(assign.name)
        if pod is None or pod.uid != assign.instance:
            raise ClaimLost(None)
        patch = {
            "metadata": {
                "resourceVersion": pod.resource_version,
                "labels": {STATE_LABEL: "in-use"},
                "annotations": {
                    OWNER_ANNOTATION: assign.client,
                    ALLOCATED_ANNOTATION: datetime.now(UTC).isoformat(timespec="seconds"),
                },
            }
        }
        try:
            updated = await self._retry(self.client.patch_pod, assign.name, patch)
        except Conflict:
            fresh = PodInfo.from_pod(await self.client.get_pod(assign.name))
            self.pods[fresh.name] = fresh
            if fresh.uid != assign.instance:
                raise ClaimLost(None) from None
            if fresh.owner is not None and fresh.owner != assign.client:
                raise ClaimLost(fresh.owner) from None
            await self._write_owner(assign)  # only the resourceVersion moved: try again
            return
        except NotFound:
            raise ClaimLost(None) from None
        info = PodInfo.from_pod(updated)
        if info.uid == assign.instance:
            self.pods[info.name] = info

    async def _public_address(self, name: str) -> str:
        if name in self._public:
            return self._public[name]
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"{name}-np", "labels": {NODEPORT_LABEL: "true"}},
            "spec": {
                "type": "NodePort",
                "selector": {"statefulset.kubernetes.io/pod-name": name},
                "ports": [{"port": TERMINAL_PORT, "targetPort": TERMINAL_PORT}],
            },
        }
        created = await self._retry(self.client.create_service, service)
        node_port = created["spec"]["ports"][0]["nodePort"]
        address = f"{self.config.public_host or '127.0.0.1'}:{node_port}"
        self._public[name] = address
        return address

    async def _clean_orphaned_services(self) -> None:
        """Delete ``<pod>-np`` Services whose pod is gone or no longer allocated."""
        try:
            services = await self._retry(self.client.list_services, f"{NODEPORT_LABEL}=true")
        except KubeError as exc:
            log.warning("could not list NodePort services: %s", exc)
            return
        for service in services:
            name = service["metadata"]["name"]
            pod = self.pods.get(name.removesuffix("-np"))
            if pod is None or pod.owner is None:
                await self._retry(self.client.delete_service, name)

    # --- events from the reflector ----------------------------------------------------------

    async def _on_listed(self, pods: dict[str, PodInfo]) -> None:
        """A full list (the first, or a relist after 410 Gone): the new cache. Whoever
        waits for a pod hears of it as of an event, since the changes of the watch gap
        arrive this way only; a waiter for a pod the list lacks hears None (gone)."""
        vanished = self.pods.keys() - pods.keys()
        self.pods = pods
        for pod in pods.values():
            self._emit(pod)
        self._post(Listed(present=frozenset(n for n, p in pods.items() if not p.deleting)))
        for name in vanished:
            self._route(name, None)
        for name, pod in pods.items():
            self._route(name, pod)

    def _on_event(self, kind: str, pod: PodInfo) -> None:
        if kind == "DELETED":
            if self.pods.get(pod.name, pod).uid == pod.uid:
                self.pods.pop(pod.name, None)
            self._post(TerminalGone(name=pod.name, instance=pod.uid))
            self._route(pod.name, None)
            return
        before = self.pods.get(pod.name)
        self.pods[pod.name] = pod  # the newest resourceVersion, for the owner's patch
        if before is not None and before.same_state(pod):
            return  # churn: the pool and the waiters have seen this state already
        self._emit(pod)
        self._route(pod.name, pod)

    def _emit(self, pod: PodInfo) -> None:
        if pod.deleting:
            self._post(TerminalGone(name=pod.name, instance=pod.uid))
        elif pod.usable:
            self._post(
                TerminalReady(
                    name=pod.name,
                    instance=pod.uid,
                    address=f"{pod.ip}:{TERMINAL_PORT}",
                    owner=pod.owner,
                    allocated_at=pod.allocated_at,
                )
            )
        else:
            self._post(TerminalAppeared(name=pod.name, instance=pod.uid))
            if pod.uid not in self._watched and self._nursery is not None:
                self._watched.add(pod.uid)
                self._nursery.start_soon(self._readiness_watchdog, pod.name, pod.uid)

    def _post(self, event: Event) -> None:
        """To the manager, without a scheduling round per watch event: its channel is
        unbounded (the pool applies events far faster than an API server sends them)."""
        assert self._events is not None
        self._events.send_nowait(event)

    def _route(self, name: str, pod: PodInfo | None) -> None:
        """Hand a pod change to whoever waits for that pod (O(1) by name)."""
        subscribers = self._subscribers.get(name)
        if not subscribers:
            return
        for channel in list(subscribers):
            try:
                channel.send_nowait(pod)
            except trio.BrokenResourceError:
                subscribers.remove(channel)  # the waiter is gone: unsubscribe
            except trio.WouldBlock:
                # the waiter has fallen behind: it has wake-ups queued, and it acts only
                # on the cache (updated before this call), never on the routed value
                pass
        if not subscribers:
            del self._subscribers[name]

    async def _readiness_watchdog(self, name: str, uid: str) -> None:
        """Report ``name``/``uid`` failed if it is not Ready within --ready-timeout.

        A routed change only wakes it: it decides from the cache, once more at the
        deadline, so a missed or dropped wake-up never fails a pod that is Ready."""
        send, receive = trio.open_memory_channel[PodInfo | None](16)
        self._subscribers[name].append(send)
        try:
            with trio.move_on_after(self.config.ready_timeout):
                while not self._settled(name, uid):
                    await receive.receive()
            if self._settled(name, uid):
                return
            log.warning("%s (uid %s) not ready after %.0f s", name, uid, self.config.ready_timeout)
            self._post(TerminalFailed(name=name, instance=uid, reason="not ready in time"))
        finally:
            receive.close()
            self._watched.discard(uid)

    def _settled(self, name: str, uid: str) -> bool:
        """Whether the cache says ``name``/``uid`` no longer needs a readiness watchdog:
        Ready, terminating, or replaced by another pod (or gone)."""
        current = self.pods.get(name)
        return current is None or current.uid != uid or current.usable or current.deleting


def create_backend(
    config: ManagerConfig, registry: CollectorRegistry | None = None
) -> KubernetesBackend:
    return KubernetesBackend(config, registry=registry)
