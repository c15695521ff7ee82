"""The manager service: the pool, its backend, and the HTTP API (quart-trio on hypercorn).

Theory of operation
-------------------
:class:`Manager` owns the :class:`~webterm.manager.pool.Pool`. Trio runs one task at a
time and ``Pool.handle`` never awaits, so every HTTP handler and the backend's event
task can call :meth:`Manager.handle` directly: events are applied one at a time, and
two concurrent allocations can never see the same free terminal. The decisions that
need I/O (:class:`ScaleTo`, :class:`Restart`) go to the backend through a channel read
by one task, in order; :class:`Assign` decisions resolve the HTTP requests waiting for
a terminal (a client that asked while none was free waits, under a deadline, for the
terminal the pool is starting for it; a request dropped while it waits withdraws).
Bound to loopback only, the API answers only requests whose ``Host`` names this machine
(the DNS-rebinding guard of :mod:`webterm.hosts`).

Authentication: the manager alone signs tokens (Ed25519, :attr:`ManagerConfig.signing_key`)
and publishes their public keys at ``GET /v1/keys`` (unauthenticated). Allocation and
listing calls need the webserver's credential (``Authorization: Bearer``: 401 without,
403 wrong). A terminal's report (``/v1/terminals/<name>/...``) is authenticated with the
latest token a browser opened that terminal with, accepted up to :data:`REPORT_GRACE`
past its expiry, and only for the terminal and instance it names, which must be the
pool's current ones (else 403, nothing changed): a terminal can report on itself only.
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Final

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from quart import Response, request
from quart_trio import QuartTrio

from webterm.config import ManagerConfig
from webterm.hosts import listens_on_loopback_only, rebinding_safe
from webterm.keys import KEYS_PATH
from webterm.manager.backend import Backend, ClaimLost
from webterm.manager.pool import (
    Allocate,
    Assign,
    CancelWait,
    Connection,
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
from webterm.protocol import (
    Allocation,
    TokenClaims,
    TokenError,
    UnknownKey,
    client_hash,
    encode_allocation,
    read_token,
    sign_token,
)

log = logging.getLogger("webterm.manager")

MAX_BODY_BYTES: Final = 16 * 1024
"""Every request body of this API is a few dozen bytes of JSON."""

MAX_CLIENT_ID: Final = 512
"""Client ids are the webserver's identity strings (~60 characters)."""

TICK_SECONDS: Final = 5.0
"""How often stale-terminal detection runs; a stale terminal is recycled at most this
late."""

KEEP_ALIVE_SECONDS: Final = 75.0
"""Idle keep-alive connections are closed after this (nginx's default)."""

LOCAL_WAIT_TIMEOUT: Final = 20.0
"""Seconds an allocation may wait for a local terminal to start."""

RETRY_AFTER_SLOW: Final = 5
"""What a client is told when its terminal did not become ready in time."""

WAIT_LINGER: Final = 3 * RETRY_AFTER_SLOW
"""How long a client told to retry keeps its place in the queue (and its terminal)."""

CLAIM_ATTEMPTS: Final = 3
"""Terminals tried for one request when other managers keep winning the race."""

REPORT_GRACE: Final = 24 * 3600
"""Seconds past its expiry a terminal's token still authenticates that terminal's
reports: the terminal reports with the latest token a browser sent it, possibly a
whole session (``--max-session``) ago; a day bounds it."""

RETRY_AFTER_CLAIM: Final = 2
"""What a client is told when its allocation could not be recorded (the API failed)."""

RETRY_AFTER_NOT_LEADER: Final = 1
"""What a client is told by a manager that is not (yet) the active one: the Service
routes to the leader once it has labelled its pod, within a lease period."""


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
        self._to_backend, self._backend_queue = trio.open_memory_channel[ScaleTo | Restart](
            math.inf
        )
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
        try:
            decisions = self.pool.handle(event)
        except PoolError as exc:
            log.debug("pool refused %s: %s", type(event).__name__, exc)
            raise
        for decision in decisions:
            if isinstance(decision, ScaleTo | Restart):
                if isinstance(decision, ScaleTo):
                    self.m_scale.inc()
                else:
                    self.m_recycles.inc()
                self._to_backend.send_nowait(decision)
            elif isinstance(decision, Assign):
                for resolve in self._waiters.pop(decision.client, []):
                    resolve(decision)
        return decisions

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
        async for decision in self._backend_queue:
            try:
                await self.backend.apply(decision)
            except Exception:
                log.exception("backend failed to apply %s", decision)

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

    def release(self, client_id: str) -> None:
        self.handle(Release(client=client_hash(self.config.secret, client_id)))

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


# --- HTTP ---------------------------------------------------------------------------------------


