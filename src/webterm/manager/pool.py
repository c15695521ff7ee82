"""The terminal pool: a pure state machine. Events in, decisions out; no I/O, no clock.

Theory of operation
-------------------
Terminals are named ``<prefix>-<ordinal>`` like StatefulSet pods, and both backends
(local processes, Kubernetes pods) follow the same rules: the pool asks for a number
of terminals with :class:`ScaleTo`, the backend creates ordinals ``0..N-1`` and reports
them with :class:`TerminalAppeared` / :class:`TerminalReady` / :class:`TerminalGone`.
A terminal moves through these states::

    STARTING ──ready──▶ FREE ──allocate──▶ IN_USE ──recycle/release/stale──▶ RECYCLING
        ▲                 │                                                     │
        └──── gone ◀──────┴───────────── (the backend restarts it) ◀────────────┘
    STARTING ──failed──▶ FAILED ──(restart)──▶ RECYCLING

A recycled terminal becomes FREE again only when it reports Ready with an instance id
(pod UID) different from the recycled one: the old pod may still be reporting Ready
while it terminates, and must never be handed out again.

Transitions are data (:data:`TRANSITIONS`): ``(state, event type) → Step(to, apply)``,
where ``to`` names the state the terminal ends in when it is fixed, and ``apply`` does
the rest (and may ignore a stale report: a late one about an instance already gone). An
event with no entry raises :class:`IllegalTransition` naming the event, terminal and
state, and changes nothing: not even the pool's clock (:attr:`Pool.now`). Client-level
events (:class:`Allocate`, :class:`Release`, :class:`CancelWait`, :class:`Tick`,
:class:`Listed`) are not per-terminal and are handled directly.

Capacity: the pool wants ``in_use + waiting + spares`` terminals, never more than
``max_terminals``; it scales down only from the top ordinal and only while that
terminal is not in use, so nobody's session is killed to scale down. A terminal scaled
away is forgotten at once, and a late report about it (sent before the backend carried
out the ScaleTo) is refused: it is never handed out while it is being deleted. Every lookup is
a dict or a heap: 50,000 events per second with 10,000 terminals is the design load.

Longer than the other modules (~650 lines) on purpose: it is one state machine — its
events, decisions, transition table and the handlers the table names — and reads (and
is tested) as one piece; split, every part would need the others to be understood.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Final

from webterm.errors import WebtermError

__all__ = [
    "Allocate",
    "Assign",
    "CancelWait",
    "Connection",
    "Decision",
    "Event",
    "IllegalTransition",
    "Listed",
    "OfClient",
    "OfInstance",
    "Pool",
    "PoolError",
    "Recycle",
    "Reject",
    "Release",
    "Restart",
    "ScaleTo",
    "State",
    "Step",
    "Terminal",
    "TerminalAppeared",
    "TerminalFailed",
    "TerminalGone",
    "TerminalReady",
    "Tick",
    "Unassign",
    "UnknownClient",
    "UnknownTerminal",
    "Wait",
]

RETRY_AFTER_FULL: Final = 15
"""Seconds a client at the cap is told to wait: about the time a recycle takes, and
long enough that hundreds of waiting pages do not hammer the manager."""


class State(StrEnum):
    STARTING = "starting"
    FREE = "free"
    IN_USE = "in-use"
    RECYCLING = "recycling"
    FAILED = "failed"


# --- events -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OfClient:
    """Of one client (a client hash, never the raw id)."""

    client: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OfInstance:
    """Of one instance (pod UID) of terminal ``name``: the fields events and decisions
    about a terminal's instance share."""

    name: str
    instance: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminalReady(OfInstance):
    """A terminal answers at ``address``. ``owner`` (a client hash) is set when the
    backend found the terminal already allocated, e.g. on a restarted manager."""

    address: str
    owner: str | None = None
    allocated_at: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminalAppeared(OfInstance):
    """The backend created (or found) a terminal that is not ready yet."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminalGone(OfInstance):
    """The terminal (this instance of it) no longer exists."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminalFailed(OfInstance):
    """The terminal did not become ready in time, or crashed."""

    reason: str = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Recycle:
    """End this terminal's session and give it back fresh (shell exit, idle, operator)."""

    name: str
    instance: str | None = None  # None: whatever instance is current


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    """The terminal server reports a browser attached (True) or detached (False)."""

    name: str
    connected: bool
    now: float
    instance: str | None = None  # the reporting instance; None: whatever is current


