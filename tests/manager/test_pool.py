"""The pool state machine: table checks over every (state, event) pair, and a
hypothesis state machine of random interleavings with a simulated backend."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from webterm.manager.pool import (
    TRANSITIONS,
    Allocate,
    Assign,
    CancelWait,
    Connection,
    Decision,
    IllegalTransition,
    Listed,
    Pool,
    Recycle,
    Reject,
    Release,
    Restart,
    ScaleTo,
    State,
    TerminalAppeared,
    TerminalFailed,
    TerminalGone,
    TerminalReady,
    Tick,
    UnknownClient,
    UnknownTerminal,
    Wait,
)


def ready_pool(spares: int = 2, max_terminals: int = 4) -> Pool:
    pool = Pool(spares=spares, max_terminals=max_terminals, stale_after=100)
    assert pool.handle(Tick(now=0)) == [ScaleTo(replicas=spares)]
    for i in range(spares):
        pool.handle(TerminalAppeared(name=f"terminal-{i}", instance=f"u{i}"))
        pool.handle(TerminalReady(name=f"terminal-{i}", instance=f"u{i}", address=f"a{i}"))
    return pool


def test_allocate_reconnect_and_spares() -> None:
    pool = ready_pool()
    decisions = pool.handle(Allocate(client="c1", now=1))
    assert decisions[0] == Assign(
        client="c1", name="terminal-0", instance="u0", address="a0", reconnect=False
    )
    assert ScaleTo(replicas=3) in decisions  # one in use + two spares
    again = pool.handle(Allocate(client="c1", now=2))
    assert again[0] == Assign(
        client="c1", name="terminal-0", instance="u0", address="a0", reconnect=True
    )


def test_cap_rejects_with_retry_after_and_waiters_get_assigned_when_ready() -> None:
    pool = ready_pool(spares=1, max_terminals=2)
    assert isinstance(pool.handle(Allocate(client="c1", now=1))[0], Assign)
    assert pool.handle(Allocate(client="c2", now=1))[0] == Wait(client="c2")
    reject = pool.handle(Allocate(client="c3", now=1))[0]
    assert isinstance(reject, Reject)
    assert reject.retry_after > 0
    pool.handle(TerminalAppeared(name="terminal-1", instance="u1"))
    decisions = pool.handle(TerminalReady(name="terminal-1", instance="u1", address="a1"))
    assert (
        Assign(client="c2", name="terminal-1", instance="u1", address="a1", reconnect=False)
        in decisions
    )


def test_recycled_terminal_is_free_only_with_a_new_instance() -> None:
    pool = ready_pool(spares=1, max_terminals=1)
    pool.handle(Allocate(client="c1", now=1))
    assert pool.handle(Recycle(name="terminal-0")) == [Restart(name="terminal-0", instance="u0")]
    # the old pod still answers while it terminates: it must not become free
    pool.handle(TerminalReady(name="terminal-0", instance="u0", address="a0"))
    assert pool.terminals["terminal-0"].state is State.RECYCLING
    assert pool.handle(Allocate(client="c2", now=2)) == [Wait(client="c2")]
    pool.handle(TerminalGone(name="terminal-0", instance="u0"))
    pool.handle(TerminalAppeared(name="terminal-0", instance="u0b"))
    decisions = pool.handle(TerminalReady(name="terminal-0", instance="u0b", address="a0b"))
    assert decisions[0] == Assign(
        client="c2", name="terminal-0", instance="u0b", address="a0b", reconnect=False
    )


def test_a_recycle_keeps_the_warm_spare_until_the_recycled_terminal_is_back() -> None:
    pool = ready_pool(spares=1, max_terminals=3)
    pool.handle(Allocate(client="c1", now=1))  # terminal-0; terminal-1 becomes the spare
    pool.handle(TerminalAppeared(name="terminal-1", instance="u1"))
    pool.handle(TerminalReady(name="terminal-1", instance="u1", address="a1"))
    # terminal-1 is the only ready spare: no scale-down while terminal-0 restarts
    assert pool.handle(Recycle(name="terminal-0")) == [Restart(name="terminal-0", instance="u0")]
    pool.handle(TerminalGone(name="terminal-0", instance="u0"))
    assert pool.replicas == 2
    pool.handle(TerminalAppeared(name="terminal-0", instance="u0b"))
    # once terminal-0 is back there are two spares for one wanted: the top one goes
    decisions = pool.handle(TerminalReady(name="terminal-0", instance="u0b", address="a0b"))
    assert decisions == [ScaleTo(replicas=1)]
    assert pool.handle(Allocate(client="c2", now=2))[0] == Assign(
        client="c2", name="terminal-0", instance="u0b", address="a0b", reconnect=False
    )


def test_a_newcomer_right_after_a_recycle_gets_the_warm_spare() -> None:
    pool = ready_pool(spares=1, max_terminals=3)
    pool.handle(Allocate(client="c1", now=1))
    pool.handle(TerminalAppeared(name="terminal-1", instance="u1"))
    pool.handle(TerminalReady(name="terminal-1", instance="u1", address="a1"))
    pool.handle(Recycle(name="terminal-0"))
    assert pool.handle(Allocate(client="c2", now=2))[0] == Assign(
        client="c2", name="terminal-1", instance="u1", address="a1", reconnect=False
    )


def test_release_and_stale_terminals_are_recycled_and_pool_scales_down_from_the_top() -> None:
    pool = ready_pool(spares=1, max_terminals=3)
    pool.handle(Allocate(client="c1", now=1))  # terminal-0, scale to 2
    assert pool.replicas == 2
    with pytest.raises(UnknownClient):
        pool.handle(Release(client="nobody"))
    assert Restart(name="terminal-0", instance="u0") in pool.handle(Release(client="c1"))
    assert pool.replicas == 1  # terminal-1 (top, never used) goes; terminal-0 is recycling
    pool2 = ready_pool(spares=1, max_terminals=3)
    pool2.handle(Allocate(client="c1", now=0))
    assert pool2.handle(Tick(now=50)) == []
    decisions = pool2.handle(Tick(now=101))
    assert Restart(name="terminal-0", instance="u0") in decisions


def test_connected_terminals_are_not_stale() -> None:
    pool = ready_pool(spares=1, max_terminals=3)
    pool.handle(Allocate(client="c1", now=0))
    pool.handle(Connection(name="terminal-0", connected=True, now=1))
    assert not [d for d in pool.handle(Tick(now=1000)) if isinstance(d, Restart)]
    pool.handle(Connection(name="terminal-0", connected=False, now=1000))
    assert Restart(name="terminal-0", instance="u0") in pool.handle(Tick(now=1101))


def test_a_late_report_about_a_scaled_away_terminal_is_refused() -> None:
    # The client's shell exits while the spare is still starting: the pool scales the
    # spare away, and its Ready, sent before the backend stopped it, arrives after.
    pool = Pool(spares=1, max_terminals=2)
    pool.handle(Tick(now=0))
    pool.handle(TerminalAppeared(name="terminal-0", instance="u0"))
    pool.handle(TerminalReady(name="terminal-0", instance="u0", address="a0"))
    pool.handle(Allocate(client="c1", now=1))
    pool.handle(TerminalAppeared(name="terminal-1", instance="u1"))
    assert ScaleTo(replicas=1) in pool.handle(Recycle(name="terminal-0", instance="u0"))
    with pytest.raises(UnknownTerminal):
        pool.handle(TerminalReady(name="terminal-1", instance="u1", address="a1"))
    assert "terminal-1" not in pool.terminals
    # the client waits for terminal-0's fresh instance instead of being given terminal-1
    assert pool.handle(Allocate(client="c1", now=2))[0] == Wait(client="c1")
    pool.handle(TerminalAppeared(name="terminal-0", instance="v0"))
    decisions = pool.handle(TerminalReady(name="terminal-0", instance="v0", address="b0"))
    assert Assign(client="c1", name="terminal-0", instance="v0", address="b0",
                  reconnect=False) in decisions  # fmt: skip


def test_restarted_manager_rebuilds_ownership_from_the_backend() -> None:
    pool = Pool(spares=1, max_terminals=4)
    pool.adopt_replicas(2)
    pool.handle(TerminalReady(name="terminal-0", instance="u0", address="a0", owner="c1"))
    pool.handle(TerminalReady(name="terminal-1", instance="u1", address="a1"))
    decisions = pool.handle(Allocate(client="c1", now=5))
    assert decisions[0] == Assign(
        client="c1", name="terminal-0", instance="u0", address="a0", reconnect=True
    )


def test_a_restarted_manager_scales_down_only_once_it_knows_every_terminal() -> None:
    pool = Pool(spares=1, max_terminals=4)
    pool.adopt_replicas(2)
    # before the backend's first list arrives, terminal-1 may well be somebody's
    assert pool.handle(Tick(now=0)) == []
    assert pool.handle(TerminalReady(name="terminal-0", instance="u0", address="a0")) == []
    pool.handle(TerminalReady(name="terminal-1", instance="u1", address="a1", owner="c1"))
    assert pool.handle(Listed(present=frozenset({"terminal-0", "terminal-1"}))) == []
    assert pool.terminal_of("c1") is pool.terminals["terminal-1"]
    # a restart with more than it needs: the surplus goes once the list is in
    pool = Pool(spares=1, max_terminals=4)
    pool.adopt_replicas(3)
    for ordinal in range(3):
        pool.handle(TerminalReady(name=f"terminal-{ordinal}", instance=f"u{ordinal}", address="a"))
    present = frozenset(pool.terminals)
    assert pool.handle(Listed(present=present)) == [ScaleTo(replicas=1)]


def test_listed_reconciles_missing_terminals() -> None:
    pool = ready_pool(spares=2, max_terminals=4)
    pool.handle(Allocate(client="c1", now=1))
    pool.handle(Listed(present=frozenset({"terminal-1"})))
    assert pool.terminal_of("c1") is None
    assert pool.terminals["terminal-0"].state is State.STARTING


def test_foreign_names_and_unknown_terminals_change_nothing() -> None:
    pool = ready_pool()
    before = {n: t.state for n, t in pool.terminals.items()}
    with pytest.raises(UnknownTerminal):
        pool.handle(TerminalReady(name="../etc", instance="x", address="y"))
    with pytest.raises(UnknownTerminal):
        pool.handle(Recycle(name="terminal-99"))
    assert {n: t.state for n, t in pool.terminals.items()} == before


TERMINAL_EVENTS = [
    TerminalAppeared(name="terminal-0", instance="u0"),
    TerminalReady(name="terminal-0", instance="u0", address="a"),
    TerminalReady(name="terminal-0", instance="new", address="b"),
    TerminalGone(name="terminal-0", instance="u0"),
    TerminalFailed(name="terminal-0", instance="u0"),
    Recycle(name="terminal-0"),
    Connection(name="terminal-0", connected=True, now=1),
    Connection(name="terminal-0", connected=False, now=1),
]


def pool_in(state: State) -> Pool:
    pool = ready_pool(spares=1, max_terminals=2)
    terminal = pool.terminals["terminal-0"]
    if state is State.IN_USE:
        pool.handle(Allocate(client="c", now=0))
    elif state is State.RECYCLING:
        pool.handle(Recycle(name="terminal-0"))
    elif state is State.FAILED:
        pool.handle(TerminalFailed(name="terminal-0", instance="u0"))
    elif state is State.STARTING:
        pool.handle(TerminalGone(name="terminal-0", instance="u0"))
        pool.handle(TerminalAppeared(name="terminal-0", instance="u0"))
    assert terminal.state is state
    return pool


@given(st.sampled_from(list(State)), st.sampled_from(TERMINAL_EVENTS))
def test_every_state_event_pair_is_handled_or_refused_without_change(
    state: State, event: object
) -> None:
    pool = pool_in(state)
    snapshot = (pool.terminals["terminal-0"].state, dict(pool.owners), pool.replicas)
    if (state, type(event)) in TRANSITIONS:
        pool.handle(event)  # type: ignore[arg-type]
        assert pool.terminals["terminal-0"].state in State
    else:
        with pytest.raises(IllegalTransition):
            pool.handle(event)  # type: ignore[arg-type]
        assert (pool.terminals["terminal-0"].state, dict(pool.owners), pool.replicas) == snapshot


CLIENTS = [f"client-{i}" for i in range(8)]


class PoolMachine(RuleBasedStateMachine):
    """A pool driven by random requests and a backend that carries out its decisions
    in random order and at random times."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = Pool(spares=2, max_terminals=5, stale_after=10)
        self.now = 0.0
        self.uids = itertools.count()
        self.todo: list[tuple[str, str, str]] = []  # backend work: (kind, name, instance)
        self.live: dict[str, str] = {}  # name -> instance the "backend" runs now
        self.holders: dict[tuple[str, str], set[str]] = {}  # (name, instance) -> clients
        self.assigned: dict[str, str] = {}  # client -> name from the last Assign
        self.apply(Tick(now=0))

    def apply(self, event: object) -> list[Decision]:
        try:
            decisions = self.pool.handle(event)  # type: ignore[arg-type]
        except (IllegalTransition, UnknownTerminal, UnknownClient):
            return []
        for decision in decisions:
            if isinstance(decision, Assign):
                terminal = self.pool.terminals[decision.name]
                assert terminal.state is State.IN_USE
                assert decision.instance == self.live.get(decision.name), "assigned a dead instance"
                ordinal = self.pool.ordinal_of(decision.name)
                assert ordinal < self.pool.replicas, "assigned a terminal being scaled away"
                holders = self.holders.setdefault((decision.name, decision.instance), set())
                holders.add(decision.client)
                assert len(holders) == 1, f"{decision.name}/{decision.instance} given to {holders}"
                if decision.reconnect:
                    assert self.assigned.get(decision.client) == decision.name
                self.assigned[decision.client] = decision.name
            elif isinstance(decision, ScaleTo):
                assert decision.replicas <= self.pool.max_terminals
                for ordinal in range(decision.replicas):
                    name = self.pool.name_of(ordinal)
                    if name not in self.live:
                        self.todo.append(("start", name, ""))
                for name in [n for n in self.live if self.pool.ordinal_of(n) >= decision.replicas]:
                    self.todo.append(("stop", name, self.live[name]))
            elif isinstance(decision, Restart):
                self.todo.append(("restart", decision.name, decision.instance))
        return decisions

    @rule(data=st.data())
    def backend_step(self, data: st.DataObject) -> None:
        if not self.todo:
            return
        kind, name, instance = self.todo.pop(data.draw(st.integers(0, len(self.todo) - 1)))
        if kind in ("stop", "restart") and self.live.get(name) == instance:
            del self.live[name]
            self.apply(TerminalGone(name=name, instance=instance))
            if kind == "stop" and self.pool.ordinal_of(name) < self.pool.replicas:
                # a stale scale-down: the controller deleted the pod just before the pool
                # scaled back up, and now brings it back, as a StatefulSet does
                self.todo.append(("start", name, ""))
        if kind == "start" or (
            kind == "restart" and self.pool.ordinal_of(name) < self.pool.replicas
        ):
            if name in self.live or self.pool.ordinal_of(name) >= self.pool.replicas:
                return
            uid = f"uid-{next(self.uids)}"
            self.live[name] = uid
            self.apply(TerminalAppeared(name=name, instance=uid))
            self.todo.append(("report", name, uid))  # readiness comes later, maybe too late
        if kind == "report" and self.live.get(name) == instance:
            # sent whatever the pool decided meanwhile, as a backend's report may be
            if data.draw(st.integers(0, 9)) == 0:
                self.apply(TerminalFailed(name=name, instance=instance))
            else:
                self.apply(
                    TerminalReady(name=name, instance=instance, address=f"{name}:{instance}")
                )

    @rule(client=st.sampled_from(CLIENTS))
    def allocate(self, client: str) -> None:
        decisions = self.apply(Allocate(client=client, now=self.now))
        answer = [
            d for d in decisions if isinstance(d, Assign | Wait | Reject) and d.client == client
        ]
        assert answer, "every request gets an answer"
        if isinstance(answer[0], Reject):
            assert (
                self.pool.counts[State.IN_USE] + len(self.pool.waiting) >= self.pool.max_terminals
            )

    @rule(client=st.sampled_from(CLIENTS))
    def release(self, client: str) -> None:
        self.apply(Release(client=client))

    @rule(client=st.sampled_from(CLIENTS))
    def give_up_waiting(self, client: str) -> None:
        self.apply(CancelWait(client=client))

    @rule(ordinal=st.integers(0, 5))
    def recycle(self, ordinal: int) -> None:
        self.apply(Recycle(name=f"terminal-{ordinal}"))

    @rule(ordinal=st.integers(0, 5), connected=st.booleans())
    def connection(self, ordinal: int, connected: bool) -> None:
        self.apply(Connection(name=f"terminal-{ordinal}", connected=connected, now=self.now))

    @rule(dt=st.floats(0, 8))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.apply(Tick(now=self.now))

    @rule()
    def relist(self) -> None:
        self.apply(Listed(present=frozenset(self.live)))

    @invariant()
    def one_owner_per_terminal_and_consistent_indexes(self) -> None:
        owners = [t.owner for t in self.pool.terminals.values() if t.owner is not None]
        assert len(owners) == len(set(owners))
        for client, name in self.pool.owners.items():
            terminal = self.pool.terminals[name]
            assert terminal.owner == client
            assert terminal.state is State.IN_USE
        assert not (set(self.pool.waiting) & set(self.pool.owners))

    @invariant()
    def never_above_the_cap(self) -> None:
        assert self.pool.replicas <= self.pool.max_terminals
        assert self.pool.counts[State.IN_USE] <= self.pool.max_terminals
        assert sum(self.pool.counts.values()) == len(self.pool.terminals)

    @precondition(lambda self: not self.todo)
    @invariant()
    def settled_pool_meets_its_spares_target(self) -> None:
        free = self.pool.counts[State.FREE]
        in_use = self.pool.counts[State.IN_USE]
        assert self.pool.counts[State.FAILED] == 0  # every failure was restarted
        assert free >= min(self.pool.spares, self.pool.max_terminals - in_use)
        assert not (free and self.pool.waiting)  # nobody waits while a terminal is free


