"""The ``kubernetes`` backend: terminals are the pods of a StatefulSet.

The reflector keeps a compact cache of the terminal pods (an informer's store) and each
change becomes a pool event. The backend is *level-triggered*, as controller-runtime
controllers are: a pool decision only changes the **desired state** —

* ``replicas`` (from :class:`ScaleTo`),
* retired pod UIDs (from :class:`Restart`): each must be deleted while the cache still
  has it, with a UID precondition so a newer pod of the same name is never hit (tried
  at once too, before the give-back is answered: a manager dying next would lose it),
* the owner annotation of every claimed pod (and, in nodeport mode, the Services of
  recycled terminals to delete),

and one reconcile loop compares it with the cache and converges: on every change, on
every decision and every ``--resync-period``, each difference is one work item with
client-go's per-item exponential backoff (0.5 s doubling to 30 s, or the server's
``Retry-After`` when longer). A call that fails is retried until the cluster agrees;
nothing is dropped, so an API outage of minutes ends in convergence when it returns.
Each resync also replays the cache to the pool (idempotent events), so a pod that
changed nothing while the pool forgot it (a quick scale-down then up) is seen again.

The cluster is the source of truth for ownership: a claim is a merge patch of the pod's
``webterm.dev/client`` annotation (the client *hash*) carrying the pod's last seen
``resourceVersion``, so two writers racing for one pod cannot both win — the loser gets
409, re-reads the pod, and the manager retries with another. A claim that cannot be
written (the API fails) raises: the manager undoes the assignment. A reconnect answers
only once the cache shows the annotation: a missing one is written first, one naming
another client is lost (:class:`ClaimLost`). A restarted manager rebuilds every
allocation from one list.

Readiness: a pod that has never been Ready nor owned gets a watchdog; it is reported
failed when it is *Running* but not Ready for ``--ready-timeout``. A Pending pod
(unscheduled, pulling its image) is not failed, however long it takes; an in-use pod
that is briefly not ready is left alone.

With ``--leader-elect`` (:mod:`webterm.manager.kube.leader`) the cache is kept warm from
the start, but nothing is written and no event reaches the pool until this manager
holds the Lease; it then labels its own pod ``webterm.dev/leader=true`` (and unlabels
any other), replays the cache and starts its reconcile loop.

Why one module of some 680 lines: the cache, the desired state, the waiters and the
reconcile loop are the state of one object, changed by one trio task at a time and
never behind a lock; split up, the same dictionaries would sit behind three interfaces.
What stands alone lives beside it: the retries and per-item backoff
(:mod:`~webterm.manager.kube.workqueue`), the list+watch
(:mod:`~webterm.manager.kube.reflector`), the pod's fields
(:mod:`~webterm.manager.kube.pods`), the Lease and the leader's label
(:mod:`~webterm.manager.kube.leader`), the API calls (:mod:`~webterm.manager.kube.client`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable
from datetime import UTC, datetime
from functools import partial
from typing import Final, ParamSpec, TypeVar

import trio
from prometheus_client import CollectorRegistry, Gauge

from webterm.config import ManagerConfig
from webterm.manager.backend import BackendDecision, ClaimLost
from webterm.manager.kube.client import Conflict, KubeClient, KubeError, NotFound, load_connection
from webterm.manager.kube.leader import (
    LeaderConfig,
    LeaderElector,
    default_identity,
    label_leader,
    unlabel_standby,
)
from webterm.manager.kube.pods import CONNECTED_ANNOTATION
from webterm.manager.kube.reflector import (
    ALLOCATED_ANNOTATION,
    OWNER_ANNOTATION,
    STATE_LABEL,
    PodInfo,
    ReflectorStats,
    reflect,
)
from webterm.manager.kube.workqueue import ItemBackoff, retry_for_request, retry_until_done
from webterm.manager.pool import (
    Assign,
    Connection,
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
CONCURRENT_WRITES: Final = 8
DELETE_AT_ONCE: Final = 2.0
"""Seconds :meth:`KubernetesBackend.apply` tries a retired pod's delete itself before
leaving it to the reconcile loop: the give-back it answers for is then on the pod
(a deletionTimestamp), not only in this process, should the manager die next."""
COALESCE: Final = 0.05
"""Seconds the reconcile loop waits after a wake-up, as a work queue lets changes pile
up: a storm of 1,000 pod events makes a few passes, not 1,000."""


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
        self._events: trio.MemorySendChannel[Event] | None = None  # set once active
        self._nursery: trio.Nursery | None = None
        self._watched: set[str] = set()  # uids with a readiness watchdog
        self._seen_ready: set[str] = set()  # uids seen Ready or owned: no longer starting
        self._public: dict[str, str] = {}  # pod -> host:nodePort
        # the desired state the reconcile loop converges to
        self.desired_replicas: int | None = None
        self.retired: dict[str, str] = {}  # uid -> pod name: delete while present
        self.claims: dict[str, tuple[str, str]] = {}  # pod -> (uid, client hash)
        self.connections: dict[str, tuple[str, bool]] = {}  # pod -> (uid, attached)
        self._services_to_delete: set[str] = set()
        self._written_replicas: int | None = None
        self._deleted_at: dict[str, float] = {}  # uid -> when its delete was accepted
        self._backoff = ItemBackoff()
        self._wake = trio.Event()
        self._last_resync = -math.inf
        self._labelled = False  # our pod carries the leader label (checked each resync)
        self.leader: LeaderElector | None = None
        self.following = False  # cache warm, waiting for the lease
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
        Gauge(
            "webterm_reconcile_pending", "Work items the cluster does not agree with yet",
            registry=registry,
        ).set_function(lambda: len(self._backoff.failures))  # fmt: skip
        Gauge(
            "webterm_leader", "1 while this manager holds the lease (or needs none)",
            registry=registry,
        ).set_function(lambda: 0 if self.following or self._events is None else 1)  # fmt: skip

    @property
    def client(self) -> KubeClient:
        assert self._client is not None, "the backend is not running"
        return self._client

    @property
    def active(self) -> bool:
        return self._events is not None

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
        self.client.watch_read_timeout(self.config.watch_timeout)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(
                    partial(
                        reflect, self.client, self.selector, self._on_listed, self._on_event,
                        stats=self.stats,
                    )
                )  # fmt: skip
                if self.config.leader_elect:
                    self.following = True
                    if self.config.pod_name:
                        nursery.start_soon(
                            unlabel_standby, self.client, self.config.pod_name,
                            lambda: self.following,
                        )  # fmt: skip
                    self.leader = LeaderElector(
                        self.client,
                        LeaderConfig(
                            lease_name=self.config.lease_name,
                            identity=self.config.leader_identity or default_identity(),
                            lease_duration=self.config.lease_duration,
                            renew_deadline=self.config.renew_deadline,
                            retry_period=self.config.retry_period,
                        ),
                    )
                    await nursery.start(self.leader.run)  # raises LeadershipLost later
                    self.following = False
                replicas = await retry_until_done(self.client.get_replicas, self.config.statefulset)
                self._events = events
                self._last_resync = trio.current_time()
                self._on_listed_sync(self.pods)  # the cache, as the pool's first list
                self._adopt_connections()
                nursery.start_soon(self._reconcile_loop)
                task_status.started(replicas)
        finally:
            with trio.CancelScope(shield=True):
                await self.client.aclose()

    async def apply(self, decision: BackendDecision) -> bool:
        """Record the decision in the desired state; the reconcile loop carries it out.

        A :class:`Restart` is also tried at once (one delete with the UID precondition,
        for up to DELETE_AT_ONCE), and is durable (True) only once the API has accepted
        a delete (or the pod is gone, replaced or terminating): a decision that exists
        only in memory dies with the process, while a pod being deleted is seen as gone
        by whichever manager lists it next. If that call fails, the delete waits for
        the loop (retried with backoff) and the manager answers the give-back 503 until
        it is asked again after the loop (or a new attempt) got it through. A
        :class:`ScaleTo` is always durable: any manager derives it from the pods."""
        if isinstance(decision, ScaleTo):
            log.info("desired: %s at %d replicas", self.config.statefulset, decision.replicas)
            before = self.desired_replicas or 0
            self.desired_replicas = decision.replicas
            # pods the pool forgot on a scale-down may still be here, unchanged: tell it
            self._replay_ordinals(before, decision.replicas)
        elif isinstance(decision, Restart):
            log.info("desired: %s (uid %s) gone", decision.name, decision.instance)
            self.retired[decision.instance] = decision.name
            claim = self.claims.get(decision.name)
            if claim is not None and claim[0] == decision.instance:
                del self.claims[decision.name]
            connection = self.connections.get(decision.name)
            if connection is not None and connection[0] == decision.instance:
                del self.connections[decision.name]
            if self.config.address_mode == "nodeport":
                self._public.pop(decision.name, None)
                self._services_to_delete.add(f"{decision.name}-np")
            durable = await self._delete_at_once(decision.name, decision.instance)
            self._kick()
            return durable
        self._kick()
        return True

    async def _delete_at_once(self, name: str, uid: str) -> bool:
        """Delete pod ``name`` (``uid``) now; whether it is deleted or going."""
        pod = self.pods.get(name)
        if pod is None or pod.uid != uid or pod.deleting or uid in self._deleted_at:
            return True  # gone, replaced or on its way out already: the loop converges
        with trio.move_on_after(DELETE_AT_ONCE):
            try:
                await self._delete(name, uid)
            except NotFound:
                return True
            except KubeError as exc:
                log.info("deleting %s (uid %s) failed (%s): left to the loop", name, uid, exc)
                return False
            self._backoff.forget(("delete", uid))
            return True
        return False

    def note_connection(self, name: str, instance: str, connected: bool) -> None:
        """A terminal reported a browser attached or detached: desired on its pod (the
        connected annotation), so whoever manages the pool next knows it."""
        self.connections[name] = (instance, connected)
        self._kick()

    def _adopt_connections(self) -> None:
        """Taking over (a restart, a new leader): sessions the pods say are attached
        are attached, or they would be recycled as stale under their users."""
        now = trio.current_time()
        for pod in self.pods.values():
            if pod.connected and pod.owner is not None and pod.usable:
                self._post(Connection(name=pod.name, connected=True, now=now))
                self.connections.setdefault(pod.name, (pod.uid, True))

    async def claim(self, assign: Assign) -> str:
        pod = self.pods.get(assign.name)
        if pod is None or pod.uid != assign.instance:
            raise ClaimLost(None)
        if pod.owner is not None and pod.owner != assign.client:
            raise ClaimLost(pod.owner)  # the cluster says somebody else holds it
        if pod.owner is None or not assign.reconnect:
            await self._write_owner(assign)
        self.claims[assign.name] = (assign.instance, assign.client)
        self._seen_ready.add(assign.instance)
        if self.config.address_mode == "nodeport":
            return await self._public_address(assign.name)
        return assign.address

    # --- writes -----------------------------------------------------------------------------

    async def _write_owner(self, assign: Assign) -> None:
        for _ in range(3):  # only the resourceVersion moving: try again with the new one
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
                updated = await retry_for_request(self.client.patch_pod, assign.name, patch)
            except Conflict:
                fresh = PodInfo.from_pod(await retry_for_request(self.client.get_pod, assign.name))
                self._store(fresh)
                if fresh.uid != assign.instance:
                    raise ClaimLost(None) from None
                if fresh.owner is not None and fresh.owner != assign.client:
                    raise ClaimLost(fresh.owner) from None
                if fresh.owner == assign.client:
                    return  # an earlier attempt landed after all
                continue
            except NotFound:
                raise ClaimLost(None) from None
            info = PodInfo.from_pod(updated)
            if info.uid == assign.instance:
                self._store(info)
            return
        raise KubeError(409, "Conflict", f"{assign.name} keeps changing")

    def _store(self, pod: PodInfo) -> None:
        """A pod read by a write: newer than the cache unless the watch got further."""
        cached = self.pods.get(pod.name)
        if cached is None or cached.uid != pod.uid or _newer(pod, cached):
            self.pods[pod.name] = pod

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
        self._services_to_delete.discard(f"{name}-np")
        created = await retry_for_request(self.client.create_service, service)
        node_port = created["spec"]["ports"][0]["nodePort"]
        address = f"{self.config.public_host or '127.0.0.1'}:{node_port}"
        self._public[name] = address
        return address

    async def _orphaned_services(self) -> None:
        """Desired: no ``<pod>-np`` Service whose pod is gone or no longer allocated."""
        services = await self.client.list_services(f"{NODEPORT_LABEL}=true")
        for service in services:
            name = service["metadata"]["name"]
            pod = self.pods.get(name.removesuffix("-np"))
            if pod is None or pod.owner is None:
                self._services_to_delete.add(name)

    # --- the reconcile loop ------------------------------------------------------------------

    def _kick(self) -> None:
        self._wake.set()

    async def _reconcile_loop(self) -> None:
        """Converge the cluster to the desired state, for as long as we lead."""
        if self.config.address_mode == "nodeport":
            try:
                await self._orphaned_services()
            except KubeError as exc:
                log.warning("could not list NodePort services: %s", exc)
        while True:
            now = trio.current_time()
            resync = now - self._last_resync >= self.config.resync_period
            if resync:
                self._last_resync = now
                self._written_replicas = None  # read the StatefulSet again
                self._labelled = False
                self._replay()
            await self._reconcile_once()
            wake_at = min(self._last_resync + self.config.resync_period, self._backoff.next_due())
            with trio.move_on_at(wake_at):
                await self._wake.wait()
            self._wake = trio.Event()
            await trio.sleep(COALESCE)  # a burst of changes makes one pass, not one each

    def _work(self) -> list[tuple[Hashable, Callable[[], Awaitable[None]]]]:
        """Every difference between the desired state and the cache, as work items."""
        now = trio.current_time()
        items: list[tuple[Hashable, Callable[[], Awaitable[None]]]] = []
        if self.desired_replicas is not None and self._written_replicas != self.desired_replicas:
            items.append((("scale",), self._scale))
        for uid, name in list(self.retired.items()):
            pod = self.pods.get(name)
            if pod is None or pod.uid != uid:
                del self.retired[uid]  # gone: converged
                self._deleted_at.pop(uid, None)
                self._backoff.forget(("delete", uid))
                continue
            accepted = self._deleted_at.get(uid)
            if pod.deleting or (
                accepted is not None and now - accepted < self.config.resync_period
            ):
                continue  # on its way out (or the watch has yet to say so)
            items.append((("delete", uid), partial(self._delete, name, uid)))
        for name, (uid, client) in list(self.claims.items()):
            pod = self.pods.get(name)
            if pod is None or pod.uid != uid or pod.deleting:
                del self.claims[name]
                self._backoff.forget(("owner", name))
            elif pod.owner is None:
                items.append((("owner", name), partial(self._rewrite_owner, name, uid, client)))
        for name, (uid, attached) in list(self.connections.items()):
            pod = self.pods.get(name)
            if pod is None or pod.uid != uid or pod.deleting:
                del self.connections[name]
                self._backoff.forget(("connected", name))
            elif pod.connected != attached:
                work = partial(self._write_connected, name, uid, attached)
                items.append((("connected", name), work))
        for service in list(self._services_to_delete):
            items.append((("service", service), partial(self._delete_service, service)))
        if self.config.pod_name and not self._labelled:
            items.append((("leader-label",), self._label_self))
        return items

    async def _reconcile_once(self) -> None:
        limiter = trio.CapacityLimiter(CONCURRENT_WRITES)
        now = trio.current_time()
        async with trio.open_nursery() as nursery:
            for key, work in self._work():
                if self._backoff.due(key, now):
                    nursery.start_soon(self._attempt, key, work, limiter)

    async def _attempt(
        self, key: Hashable, work: Callable[[], Awaitable[None]], limiter: trio.CapacityLimiter
    ) -> None:
        async with limiter:
            try:
                await work()
            except KubeError as exc:
                delay = self._backoff.failed(key, trio.current_time(), exc.retry_after)
                log.info("reconcile %s failed (%s); again in %.1f s", key, exc, delay)
                return
        self._backoff.forget(key)

    async def _scale(self) -> None:
        desired = self.desired_replicas
        assert desired is not None
        replicas, version = await self.client.get_scale(self.config.statefulset)
        if replicas != desired:
            log.info("scaling %s from %d to %d", self.config.statefulset, replicas, desired)
            await self.client.set_replicas(
                self.config.statefulset, desired, resource_version=version
            )
        if self.desired_replicas == desired:
            self._written_replicas = desired

    async def _delete(self, name: str, uid: str) -> None:
        log.info("deleting %s (uid %s)", name, uid)
        await self.client.delete_pod(name, uid=uid, grace_period=self.config.delete_grace_period)
        self._deleted_at[uid] = trio.current_time()

    async def _rewrite_owner(self, name: str, uid: str, client: str) -> None:
        pod = self.pods.get(name)
        if pod is None or pod.uid != uid or pod.owner is not None:
            return
        log.info("rewriting the owner annotation of %s", name)
        patch = {
            "metadata": {
                "resourceVersion": pod.resource_version,
                "labels": {STATE_LABEL: "in-use"},
                "annotations": {OWNER_ANNOTATION: client},
            }
        }
        # Conflict/NotFound: the watch brings the newer pod; the next pass decides again
        with contextlib.suppress(Conflict, NotFound):
            self._store(PodInfo.from_pod(await self.client.patch_pod(name, patch)))

    async def _write_connected(self, name: str, uid: str, attached: bool) -> None:
        value = "true" if attached else "false"
        patch = {"metadata": {"uid": uid, "annotations": {CONNECTED_ANNOTATION: value}}}
        with contextlib.suppress(Conflict, NotFound):  # replaced or gone: nothing to say
            self._store(PodInfo.from_pod(await self.client.patch_pod(name, patch)))

    async def _delete_service(self, name: str) -> None:
        await self.client.delete_service(name)
        self._services_to_delete.discard(name)

    async def _label_self(self) -> None:
        """Desired while leading: our pod labelled leader, no other pod so labelled."""
        assert self.config.pod_name is not None
        await label_leader(self.client, self.config.pod_name)
        self._labelled = True

    # --- events from the reflector ----------------------------------------------------------

    async def _on_listed(self, pods: dict[str, PodInfo]) -> None:
        self._on_listed_sync(pods)

    def _on_listed_sync(self, pods: dict[str, PodInfo]) -> None:
        """A full list (the first, or a relist after 410 Gone): the new cache. Whoever
        waits for a pod hears of it as of an event, since the changes of the watch gap
        arrive this way only; a waiter for a pod the list lacks hears None (gone)."""
        vanished = self.pods.keys() - pods.keys()
        self.pods = pods
        self._seen_ready &= {pod.uid for pod in pods.values()}
        if self.active:
            self._replay()
        for name in vanished:
            self._route(name, None)
        for name, pod in pods.items():
            self._route(name, pod)
        self._kick()

    def _replay(self) -> None:
        """Tell the pool the cache's state again (idempotent events): level, not edges."""
        if not self.active:
            return
        for pod in list(self.pods.values()):
            self._emit(pod)
        self._post(Listed(present=frozenset(n for n, p in self.pods.items() if not p.deleting)))

    def _replay_ordinals(self, start: int, stop: int) -> None:
        """The cached pods of ordinals ``start..stop-1`` again (O(stop - start))."""
        for ordinal in range(start, stop):
            pod = self.pods.get(f"{self.config.statefulset}-{ordinal}")
            if pod is not None:
                self._emit(pod)

    def _on_event(self, kind: str, pod: PodInfo) -> None:
        if kind == "DELETED":
            self._seen_ready.discard(pod.uid)
            if self.pods.get(pod.name, pod).uid == pod.uid:
                self.pods.pop(pod.name, None)
            self._post(TerminalGone(name=pod.name, instance=pod.uid))
            self._route(pod.name, None)
            self._kick()
            return
        before = self.pods.get(pod.name)
        self.pods[pod.name] = pod  # the newest resourceVersion, for the owner's patch
        if before is not None and before.same_state(pod):
            return  # churn: the pool and the waiters have seen this state already
        self._emit(pod)
        self._route(pod.name, pod)
        self._kick()

    def _emit(self, pod: PodInfo) -> None:
        if not self.active:
            return
        if pod.usable or pod.owner is not None:
            self._seen_ready.add(pod.uid)  # an in-use pod is never "starting" again
        if pod.deleting:
            self._post(TerminalGone(name=pod.name, instance=pod.uid))
        elif pod.usable:
            self._post(
                TerminalReady(
                    name=pod.name,
                    instance=pod.uid,
                    address=pod.address(TERMINAL_PORT),
                    owner=pod.owner,
                    allocated_at=_on_trio_clock(pod.allocated_at),
                )
            )
        else:
            self._post(TerminalAppeared(name=pod.name, instance=pod.uid))
            if (
                pod.uid not in self._watched
                and pod.uid not in self._seen_ready
                and self._nursery is not None
            ):
                self._watched.add(pod.uid)
                self._nursery.start_soon(self._readiness_watchdog, pod.name, pod.uid)

    def _post(self, event: Event) -> None:
        """To the manager, without a scheduling round per watch event: its channel is
        unbounded (the pool applies events far faster than an API server sends them).
        Nothing while following: the pool starts from the cache on taking over."""
        if self._events is not None:
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
        """Report ``name``/``uid`` failed if it is Running but not Ready for
        --ready-timeout. Pending time does not count (a node being added, an image
        being pulled); a pod once Ready or owned is not watched (an in-use pod briefly
        unready keeps its session).

        A routed change only wakes it: it decides from the cache, once more at the
        deadline, so a missed or dropped wake-up never fails a pod that is Ready."""
        send, receive = trio.open_memory_channel[PodInfo | None](16)
        self._subscribers[name].append(send)
        try:
            running_since: float | None = None
            while not self._settled(name, uid):
                pod = self.pods[name]
                if pod.pending:
                    running_since = None
                    await receive.receive()
                    continue
                if running_since is None:
                    running_since = trio.current_time()
                with trio.move_on_at(running_since + self.config.ready_timeout) as waited:
                    await receive.receive()
                if waited.cancelled_caught and not self._settled(name, uid):
                    if self.pods[name].pending:
                        continue
                    log.warning(
                        "%s (uid %s) not ready %.0f s after starting",
                        name, uid, self.config.ready_timeout,
                    )  # fmt: skip
                    self._post(TerminalFailed(name=name, instance=uid, reason="not ready in time"))
                    return
        finally:
            receive.close()
            self._watched.discard(uid)

    def _settled(self, name: str, uid: str) -> bool:
        """Whether the cache says ``name``/``uid`` no longer needs a readiness watchdog:
        Ready or owned (ever), terminating, or replaced by another pod (or gone)."""
        current = self.pods.get(name)
        return (
            current is None
            or current.uid != uid
            or current.usable
            or current.deleting
            or current.owner is not None
            or uid in self._seen_ready
        )


def _newer(a: PodInfo, b: PodInfo) -> bool:
    """resourceVersions are opaque, but an apiserver's are etcd revisions: compare as
    numbers when both are, else take ``a`` (the one just read by a write)."""
    try:
        return int(a.resource_version) >= int(b.resource_version)
    except ValueError:
        return True


def _on_trio_clock(wall: float) -> float:
    """A wall-clock time (an annotation) on the pool's clock (trio's), keeping its age.
    0.0 (unknown) stays 0.0."""
    if not wall:
        return 0.0
    return trio.current_time() - max(0.0, time.time() - wall)


def create_backend(
    config: ManagerConfig, registry: CollectorRegistry | None = None
) -> KubernetesBackend:
    return KubernetesBackend(config, registry=registry)