@dataclass(frozen=True, slots=True, kw_only=True)
class Allocate(OfClient):
    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Release(OfClient):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelWait(OfClient):
    """A waiting client gave up (its request hit its deadline)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """Time passes: in-use terminals unconnected for ``stale_after`` are recycled."""

    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Listed:
    """A full list of the terminals that exist: anything else the pool knows is gone."""

    present: frozenset[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Unassign(OfClient):
    """Undo an :class:`Assign` the backend could not record (its ownership write
    failed): the terminal is free again, the client holds nothing. Ignored unless
    ``client`` still holds exactly this terminal instance."""

    name: str
    instance: str


Event = (
    TerminalAppeared
    | TerminalReady
    | TerminalGone
    | TerminalFailed
    | Recycle
    | Connection
    | Allocate
    | Release
    | CancelWait
    | Tick
    | Listed
    | Unassign
)


# --- decisions --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Assign(OfClient):
    """Give ``client`` this terminal."""

    name: str
    instance: str
    address: str
    reconnect: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Wait(OfClient):
    """No terminal is free but one is coming: ``client`` waits for a later Assign."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject(OfClient):
    """Every terminal is taken and the pool is at its cap."""

    reason: str
    retry_after: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleTo:
    """Have terminals ``0..replicas-1``."""

    replicas: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Restart(OfInstance):
    """Destroy this instance; the backend brings a fresh one under the same name."""


Decision = Assign | Wait | Reject | ScaleTo | Restart


# --- errors -------------------------------------------------------------------------------


class PoolError(WebtermError):
    """Base of the pool's errors. The pool's state is unchanged after any of them."""

    error_status_hint = 409


class IllegalTransition(PoolError):
    def __init__(self, event: Event, name: str, state: State) -> None:
        super().__init__(f"{type(event).__name__} is not allowed for {name} in state {state}")
        self.event, self.name, self.state = event, name, state


class UnknownTerminal(PoolError):
    pass


class UnknownClient(PoolError):
    error_status_hint = 404


# --- state ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Terminal:
    name: str
    ordinal: int
    state: State = State.STARTING
    instance: str = ""
    address: str = ""
    owner: str | None = None
    allocated_at: float = 0.0
    connected: bool = False
    disconnected_since: float = 0.0
    retired_instances: set[str] = field(default_factory=set)  # never free again


TerminalEvent = (
    TerminalAppeared | TerminalReady | TerminalGone | TerminalFailed | Recycle | Connection
)
Handler = Callable[["Pool", Terminal, TerminalEvent], "list[Decision] | None"]
"""Applies an event to a terminal; returns the decisions, or None when the event is a
stale report that changes nothing (then the step's target state is not entered)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One entry of :data:`TRANSITIONS`: the state a terminal ends in (None: it depends
    on the event, see ``apply``) and what else happens."""

    to: State | None
    apply: Handler


