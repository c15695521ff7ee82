"""Stale allocations under trio's fake clock (``autojump_clock``): a terminal in use with
no browser attached for ``stale_after`` seconds is recycled by the manager's own ticks,
at most one tick late; an attached one is not. The backend is a stand-in that carries
out decisions at once and records when each Restart arrived (virtual seconds)."""

from __future__ import annotations

import itertools

import trio
import trio.testing
from prometheus_client import CollectorRegistry

from tests.credentials import manager_keys
from webterm.config import ManagerConfig
from webterm.manager.app import TICK_SECONDS, Manager
from webterm.manager.pool import (
    Assign,
    Connection,
    Event,
    Restart,
    ScaleTo,
    TerminalAppeared,
    TerminalGone,
    TerminalReady,
)

SECRET = b"stale-test-secret-0123456789"
STALE_AFTER = 300.0


class InstantBackend:
    """Terminals appear, become ready and are replaced the moment they are asked for."""

    def __init__(self) -> None:
        self.events: trio.MemorySendChannel[Event] | None = None
        self.uids = itertools.count()
        self.restarts: list[tuple[float, Restart]] = []
        self.replicas = 0

    async def run(
        self,
        events: trio.MemorySendChannel[Event],
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self.events = events
        task_status.started(0)
        await trio.sleep_forever()

    def _start(self, name: str) -> None:
        assert self.events is not None
        uid = f"uid-{next(self.uids)}"
        self.events.send_nowait(TerminalAppeared(name=name, instance=uid))
        self.events.send_nowait(TerminalReady(name=name, instance=uid, address=f"{name}:1"))

    async def apply(self, decision: ScaleTo | Restart) -> bool:
        if isinstance(decision, ScaleTo):
            for ordinal in range(self.replicas, decision.replicas):
                self._start(f"terminal-{ordinal}")
            self.replicas = decision.replicas
        else:
            self.restarts.append((trio.current_time(), decision))
            assert self.events is not None
            self.events.send_nowait(TerminalGone(name=decision.name, instance=decision.instance))
            self._start(decision.name)
        return True

    async def claim(self, assign: Assign) -> str:
        return assign.address


async def test_an_unattached_allocation_is_recycled_after_stale_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = InstantBackend()
    config = ManagerConfig(
        **{**manager_keys(), "secret": SECRET},  # type: ignore[arg-type]
        spares=1, max_terminals=3, stale_after=STALE_AFTER,
    )  # fmt: skip
    manager = Manager(config, backend, CollectorRegistry())
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        await trio.sleep(10)  # the spare starts
        idle = await manager.allocate("tab:idle")
        attached = await manager.allocate("tab:attached")
        assert isinstance(idle, Assign)
        assert isinstance(attached, Assign)
        allocated = trio.current_time()
        manager.handle(
            Connection(
                name=attached.name, instance=attached.instance, connected=True, now=allocated
            )
        )
        await trio.sleep(STALE_AFTER - 1)
        assert backend.restarts == []  # not yet stale
        await trio.sleep(1 + TICK_SECONDS)
        assert [r for _, r in backend.restarts] == [Restart(name=idle.name, instance=idle.instance)]
        ((recycled_at, _),) = backend.restarts
        assert allocated + STALE_AFTER <= recycled_at <= allocated + STALE_AFTER + TICK_SECONDS
        # the attached one lives on while attached, and goes stale once it is not
        await trio.sleep(10 * STALE_AFTER)
        assert len(backend.restarts) == 1
        detached = trio.current_time()
        manager.handle(
            Connection(
                name=attached.name, instance=attached.instance, connected=False, now=detached
            )
        )
        await trio.sleep(STALE_AFTER + TICK_SECONDS)
        assert backend.restarts[1][1] == Restart(name=attached.name, instance=attached.instance)
        assert (
            detached + STALE_AFTER
            <= backend.restarts[1][0]
            <= detached + STALE_AFTER + TICK_SECONDS
        )
        nursery.cancel_scope.cancel()