def _error(status: int, message: str, **extra: Any) -> Response:
    response = Response(
        _json({"error": message, **extra}), status=status, content_type="application/json"
    )
    if status == 413:  # the rest of the body is never read: this connection is done
        response.headers["Connection"] = "close"
    if "retry_after" in extra:
        response.headers["Retry-After"] = str(extra["retry_after"])
    return response


def _json(body: Any) -> str:
    import json

    return json.dumps(body, separators=(",", ":"))


def _ok(body: Any, status: int = 200) -> Response:
    return Response(_json(body), status=status, content_type="application/json")


async def _json_body() -> dict[str, Any] | Response:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _error(413, "request body too large")
    raw = await request.get_data(as_text=False)
    if len(raw) > MAX_BODY_BYTES:
        return _error(413, "request body too large")
    import json

    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return _error(400, "request body must be JSON")
    if not isinstance(body, dict):
        return _error(400, "request body must be a JSON object")
    return body


@dataclass
class _TerminalAuth:
    claims: TokenClaims | None
    error: Response | None


def _bearer() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def _terminal_auth(manager: Manager, name: str) -> _TerminalAuth:
    """A report's credential: a token for exactly this terminal and its current
    instance. Refusals are logged without the token."""
    token = _bearer()
    if token is None:
        return _TerminalAuth(None, _error(401, "a terminal's token is required"))
    try:
        claims = read_token(manager.config.public_keys, token, now=time.time(), leeway=REPORT_GRACE)
    except UnknownKey as exc:
        log.warning("refused a report for %s: %s", name[:64], exc)
        return _TerminalAuth(None, _error(401, str(exc)))
    except TokenError as exc:
        log.warning("refused a report for %s: %s", name[:64], exc)
        return _TerminalAuth(None, _error(401, "invalid token"))
    current = manager.pool.terminals.get(name)
    if claims.terminal != name or current is None or current.instance != claims.instance:
        log.warning(
            "refused a report for %s: the token is for %s (instance %s)",
            name[:64], claims.terminal, claims.instance[:40] or "-",
        )  # fmt: skip
        return _TerminalAuth(None, _error(403, "token is for another terminal or instance"))
    return _TerminalAuth(claims, None)


def _webserver_auth(manager: Manager) -> Response | None:
    """None if the request carries the webserver's credential, else the 401/403."""
    presented = _bearer()
    if presented is None:
        log.warning("refused %s %s: no credential", request.method, request.path[:80])
        return _error(401, "the webserver's credential is required")
    if not hmac.compare_digest(presented.encode(), manager.config.webserver_credential):
        log.warning("refused %s %s: wrong credential", request.method, request.path[:80])
        return _error(403, "wrong credential")
    return None


async def _refuse_rebinding() -> Response | None:
    """A manager on loopback only (``webterm up``) answers only requests naming this
    machine in ``Host``: a web page whose own name resolves to 127.0.0.1 (DNS rebinding)
    must not reach the API as its same origin. See :mod:`webterm.hosts`."""
    if rebinding_safe(", ".join(request.headers.getlist("Host")) or None):
        return None
    return _error(403, "this service answers only requests for localhost or an IP address")