class Pool:
    """See the module docstring. Feed events to :meth:`handle`; carry out the decisions."""

    def __init__(
        self,
        *,
        prefix: str = "terminal",
        spares: int = 2,
        max_terminals: int = 20,
        stale_after: float = 300.0,
    ) -> None:
        if not 0 <= spares <= max_terminals or max_terminals < 1:
            raise ValueError("need 0 <= spares <= max_terminals and max_terminals >= 1")
        self.prefix = prefix
        self.spares = spares
        self.max_terminals = max_terminals
        self.stale_after = stale_after
        self.terminals: dict[str, Terminal] = {}
        self.owners: dict[str, str] = {}  # client hash -> terminal name
        self.waiting: OrderedDict[str, None] = OrderedDict()  # FIFO of client hashes
        self.replicas = 0  # what we last asked the backend for
        self.synced = True  # False from adopt_replicas until the backend's first Listed
        self._free: list[tuple[int, str]] = []  # heap of (ordinal, name); lazily cleaned
        self._unconnected: set[str] = set()  # in-use terminals with no browser attached
        self.counts: dict[State, int] = dict.fromkeys(State, 0)
        self.now = 0.0  # the latest time an event carried

    # --- queries ----------------------------------------------------------------------------

    def name_of(self, ordinal: int) -> str:
        return f"{self.prefix}-{ordinal}"

    def ordinal_of(self, name: str) -> int:
        prefix, _, number = name.rpartition("-")
        if prefix != self.prefix or not number.isdigit():
            raise UnknownTerminal(f"{name!r} is not one of {self.prefix}-<ordinal>")
        return int(number)

    def terminal_of(self, client: str) -> Terminal | None:
        name = self.owners.get(client)
        return None if name is None else self.terminals[name]

    def desired_replicas(self) -> int:
        wanted = self.counts[State.IN_USE] + len(self.waiting) + self.spares
        return min(self.max_terminals, wanted)

    # --- the one entry point -------------------------------------------------------------------

    def handle(self, event: Event) -> list[Decision]:
        """Apply ``event``; return what the backend and the API must do about it.
        An event that is refused (a :class:`PoolError`) changes nothing."""
        apply = self._validate(event)
        now = getattr(event, "now", None)
        if now is not None:
            self.now = max(self.now, now)
        return apply() + self._rescale()

    def _validate(self, event: Event) -> Callable[[], list[Decision]]:
        """What applying ``event`` does, or the :class:`PoolError` that refuses it;
        nothing is changed before the event is known to be allowed."""
        if isinstance(event, Allocate):
            return partial(self._allocate, event)
        if isinstance(event, Release):
            if event.client not in self.waiting and event.client not in self.owners:
                raise UnknownClient("this client holds no terminal")
            return partial(self._release, event)
        if isinstance(event, CancelWait):
            return partial(self._cancel_wait, event)
        if isinstance(event, Tick):
            return partial(self._tick, event)
        if isinstance(event, Listed):
            return partial(self._listed, event)
        if isinstance(event, Unassign):
            return partial(self._unassign, event)
        terminal = self._terminal_for(event)
        step = TRANSITIONS.get((terminal.state, type(event)))
        if step is None:
            raise IllegalTransition(event, terminal.name, terminal.state)
        return partial(self._step, step, terminal, event)

    def _step(self, step: Step, terminal: Terminal, event: TerminalEvent) -> list[Decision]:
        decisions = step.apply(self, terminal, event)
        if decisions is None:
            return []  # a stale report: nothing changes
        if step.to is not None and terminal.state is not step.to:
            self._set_state(terminal, step.to)
        return decisions

    def _terminal_for(self, event: TerminalEvent) -> Terminal:
        """The terminal ``event`` is about; a first report of a terminal below the
        replicas adds it (STARTING: every report is allowed in that state)."""
        terminal = self.terminals.get(event.name)
        if terminal is not None:
            return terminal
        if isinstance(event, TerminalAppeared | TerminalReady):
            ordinal = self.ordinal_of(event.name)  # raises for foreign names: no change made
            if ordinal >= self.replicas:
                # scaled away (a report sent before the backend carried out ScaleTo):
                # never handed out while it is being deleted
                raise UnknownTerminal(f"{event.name} is above the {self.replicas} replicas")
            terminal = Terminal(event.name, ordinal)
            self.terminals[event.name] = terminal
            self.counts[State.STARTING] += 1
            return terminal
        raise UnknownTerminal(f"no terminal named {event.name!r}")

    def _take(self, terminal: Terminal, client: str, at: float) -> None:
        """``client`` holds ``terminal`` from ``at``; no browser is attached yet."""
        terminal.owner = client
        terminal.allocated_at = at
        terminal.connected = False
        terminal.disconnected_since = at
        self.owners[client] = terminal.name
        if terminal.state is not State.IN_USE:
            self._set_state(terminal, State.IN_USE)
        self._unconnected.add(terminal.name)

    def _set_state(self, terminal: Terminal, state: State) -> None:
        self.counts[terminal.state] -= 1
        self.counts[state] += 1
        terminal.state = state
        if state is State.FREE:
            heapq.heappush(self._free, (terminal.ordinal, terminal.name))
        if state is not State.IN_USE:
            self._unconnected.discard(terminal.name)

    def _disown(self, terminal: Terminal) -> None:
        if terminal.owner is not None:
            self.owners.pop(terminal.owner, None)
            terminal.owner = None

    # --- client events ---------------------------------------------------------------------

    def _allocate(self, event: Allocate) -> list[Decision]:
        client = event.client
        owned = self.terminal_of(client)
        if owned is not None:
            return [self._assign(owned, client, reconnect=True)]
        free = self._pop_free()
        if free is not None:
            self._take(free, client, event.now)
            return [self._assign(free, client, reconnect=False)]
        if client in self.waiting:
            return [Wait(client=client)]
        if self.counts[State.IN_USE] + len(self.waiting) < self.max_terminals:
            # a terminal is starting, recycling, or may still be added for this client
            self.waiting[client] = None
            return [Wait(client=client)]
        return [
            Reject(client=client, reason="all terminals are busy", retry_after=RETRY_AFTER_FULL)
        ]

    def _assign(self, terminal: Terminal, client: str, *, reconnect: bool) -> Assign:
        return Assign(
            client=client,
            name=terminal.name,
            instance=terminal.instance,
            address=terminal.address,
            reconnect=reconnect,
        )

    def _pop_free(self) -> Terminal | None:
        while self._free:
            _, name = heapq.heappop(self._free)
            terminal = self.terminals.get(name)
            if terminal is not None and terminal.state is State.FREE and terminal.owner is None:
                return terminal
        return None

    def _release(self, event: Release) -> list[Decision]:
        if event.client in self.waiting:
            del self.waiting[event.client]  # it stops waiting; it held nothing
            return []
        terminal = self.terminal_of(event.client)
        assert terminal is not None  # checked by _validate
        return self._recycle(terminal)

    def _recycle(self, terminal: Terminal) -> list[Decision]:
        return self._step(
            TRANSITIONS[terminal.state, Recycle], terminal, Recycle(name=terminal.name)
        )

    def _cancel_wait(self, event: CancelWait) -> list[Decision]:
        self.waiting.pop(event.client, None)
        return []

    def _unassign(self, event: Unassign) -> list[Decision]:
        terminal = self.terminal_of(event.client)
        if (
            terminal is None
            or terminal.name != event.name
            or terminal.instance != event.instance
            or terminal.state is not State.IN_USE
        ):
            return []
        self._disown(terminal)
        self._set_state(terminal, State.FREE)
        return []

    def _tick(self, event: Tick) -> list[Decision]:
        decisions: list[Decision] = []
        for name in list(self._unconnected):
            terminal = self.terminals[name]
            if event.now - terminal.disconnected_since >= self.stale_after:
                decisions += self._recycle(terminal)
        return decisions

    def _listed(self, event: Listed) -> list[Decision]:
        self.synced = True
        decisions: list[Decision] = []
        for name in [n for n in self.terminals if n not in event.present]:
            terminal = self.terminals[name]
            gone = TerminalGone(name=name, instance=terminal.instance)
            decisions += self._step(TRANSITIONS[terminal.state, TerminalGone], terminal, gone)
        return decisions

    # --- capacity --------------------------------------------------------------------------

    def _rescale(self) -> list[Decision]:
        decisions: list[Decision] = []
        # a free terminal and a waiting client never coexist
        while self.waiting and (free := self._pop_free()) is not None:
            client, _ = self.waiting.popitem(last=False)
            self._take(free, client, self.now)
            decisions.append(self._assign(free, client, reconnect=False))
        target = self.desired_replicas()
        if target > self.replicas:
            self.replicas = target
            decisions.append(ScaleTo(replicas=target))
        elif target < self.replicas and self.synced:
            replicas = self.replicas
            spare = self.counts[State.FREE]
            while replicas > target:
                top = self.terminals.get(self.name_of(replicas - 1))
                if top is not None and top.state in (State.IN_USE, State.RECYCLING):
                    break
                if top is not None and top.state is State.FREE:
                    if spare <= self.spares:
                        break  # a warm spare stays until a recycled terminal is back
                    spare -= 1
                replicas -= 1
            if replicas < self.replicas:
                for ordinal in range(replicas, self.replicas):
                    self._forget(self.name_of(ordinal))
                self.replicas = replicas
                decisions.append(ScaleTo(replicas=replicas))
        return decisions

    def _forget(self, name: str) -> None:
        terminal = self.terminals.pop(name, None)
        if terminal is not None:
            self.counts[terminal.state] -= 1
            self._disown(terminal)
            self._unconnected.discard(name)

    def adopt_replicas(self, replicas: int) -> None:
        """Start from what the backend already has (a restarted manager). Until the
        backend's first :class:`Listed` the pool does not know who uses those terminals,
        so it does not scale down: the top one may be somebody's."""
        self.replicas = max(0, min(replicas, self.max_terminals))
        self.synced = self.replicas == 0