TestPoolMachine = PoolMachine.TestCase
TestPoolMachine.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)


def test_an_owner_reported_by_the_cluster_wins_over_our_own_assignment() -> None:
    pool = ready_pool(spares=2, max_terminals=4)
    pool.handle(Allocate(client="ours", now=1))  # terminal-0, in memory
    # another manager claimed terminal-0 first (its patch won; ours got a 409)
    pool.handle(TerminalReady(name="terminal-0", instance="u0", address="a0", owner="theirs"))
    assert pool.terminal_of("theirs") is pool.terminals["terminal-0"]
    assert pool.terminal_of("ours") is None
    again = pool.handle(Allocate(client="ours", now=2))[0]
    assert isinstance(again, Assign)
    assert again.name == "terminal-1"


def test_a_refused_event_leaves_the_clock_alone() -> None:
    pool = ready_pool()
    pool.handle(Tick(now=5))
    pool.handle(TerminalGone(name="terminal-0", instance="u0"))  # STARTING again
    with pytest.raises(IllegalTransition):
        pool.handle(Connection(name="terminal-0", connected=False, now=99))
    with pytest.raises(UnknownTerminal):
        pool.handle(Connection(name="terminal-7", connected=False, now=99))
    assert pool.now == 5


def test_a_connection_report_from_an_old_instance_is_ignored() -> None:
    pool = ready_pool()
    pool.handle(Allocate(client="c1", now=1))
    pool.handle(Connection(name="terminal-0", instance="gone", connected=True, now=2))
    assert not pool.terminals["terminal-0"].connected
    assert Restart(name="terminal-0", instance="u0") in pool.handle(Tick(now=101))


def test_releasing_a_waiting_client_withdraws_its_wait() -> None:
    pool = ready_pool(spares=1, max_terminals=3)
    pool.handle(Allocate(client="c1", now=1))  # the spare is taken, another is starting
    assert pool.handle(Allocate(client="w", now=1))[0] == Wait(client="w")
    assert pool.handle(Release(client="w")) == [ScaleTo(replicas=2)]  # one fewer wanted
    assert "w" not in pool.waiting
    with pytest.raises(UnknownClient):
        pool.handle(Release(client="w"))


@given(st.sampled_from(list(State)), st.sampled_from(TERMINAL_EVENTS))
def test_a_step_ends_in_its_named_state(state: State, event: object) -> None:
    step = TRANSITIONS.get((state, type(event)))
    if step is None or step.to is None:
        return
    pool = pool_in(state)
    pool.handle(event)  # type: ignore[arg-type]
    assert pool.terminals["terminal-0"].state is step.to
