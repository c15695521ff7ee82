"""Faults on demand, reachable from tests as ``api.faults``.

Everything here is plain state that the HTTP layer and the kubelet consult (or, for
watch drops, a registry of open watch streams they can cancel). Changing a kubelet
fault wakes the pods waiting on it, so a test never sleeps to make one take effect."""

from __future__ import annotations

import re
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import trio

if TYPE_CHECKING:
    from .realism import Range
    from .store import Store

OutageMode = Literal["503", "refused", "hang"]


@dataclass
class RequestFault:
    """Answer the next ``remaining`` matching requests with ``status``."""

    status: int  # 500 InternalError, 429 TooManyRequests, 503 ServiceUnavailable, 504 Timeout...
    remaining: int
    verb: str | None = (
        None  # Kubernetes verb: get list watch create update patch delete deletecollection
    )
    path: re.Pattern[str] | None = None  # searched in the request path
    retry_after: int | None = None  # seconds; sent as Retry-After and details.retryAfterSeconds
    message: str = "injected fault"
    hits: int = 0

    def matches(self, verb: str, path: str) -> bool:
        return (
            self.remaining > 0
            and (self.verb is None or self.verb == verb)
            and (self.path is None or self.path.search(path) is not None)
        )


class WatchHandle:
    """One open watch stream; ``drop`` ends it (cleanly, or by resetting the TCP
    connection when ``abort``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.scope = trio.CancelScope()
        self.abort = False
        self.dropped = False
        self.stalled = False
        self.events_sent = 0

    def drop(self, *, abort: bool = False) -> None:
        self.dropped = True
        self.abort = abort
        self.scope.cancel()

    def stall(self) -> None:
        """Stop delivering anything (events, bookmarks) and never end: the client's side
        of a half-open connection, whose peer vanished without a FIN or a reset."""
        self.stalled = True
        self.scope.cancel()


@dataclass
class Faults:
    # ---- HTTP layer
    latency: float = 0.0
    """Seconds added before every request is handled (watch streams included)."""
    watch_expired_mode: Literal["event", "http"] = "event"
    """How a watch from a compacted resourceVersion fails: an ERROR event carrying a 410
    Status inside a 200 stream (what a real apiserver with its watch cache does), or a
    plain HTTP 410 Status response."""
    drop_watches_every: int | None = None
    """End every watch stream after this many ADDED/MODIFIED/DELETED events."""
    drop_watches_abort: bool = False
    """With ``drop_watches_every``: reset the connection instead of ending cleanly."""
    end_watches_at_once: bool = False
    """Every watch stream ends cleanly right after its headers, with no event (a proxy in
    front of the apiserver that cuts long requests, or a broken apiserver)."""
    unreachable: bool = False
    """Every request is answered by a TCP reset (the apiserver or its load balancer is
    down). Open watch streams are not touched: ``go_down()`` also resets those."""
    request_faults: list[RequestFault] = field(default_factory=list)
    watches: set[WatchHandle] = field(default_factory=set)
    # ---- the apiserver itself (see outage())
    outage_mode: OutageMode | None = None
    """While set, the apiserver is down for everyone: clients get ``503`` (with
    ``Retry-After: outage_retry_after``), a refused connection, or no answer at all
    (``hang``); the in-cluster controllers and the kubelet cannot write either (pods
    keep running; their status reaches the API when it is back)."""
    outage_retry_after: int = 5
    outages: int = 0
    write_races: list[RequestFault] = field(default_factory=list)
    write_race_probability: float = 0.0
    """Chance that another writer changes an object just before a client's update,
    patch or delete of it (then a resourceVersion precondition fails with 409)."""
    # ---- controllers
    controller_delay: Range | None = None
    """Overrides the Realism's StatefulSet controller delay (e.g. (5, 20): a slow one)."""
    controller_paused: bool = False
    # ---- kubelet
    held_pending: set[str] = field(default_factory=set)
    never_ready: set[str] = field(default_factory=set)
    readiness_delay: dict[str, float] = field(default_factory=dict)
    sigterm_ignored: set[str] = field(default_factory=set)
    probe_latency: dict[str, float] = field(default_factory=dict)
    store: Store | None = None
    kill_hook: Callable[[str, int, str], bool] | None = None
    _changed: trio.Event = field(default_factory=trio.Event)
    _watches_changed: trio.Event = field(default_factory=trio.Event)

    # ------------------------------------------------------------ HTTP faults

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        verb: str | None = None,
        path: str | None = None,
        retry_after: int | None = None,
        message: str = "injected fault",
    ) -> RequestFault:
        """The next ``count`` requests matching ``verb``/``path`` (regex, searched)
        fail with ``status``; 429 gets ``Retry-After`` (default 1 s)."""
        if status == 429 and retry_after is None:
            retry_after = 1
        fault = RequestFault(
            status=status,
            remaining=count,
            verb=verb,
            path=re.compile(path) if path else None,
            retry_after=retry_after,
            message=message,
        )
        self.request_faults.append(fault)
        return fault

    def take_request_fault(self, verb: str, path: str) -> RequestFault | None:
        for fault in self.request_faults:
            if fault.matches(verb, path):
                fault.remaining -= 1
                fault.hits += 1
                if fault.remaining <= 0:
                    self.request_faults.remove(fault)
                return fault
        return None

    def drop_watches(self, *, abort: bool = False, path: str | None = None) -> int:
        """End every open watch stream now (those whose path contains ``path``).
        Returns how many were dropped."""
        dropped = 0
        for handle in list(self.watches):
            if path is None or path in handle.path:
                handle.drop(abort=abort)
                dropped += 1
        return dropped

    def add_watch(self, handle: WatchHandle) -> None:
        self.watches.add(handle)
        self._watches_changed.set()
        self._watches_changed = trio.Event()

    def remove_watch(self, handle: WatchHandle) -> None:
        self.watches.discard(handle)
        self._watches_changed.set()
        self._watches_changed = trio.Event()

    async def wait_for_watches(self, count: int, *, path: str | None = None) -> None:
        """Until exactly ``count`` watch streams (on paths containing ``path``) are
        open: e.g. before dropping them, or to see that a client re-watched."""
        while sum(1 for w in self.watches if path is None or path in w.path) != count:
            await self._watches_changed.wait()

    def go_down(self) -> None:
        """The apiserver goes away: open watches are reset, new requests too, until
        :meth:`come_back`."""
        self.unreachable = True
        self.drop_watches(abort=True)

    def come_back(self) -> None:
        self.unreachable = False

    def outage(self, mode: OutageMode = "503", *, retry_after: int = 5) -> None:
        """The apiserver goes down (a control-plane upgrade, an etcd outage) until
        :meth:`end_outage`: ``"503"`` answers every request with 503
        ServiceUnavailable and ``Retry-After``; ``"refused"`` closes the listening
        socket (connections are refused) and resets every open one; ``"hang"``
        accepts requests and never answers (a partition: open watches go half-open).
        Open watches end at once in the first two modes. Unlike :meth:`go_down`
        (the clients' path to the API is cut), the controllers and the kubelet are
        cut off too."""
        self.outage_mode = mode
        self.outage_retry_after = retry_after
        self.outages += 1
        if mode == "hang":
            self.half_open_watches()
        else:
            self.drop_watches(abort=mode == "refused")
        self._touch()

    def end_outage(self) -> None:
        self.outage_mode = None
        self._touch()

    @property
    def api_down(self) -> bool:
        return self.outage_mode is not None

    async def wait_api_up(self) -> None:
        while self.outage_mode is not None:
            await self._changed.wait()

    def half_open_watches(self, *, path: str | None = None) -> int:
        """Every open watch (on paths containing ``path``) stops delivering events and
        bookmarks without ending: no FIN, no reset, as when the peer's machine or a
        NAT in between vanished. Only the client's own read timeout can notice.
        Returns how many stalled."""
        stalled = 0
        for handle in list(self.watches):
            if not handle.stalled and (path is None or path in handle.path):
                handle.stall()
                stalled += 1
        return stalled

    def race_writes(
        self, count: int = 1, *, verb: str | None = None, path: str | None = None
    ) -> RequestFault:
        """Before each of the next ``count`` matching update/patch/delete requests,
        another writer changes the object (an annotation ``kubeapi.test/concurrent-
        write``), so a request that carries the resourceVersion it read fails with 409
        Conflict, as with a real concurrent writer; one without a precondition wins."""
        race = RequestFault(
            status=409,
            remaining=count,
            verb=verb,
            path=re.compile(path) if path else None,
            message="concurrent write",
        )
        self.write_races.append(race)
        return race

    def take_write_race(self, verb: str, path: str, chance: float) -> bool:
        for race in self.write_races:
            if race.matches(verb, path):
                race.remaining -= 1
                race.hits += 1
                if race.remaining <= 0:
                    self.write_races.remove(race)
                return True
        return self.write_race_probability > 0 and chance < self.write_race_probability

    def pause_controller(self) -> None:
        """The StatefulSet controller stops acting (a kube-controller-manager failing
        over) until :meth:`resume_controller`; changes queue up meanwhile."""
        self.controller_paused = True
        self._touch()

    def resume_controller(self) -> None:
        self.controller_paused = False
        self._touch()

    def expire_resource_versions(self) -> int:
        """Compact the history: every resourceVersion seen so far answers 410 to a
        watch or exact list. Returns the new oldest valid resourceVersion."""
        assert self.store is not None
        return self.store.compact()

    # ------------------------------------------------------------ kubelet faults

    def _touch(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self) -> None:
        await self._changed.wait()

    def hold_pending(self, pod: str) -> None:
        """Pods named ``pod`` (this and later incarnations) stay Pending, unscheduled-
        like: no IP, no container, until :meth:`release_pending`."""
        self.held_pending.add(pod)
        self._touch()

    def release_pending(self, pod: str) -> None:
        self.held_pending.discard(pod)
        self._touch()

    def block_readiness(self, pod: str) -> None:
        """Pods named ``pod`` run but never pass their readiness probe."""
        self.never_ready.add(pod)
        self._touch()

    def unblock_readiness(self, pod: str) -> None:
        self.never_ready.discard(pod)
        self._touch()

    def delay_readiness(self, pod: str, seconds: float) -> None:
        """Pods named ``pod`` become Ready no sooner than ``seconds`` after starting."""
        self.readiness_delay[pod] = seconds
        self._touch()

    def ignore_sigterm(self, pod: str, ignore: bool = True) -> None:
        """Pods named ``pod`` behave as if their process ignored SIGTERM: a graceful
        delete lasts the whole grace period, then SIGKILL (works in fake mode too)."""
        if ignore:
            self.sigterm_ignored.add(pod)
        else:
            self.sigterm_ignored.discard(pod)
        self._touch()

    def starve_cpu(self, pod: str, seconds: float | None) -> None:
        """Pods named ``pod`` answer every probe ``seconds`` late (a user saturating the
        pod's CPU): a probe whose ``timeoutSeconds`` is shorter fails. None: undo."""
        if seconds is None:
            self.probe_latency.pop(pod, None)
        else:
            self.probe_latency[pod] = seconds
        self._touch()

    def kill_pod_process(self, pod: str, sig: int = signal.SIGKILL, namespace: str = "") -> bool:
        """Send ``sig`` to the pod's container process (in fake mode: the container
        "exits"). Returns False when the pod has no running container."""
        assert self.kill_hook is not None, "no kubelet"
        return self.kill_hook(pod, sig, namespace)
