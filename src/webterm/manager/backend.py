"""What every manager backend is: the tiny interface between the pool and the world.

A backend turns the world into pool events (terminals appearing, becoming ready,
going away) and carries out the pool's capacity decisions (:class:`ScaleTo`,
:class:`Restart`). The manager owns one, runs :meth:`Backend.run` in its nursery, and
calls :meth:`Backend.apply` from a single task, so decisions arrive in order.
"""

from __future__ import annotations

from typing import Protocol

import trio

from webterm.errors import WebtermError
from webterm.manager.pool import Assign, Event, Restart, ScaleTo

BackendDecision = ScaleTo | Restart


class ClaimLost(WebtermError):
    """Another manager holds the terminal (``owner``), or it is gone (None)."""

    error_status_hint = 409

    def __init__(self, owner: str | None) -> None:
        super().__init__(f"terminal already claimed by {owner}" if owner else "terminal gone")
        self.owner = owner


class Unconfirmed(WebtermError):
    """A give-back or recycle is decided, but the backend could not make it durable
    yet (the API is away): asked again, the manager answers once it is."""

    error_status_hint = 503


class Backend(Protocol):
    async def run(
        self,
        events: trio.MemorySendChannel[Event],
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Report terminals as events until cancelled. ``task_status.started(replicas)``
        once the current state has been reported in full (after the first list), with
        the number of terminals the backend already runs (0 for a fresh start)."""
        ...

    async def apply(self, decision: BackendDecision) -> bool:
        """Carry out a decision; True once it is *durable* (it survives this process:
        the pod's delete was accepted, the process is stopped), False if it is only
        recorded in memory so far (the backend keeps trying). Errors are the backend's
        to log and retry: the pool's events (a terminal that never appears) tell the
        manager what happened. Applying the same :class:`Restart` again is harmless
        (that is how a give-back asked again learns whether it is durable now)."""
        ...

    async def claim(self, assign: Assign) -> str:
        """Record the assignment where the backend keeps ownership (the pod), and return
        the address the client should dial. Raises :class:`ClaimLost` when another
        manager won the terminal first."""
        ...
