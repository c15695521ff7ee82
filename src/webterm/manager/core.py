"""The manager: the pool, the wiring to its backend, and the requests waiting on it.

Theory of operation
-------------------
:class:`Manager` owns the :class:`~webterm.manager.pool.Pool`. Trio runs one task at a
time and ``Pool.handle`` never awaits, so every HTTP handler and the backend's event
task can call :meth:`Manager.handle` directly: events are applied one at a time, and
two concurrent allocations can never see the same free terminal. The decisions that
need I/O (:class:`ScaleTo`, :class:`Restart`) go to the backend through a channel read
by one task, in order (a give-back or a recycle is answered only once the backend has
applied the decisions it produced, or APPLY_WAIT has passed: the Kubernetes backend
has then deleted the pod, so a manager killed right after answering loses nothing);
:class:`Assign` decisions resolve the HTTP requests waiting for
a terminal (a client that asked while none was free waits, under a deadline, for the
terminal the pool is starting for it; a request dropped while it waits withdraws).
The HTTP API over it is :mod:`webterm.manager.app`.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Final

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from webterm.config import ManagerConfig
from webterm.manager.backend import Backend, ClaimLost, Unconfirmed
from webterm.manager.pool import (
    Allocate,
    Assign,
    CancelWait,
    Decision,
    Event,
    Pool,
    PoolError,
    Recycle,
    Reject,
    Release,
    Restart,
    ScaleTo,
    State,
    TerminalGone,
    TerminalReady,
    Tick,
    Unassign,
    UnknownClient,
    Wait,
)
from webterm.protocol import TokenClaims, client_hash, sign_token

log = logging.getLogger("webterm.manager")

TICK_SECONDS: Final = 5.0
"""How often stale-terminal detection runs; a stale terminal is recycled at most this
late."""

LOCAL_WAIT_TIMEOUT: Final = 20.0
"""Seconds an allocation may wait for a local terminal to start."""

RETRY_AFTER_SLOW: Final = 5
"""What a client is told when its terminal did not become ready in time."""

WAIT_LINGER: Final = 3 * RETRY_AFTER_SLOW
"""How long a client told to retry keeps its place in the queue (and its terminal)."""

CLAIM_ATTEMPTS: Final = 3
"""Terminals tried for one request when other managers keep winning the race."""

RETRY_AFTER_CLAIM: Final = 2
"""What a client is told when its allocation could not be recorded (the API failed)."""

APPLY_WAIT: Final = 5.0
"""Seconds a give-back or recycle request waits for the backend to make its decisions
durable (the Kubernetes backend tries the pod's delete for up to 2 s). Past it, or when
the delete failed, the request is answered 503 (:class:`Unconfirmed`): the decision
stays, the reconcile loop keeps trying, and the same request asked again answers 200
once the delete is through. So a 200 means durable, even if this manager dies next."""

RETRY_AFTER_UNCONFIRMED: Final = 2
"""What a caller is told when its give-back or recycle is not durable yet."""

MAX_UNCONFIRMED: Final = 10_000
"""Unconfirmed give-backs remembered for clients that may ask again (oldest forgotten)."""

RETRY_AFTER_NOT_LEADER: Final = 1
"""What a client is told by a manager that is not (yet) the active one: the Service
routes to the leader once it has labelled its pod, within a lease period."""


@dataclass(eq=False)
class Applying:
    """A decision on its way to the backend: ``done`` once applied, ``durable`` if it
    then survives this process (:meth:`webterm.manager.backend.Backend.apply`)."""

    decision: ScaleTo | Restart
    done: trio.Event = field(default_factory=trio.Event)
    durable: bool = False


class Manager:
    """The pool plus the wiring to its backend and to waiting requests."""

    def __init__(
        self, config: ManagerConfig, backend: Backend, registry: CollectorRegistry
    ) -> None:
        self.config = config
        self.backend = backend
        self.pool = Pool(
            prefix=config.statefulset,
            spares=config.spares,
            max_terminals=config.max_terminals,
            stale_after=config.stale_after,
        )
        self.ready = trio.Event()
        self._waiters: dict[str, list[Callable[[Assign], None]]] = defaultdict(list)
        self._lingering: dict[str, object] = {}  # timed-out waiters told to come back
        self._nursery: trio.Nursery | None = None
        self._to_backend, self._backend_queue = trio.open_memory_channel[Applying](math.inf)
        # restarts decided but not durable yet, by instance; and whose give-back each was
        self._unconfirmed: dict[str, Restart] = {}
        self._unconfirmed_of: dict[str, str] = {}
        self.wait_timeout = (
            LOCAL_WAIT_TIMEOUT if config.backend == "local" else config.ready_timeout
        )
        self.m_terminals = Gauge(
            "webterm_terminals", "Terminals by state", ["state"], registry=registry
        )
        for state in State:  # read at scrape time, not on every event
            self.m_terminals.labels(state.value).set_function(partial(self._count, state))
        self.m_allocations = Counter(
            "webterm_allocations", "Allocation answers", ["result"], registry=registry
        )
        self.m_latency = Histogram(
            "webterm_allocation_seconds",
            "Time to answer an allocation",
            registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.m_scale = Counter("webterm_scale_operations", "ScaleTo decisions", registry=registry)
        self.m_recycles = Counter("webterm_recycles", "Restart decisions", registry=registry)

    # --- the event loop around the pool ------------------------------------------------------

    def handle(self, event: Event) -> list[Decision]:
        return self._handle(event)[0]

    async def handle_and_apply(self, event: Event, *, client: str | None = None) -> None:
        """:meth:`handle`, then wait (up to APPLY_WAIT) until the backend has made the
        restarts it produced durable; raises :class:`Unconfirmed` if it has not (they
        are remembered, under ``client`` too, for :meth:`confirm`)."""
        _, applying = self._handle(event)
        await self._confirm(applying, client)

    async def confirm(self, *, client: str | None = None, instance: str | None = None) -> bool:
        """Apply again the unconfirmed restart of ``client``'s give-back (or of
        ``instance``), and wait for it as :meth:`handle_and_apply` does: False if there
        is none, True once durable; raises :class:`Unconfirmed`."""
        if client is not None:
            instance = self._unconfirmed_of.get(client)
            if instance is None:
                return False
            if instance not in self._unconfirmed:  # its pod is gone since: done
                del self._unconfirmed_of[client]
                return True
        restart = self._unconfirmed.get(instance or "")
        if restart is None:
            return False
        applying = Applying(restart)
        self._to_backend.send_nowait(applying)
        await self._confirm([applying], client)
        return True

    async def _confirm(self, applying: list[Applying], client: str | None) -> None:
        with trio.move_on_after(APPLY_WAIT):
            for item in applying:
                await item.done.wait()
        unconfirmed = False
        for item in applying:
            if not isinstance(item.decision, Restart):
                continue
            instance = item.decision.instance
            if item.durable:
                self._unconfirmed.pop(instance, None)
                continue
            unconfirmed = True
            self._unconfirmed[instance] = item.decision
            if client is not None:
                self._unconfirmed_of[client] = instance
                while len(self._unconfirmed_of) > MAX_UNCONFIRMED:  # clients that never asked again
                    del self._unconfirmed_of[next(iter(self._unconfirmed_of))]
        if client is not None and not unconfirmed:
            self._unconfirmed_of.pop(client, None)
        if unconfirmed:
            log.warning("the backend has not made %s durable yet", [a.decision for a in applying])
            raise Unconfirmed("the recycle is decided but not yet carried out: ask again")

    def _handle(self, event: Event) -> tuple[list[Decision], list[Applying]]:
        try:
            decisions = self.pool.handle(event)
        except PoolError as exc:
            log.debug("pool refused %s: %s", type(event).__name__, exc)
            raise
        if isinstance(event, TerminalGone):
            self._unconfirmed.pop(event.instance, None)  # what it waited for happened
        applying: list[Applying] = []
        for decision in decisions:
            if isinstance(decision, ScaleTo | Restart):
                if isinstance(decision, ScaleTo):
                    self.m_scale.inc()
                else:
                    self.m_recycles.inc()
                applying.append(Applying(decision))
                self._to_backend.send_nowait(applying[-1])
            elif isinstance(decision, Assign):
                for resolve in self._waiters.pop(decision.client, []):
                    resolve(decision)
        return decisions, applying

    def _count(self, state: State) -> int:
        return self.pool.counts[state]

    def handle_quietly(self, event: Event) -> list[Decision]:
        try:
            return self.handle(event)
        except PoolError:
            return []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Unbounded: a backend's first list is one event per terminal, sent before this
        # loop runs (a bounded channel deadlocks the start with more terminals than its
        # size); afterwards the pool applies events far faster than any API produces them.
        events_in, events_out = trio.open_memory_channel[Event](math.inf)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            replicas = await nursery.start(self.backend.run, events_in)
            self.pool.adopt_replicas(replicas)
            nursery.start_soon(self._apply_decisions)
            nursery.start_soon(self._ticks)
            self.handle_quietly(Tick(now=trio.current_time()))
            self.ready.set()
            task_status.started()
            async for event in events_out:
                self.handle_quietly(event)
                # drain what else is queued without a scheduling round per event
                while True:
                    try:
                        event = events_out.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    self.handle_quietly(event)

    async def _apply_decisions(self) -> None:
        async for item in self._backend_queue:
            try:
                item.durable = await self.backend.apply(item.decision)
            except Exception:
                log.exception("backend failed to apply %s", item.decision)
            finally:
                item.done.set()

    async def _ticks(self) -> None:
        while True:
            await trio.sleep(min(TICK_SECONDS, max(self.config.stale_after / 4, 0.1)))
            self.handle_quietly(Tick(now=trio.current_time()))

    # --- requests -------------------------------------------------------------------------------

    async def allocate(self, client_id: str) -> Assign | Reject:
        client = client_hash(self.config.secret, client_id)
        self._lingering.pop(client, None)
        started = trio.current_time()
        for _ in range(CLAIM_ATTEMPTS):
            answer = await self._decide(client)
            if isinstance(answer, Reject):
                break
            try:
                address = await self.backend.claim(answer)
            except ClaimLost as lost:
                # another manager won this terminal (or it vanished): learn that, retry
                log.info("lost the race for %s: %s", answer.name, lost)
                if lost.owner is not None:
                    self.handle_quietly(
                        TerminalReady(
                            name=answer.name, instance=answer.instance,
                            address=answer.address, owner=lost.owner,
                        )
                    )  # fmt: skip
                else:
                    self.handle_quietly(TerminalGone(name=answer.name, instance=answer.instance))
                continue
            except Exception:
                # the ownership was not recorded: the terminal must not stay this
                # client's here while the cluster says it is free (another manager, or
                # this one restarted, would hand it out again with the shell in it)
                log.exception("could not record %s for a client", answer.name)
                self.handle_quietly(
                    Unassign(client=client, name=answer.name, instance=answer.instance)
                )
                answer = Reject(
                    client=client, reason="could not record the allocation, try again",
                    retry_after=RETRY_AFTER_CLAIM,
                )  # fmt: skip
                break
            answer = replace(answer, address=address)
            break
        else:
            answer = Reject(
                client=client, reason="terminals are contended, try again", retry_after=1
            )
        self.m_latency.observe(trio.current_time() - started)
        if isinstance(answer, Reject):
            self.m_allocations.labels("rejected").inc()
        else:
            self.m_allocations.labels("reconnect" if answer.reconnect else "new").inc()
        return answer

    async def _decide(self, client: str) -> Assign | Reject:
        """The pool's answer for ``client``, waiting (under a deadline) if it says Wait."""
        answer = self._first_answer(
            client, self.handle(Allocate(client=client, now=trio.current_time()))
        )
        if not isinstance(answer, Wait):
            return answer
        got: list[Assign] = []
        done = trio.Event()

        def resolve(assign: Assign) -> None:
            got.append(assign)
            done.set()

        self._waiters[client].append(resolve)
        scope = trio.move_on_after(self.wait_timeout)
        try:
            with scope:
                await done.wait()
        finally:
            if not got:  # timed out, or the request was dropped (cancelled)
                self._stop_waiting(client, resolve, linger=scope.cancelled_caught)
        if got:
            return got[0]
        return Reject(
            client=client, reason="no terminal became ready in time", retry_after=RETRY_AFTER_SLOW
        )

    def _stop_waiting(
        self, client: str, resolve: Callable[[Assign], None], *, linger: bool = False
    ) -> None:
        """Withdraw one waiting request; the pool stops waiting for ``client`` once none
        is left, so no terminal is later assigned to a request nobody reads. Synchronous:
        it runs in ``finally`` of a cancelled request too.

        ``linger`` (the request timed out: it was told to retry): the client keeps its
        place for WAIT_LINGER, so the terminal starting for it (a Pending pod waiting
        for a node) is not scaled away and started again on every retry; one assigned
        meanwhile is kept for its return, and freed again if it does not return."""
        waiters = self._waiters.get(client, [])
        if resolve in waiters:
            waiters.remove(resolve)
        if not waiters:
            self._waiters.pop(client, None)
            if linger and self._nursery is not None:
                token = object()
                self._lingering[client] = token
                self._nursery.start_soon(self._end_linger, client, token)
            else:
                self.handle_quietly(CancelWait(client=client))

    async def _end_linger(self, client: str, token: object) -> None:
        await trio.sleep(WAIT_LINGER)
        if self._lingering.get(client) is not token:
            return  # it came back
        del self._lingering[client]
        if self._waiters.get(client):
            return
        terminal = self.pool.terminal_of(client)
        if terminal is not None:  # assigned while it was away, never claimed: free again
            self.handle_quietly(
                Unassign(client=client, name=terminal.name, instance=terminal.instance)
            )
        else:
            self.handle_quietly(CancelWait(client=client))

    @staticmethod
    def _first_answer(client: str, decisions: list[Decision]) -> Assign | Wait | Reject:
        for decision in decisions:
            if isinstance(decision, Assign | Wait | Reject) and decision.client == client:
                return decision
        raise AssertionError("the pool answers every allocation")  # pragma: no cover

    def token_for(self, assign: Assign) -> str:
        claims = TokenClaims(
            terminal=assign.name,
            instance=assign.instance,
            client=assign.client,
            expires_at=int(time.time()) + self.config.token_ttl,
        )
        return sign_token(self.config.signing_key, claims)

    @property
    def following(self) -> bool:
        """A standby manager: synced, but another one holds the lease."""
        return bool(getattr(self.backend, "following", False))

    async def release(self, client_id: str) -> None:
        """Give the client's terminal back; returns once that is durable. Raises
        :class:`Unconfirmed` before, and :class:`UnknownClient` if it held none (and
        has no give-back waiting to be confirmed)."""
        client = client_hash(self.config.secret, client_id)
        try:
            await self.handle_and_apply(Release(client=client), client=client)
        except UnknownClient:
            if not await self.confirm(client=client):
                raise

    async def recycle(self, name: str, instance: str) -> None:
        """Terminal ``name`` (``instance``) asks to be recycled; returns once durable.
        Raises :class:`Unconfirmed` before, and the pool's errors."""
        if not await self.confirm(instance=instance):
            await self.handle_and_apply(Recycle(name=name, instance=instance))

    def describe(self, name: str) -> dict[str, Any] | None:
        terminal = self.pool.terminals.get(name)
        if terminal is None:
            return None
        return {
            "name": terminal.name,
            "state": terminal.state.value,
            "address": terminal.address,
            "instance": terminal.instance,
            "owned": terminal.owner is not None,
            "connected": terminal.connected,
        }


__all__ = [
    "CLAIM_ATTEMPTS",
    "LOCAL_WAIT_TIMEOUT",
    "RETRY_AFTER_CLAIM",
    "RETRY_AFTER_NOT_LEADER",
    "RETRY_AFTER_SLOW",
    "TICK_SECONDS",
    "WAIT_LINGER",
    "Manager",
]