# --- per-terminal transitions ---------------------------------------------------------------


def _appeared(pool: Pool, terminal: Terminal, event: TerminalEvent) -> list[Decision] | None:
    assert isinstance(event, TerminalAppeared)
    if event.instance != terminal.instance and terminal.state is not State.STARTING:
        # a new instance under the same name: the old one is gone for good
        if terminal.instance:
            terminal.retired_instances.add(terminal.instance)
        pool._disown(terminal)
        pool._set_state(terminal, State.STARTING)
    terminal.instance = event.instance
    return []


def _ready(pool: Pool, terminal: Terminal, event: TerminalEvent) -> list[Decision] | None:
    assert isinstance(event, TerminalReady)
    if event.instance in terminal.retired_instances:
        return None  # the recycled instance, still answering while it terminates
    if terminal.state in (State.IN_USE, State.FREE) and event.instance == terminal.instance:
        terminal.address = event.address
        if event.owner is not None and event.owner != terminal.owner:
            _adopt(pool, terminal, event.owner, event.allocated_at)
        return []
    if terminal.instance and terminal.instance != event.instance:
        terminal.retired_instances.add(terminal.instance)
        pool._disown(terminal)
    terminal.instance, terminal.address = event.instance, event.address
    owner = event.owner
    if owner is not None and owner not in pool.owners:
        pool._take(terminal, owner, event.allocated_at)
        # found allocated (a restarted manager): unconnected as far as we know, from
        # now at the earliest, as _adopt does (both on the pool's clock)
        terminal.disconnected_since = max(event.allocated_at, pool.now)
    else:
        pool._set_state(terminal, State.FREE)
    return []