def create_app(manager: Manager, registry: CollectorRegistry) -> QuartTrio:
    app = QuartTrio("webterm.manager", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    if listens_on_loopback_only(manager.config.host):
        app.before_request(_refuse_rebinding)

    @app.before_request
    async def only_when_active() -> Response | None:
        """Until the pool runs (a standby without the lease, or still starting), every
        pool call is a 503 + Retry-After: the caller retries, and reaches the leader."""
        if manager.ready.is_set() or request.path in ("/healthz", "/readyz", "/metrics", KEYS_PATH):
            return None
        reason = "this manager is on standby" if manager.following else "manager starting"
        return _error(503, reason, retry_after=RETRY_AFTER_NOT_LEADER)

    @app.post("/v1/allocations")
    async def allocate() -> Response:
        if (refused := _webserver_auth(manager)) is not None:
            return refused
        body = await _json_body()
        if isinstance(body, Response):
            return body
        client = body.get("client")
        if not isinstance(client, str) or not client or len(client) > MAX_CLIENT_ID:
            return _error(400, f"'client' must be a string of 1-{MAX_CLIENT_ID} characters")
        answer = await manager.allocate(client)
        if isinstance(answer, Reject):
            return _error(503, answer.reason, retry_after=answer.retry_after)
        allocation = Allocation(
            terminal=answer.name,
            address=answer.address,
            token=manager.token_for(answer),
            reconnect=answer.reconnect,
            client_hash=answer.client,
        )
        return Response(encode_allocation(allocation), content_type="application/json")

    @app.delete("/v1/allocations/<path:client>")
    async def release(client: str) -> Response:
        if (refused := _webserver_auth(manager)) is not None:
            return refused
        try:
            manager.release(client)
        except UnknownClient:
            return _error(404, "this client holds no terminal")
        return _ok({"released": True})

    @app.post("/v1/terminals/<name>/recycle")
    async def recycle(name: str) -> Response:
        auth = _terminal_auth(manager, name)
        if auth.error is not None:
            return auth.error
        assert auth.claims is not None
        body = await _json_body()
        if isinstance(body, Response):
            return body
        try:
            manager.handle(Recycle(name=name, instance=auth.claims.instance))
        except PoolError as exc:
            return _error(exc.error_status_hint, str(exc))
        log.info("recycling %s (%s)", name, str(body.get("reason", "requested"))[:40])
        return _ok({"recycling": True})

    @app.post("/v1/terminals/<name>/connection")
    async def connection(name: str) -> Response:
        auth = _terminal_auth(manager, name)
        if auth.error is not None:
            return auth.error
        body = await _json_body()
        if isinstance(body, Response):
            return body
        connected = body.get("connected")
        if not isinstance(connected, bool):
            return _error(400, "'connected' must be true or false")
        assert auth.claims is not None
        # the pool ignores a report from an instance that is no longer this terminal's
        manager.handle_quietly(
            Connection(
                name=name,
                instance=auth.claims.instance,
                connected=connected,
                now=trio.current_time(),
            )
        )
        # a backend that keeps state outside this process (the pods) records it, for
        # the terminal's current instance only (the pool ignored any other)
        current = manager.pool.terminals.get(name)
        note = getattr(manager.backend, "note_connection", None)
        if note is not None and current is not None and current.instance == auth.claims.instance:
            note(name, auth.claims.instance, connected)
        return _ok({"ok": True})

    @app.get("/v1/terminals")
    async def terminals() -> Response:
        if (refused := _webserver_auth(manager)) is not None:
            return refused
        names = sorted(manager.pool.terminals, key=manager.pool.ordinal_of)
        return _ok({"terminals": [manager.describe(n) for n in names]})

    @app.get("/v1/terminals/<name>")
    async def terminal(name: str) -> Response:
        if (refused := _webserver_auth(manager)) is not None:
            return refused
        described = manager.describe(name)
        if described is None:
            return _error(404, "no such terminal")
        return _ok(described)

    @app.get(KEYS_PATH)
    async def keys() -> Response:
        return _ok(manager.config.public_keys.to_jwks())

    @app.get("/healthz")
    async def healthz() -> Response:
        return _ok({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        if manager.following:
            return _ok({"status": "standby"})  # synced; serving once it holds the lease
        if not manager.ready.is_set():
            return _error(503, "backend not synced yet")
        return _ok({"status": "ready"})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    install_json_errors(app)
    return app


def install_json_errors(app: QuartTrio) -> None:
    """Every error answer is JSON ``{"error": ...}``, including the framework's own."""

    def make(status: int, message: str) -> Callable[[Any], Awaitable[Response]]:
        async def handler(_: Any) -> Response:
            return _error(status, message)

        return handler

    for status, message in [
        (400, "bad request"),
        (404, "not found"),
        (405, "method not allowed"),
        (413, "request body too large"),
        (500, "internal error"),
    ]:
        app.register_error_handler(status, make(status, message))


def make_backend(config: ManagerConfig, registry: CollectorRegistry) -> Backend:
    if config.backend == "kubernetes":
        from webterm.manager.kube import create_backend

        return create_backend(config, registry)
    from webterm.manager.local import LocalBackend

    return LocalBackend(config, manager_url="", prefix=config.statefulset)


async def serve(
    config: ManagerConfig,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    backend: Backend | None = None,
) -> None:
    """Run the manager until cancelled; reports the bound port through ``task_status``."""
    from webterm.manager.local import LocalBackend

    registry = CollectorRegistry()
    the_backend = backend or make_backend(config, registry)
    manager = Manager(config, the_backend, registry)
    app = create_app(manager, registry)
    hyper = HypercornConfig()
    hyper.bind = [f"{config.host}:{config.port}"]
    hyper.accesslog = None
    hyper.graceful_timeout = 2.0
    # longer than any client's pool keeps an idle connection (httpx: 5 s), so the server
    # never closes a connection a client is just reusing (the request would be lost)
    hyper.keep_alive_timeout = KEEP_ALIVE_SECONDS
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(_serve_http, app, hyper)
        port = int(binds[0].rsplit(":", 1)[1])
        host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
        url = f"http://{host}:{port}"
        if isinstance(the_backend, LocalBackend):
            the_backend.manager_url = url  # its terminals call back here
        if config.leader_elect:
            # a standby serves (503 + Retry-After, /readyz "standby") while it waits
            # for the lease, which may be for ever
            nursery.start_soon(manager.run)
        else:
            await nursery.start(manager.run)
        log.info("manager (%s backend) listening on %s", config.backend, url)
        task_status.started(port)


async def _serve_http(
    app: Any, hyper: HypercornConfig, *, task_status: trio.TaskStatus[list[str]]
) -> None:
    await hypercorn_serve(app, hyper, task_status=task_status)
