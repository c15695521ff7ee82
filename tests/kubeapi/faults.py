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
    from .store import Store


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
        self.events_sent = 0

    def drop(self, *, abort: bool = False) -> None:
        self.dropped = True
        self.abort = abort
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
    # ---- kubelet
    held_pending: set[str] = field(default_factory=set)
    never_ready: set[str] = field(default_factory=set)
    readiness_delay: dict[str, float] = field(default_factory=dict)
    sigterm_ignored: set[str] = field(default_factory=set)
    store: Store | None = None
    kill_hook: Callable[[str, int, str], bool] | None = None
    _changed: trio.Event = field(default_factory=trio.Event)

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
        self._touch()

    def remove_watch(self, handle: WatchHandle) -> None:
        self.watches.discard(handle)
        self._touch()

    async def wait_for_watches(self, count: int, *, path: str | None = None) -> None:
        """Until exactly ``count`` watch streams (on paths containing ``path``) are
        open: e.g. before dropping them, or to see that a client re-watched."""
        while sum(1 for w in self.watches if path is None or path in w.path) != count:
            await self._changed.wait()

    def go_down(self) -> None:
        """The apiserver goes away: open watches are reset, new requests too, until
        :meth:`come_back`."""
        self.unreachable = True
        self.drop_watches(abort=True)

    def come_back(self) -> None:
        self.unreachable = False

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

    def kill_pod_process(self, pod: str, sig: int = signal.SIGKILL, namespace: str = "") -> bool:
        """Send ``sig`` to the pod's container process (in fake mode: the container
        "exits"). Returns False when the pod has no running container."""
        assert self.kill_hook is not None, "no kubelet"
        return self.kill_hook(pod, sig, namespace)