def _adopt(pool: Pool, terminal: Terminal, owner: str, allocated_at: float) -> None:
    """The cluster says ``owner`` holds this terminal (another manager won a race, or
    we are rebuilding after a restart): believe it."""
    if owner in pool.owners:
        return  # that client already holds another terminal here: keep ours consistent
    pool._disown(terminal)
    pool._take(terminal, owner, allocated_at)
    terminal.disconnected_since = max(allocated_at, pool.now)


def _gone(pool: Pool, terminal: Terminal, event: TerminalEvent) -> list[Decision] | None:
    assert isinstance(event, TerminalGone)
    if event.instance and terminal.instance and event.instance != terminal.instance:
        return None  # an older instance went away; the current one lives on
    if terminal.instance:
        terminal.retired_instances.add(terminal.instance)
    pool._disown(terminal)
    if terminal.ordinal >= pool.replicas:
        pool._forget(terminal.name)
    elif terminal.state is not State.STARTING:
        pool._set_state(terminal, State.STARTING)
    return []


def _restart(pool: Pool, terminal: Terminal, event: TerminalEvent) -> list[Decision] | None:
    """Failed or recycled: this instance is destroyed and never handed out again."""
    assert isinstance(event, TerminalFailed | Recycle)
    if event.instance is not None and event.instance != terminal.instance:
        return None  # a late report about an instance that is already gone
    pool._disown(terminal)
    terminal.retired_instances.add(terminal.instance)
    return [Restart(name=terminal.name, instance=terminal.instance)]


def _connection(pool: Pool, terminal: Terminal, event: TerminalEvent) -> list[Decision] | None:
    assert isinstance(event, Connection)
    if event.instance is not None and event.instance != terminal.instance:
        return None  # a report from an instance that is already gone
    terminal.connected = event.connected
    if event.connected:
        pool._unconnected.discard(terminal.name)
    else:
        terminal.disconnected_since = event.now
        pool._unconnected.add(terminal.name)
    return []


def _nothing(pool: Pool, terminal: Terminal, event: TerminalEvent) -> list[Decision] | None:
    return []


S = State
TRANSITIONS: Final[dict[tuple[State, type], Step]] = {
    **{(state, TerminalAppeared): Step(None, _appeared) for state in State},
    **{(state, TerminalReady): Step(None, _ready) for state in State},  # FREE or IN_USE
    **{(state, TerminalGone): Step(None, _gone) for state in State},  # STARTING or forgotten
    (S.STARTING, TerminalFailed): Step(S.FAILED, _restart),
    (S.FREE, TerminalFailed): Step(S.FAILED, _restart),
    (S.IN_USE, TerminalFailed): Step(S.FAILED, _restart),
    (S.FREE, Recycle): Step(S.RECYCLING, _restart),
    (S.IN_USE, Recycle): Step(S.RECYCLING, _restart),
    (S.RECYCLING, Recycle): Step(S.RECYCLING, _nothing),  # already on its way out
    (S.FAILED, Recycle): Step(S.FAILED, _nothing),
    (S.IN_USE, Connection): Step(S.IN_USE, _connection),
    (S.FREE, Connection): Step(S.FREE, _nothing),  # a late report from before a recycle
    (S.RECYCLING, Connection): Step(S.RECYCLING, _nothing),
}
"""Everything that may happen to a terminal in each state, and the state it ends in.
Missing pairs are illegal: e.g. recycling a terminal that is still starting (nobody has
used it) or a failure report for a terminal that is already being recycled."""
