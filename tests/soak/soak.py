"""Chaos soak: webterm on the Kubernetes API stand-in, with clients at work while the
cluster and the manager fail under them, and the invariants checked throughout.

    nox -s soak                       # the long run (10 min of chaos by default)
    nox -s soak -- --chaos 120 --seed 7
    python -m tests.soak.soak --help

What runs: the stand-in (``Realism.fast()``: a real cluster's behaviour at test speed;
pods are real ``webterm pty`` processes), ``--managers`` manager *processes* (kubernetes
backend; killed with SIGKILL), each behind one "Service" address the webserver and the
terminal pods use (a TCP forwarder in this harness: it sends each connection to the
first manager that accepts it, so a second manager that forwards to its leader or
refuses while a follower slots in unchanged), and the webserver in-process.

Clients (``--clients``) loop like browser tabs: allocate (``POST /api/terminal``),
type into the shell through the webserver, then disconnect and reconnect, give the
terminal back (``DELETE``), or ``exit`` the shell. Meanwhile the chaos task kills a
manager, cuts watches (reset or half-open), takes the API away for ``--outage`` seconds
(503 + Retry-After, or refused connections), deletes terminal pods and slows the
StatefulSet controller. Then the faults stop, every client gives its terminal back, and
the pool must converge to ``--spares`` ready spares.

Invariants (each breach is a violation, printed with its details):

1. a pod UID is never handed to two clients;
2. every allocation answered 200 leads to a working shell owned by that client (the
   pod carries the client's owner annotation), unless chaos deleted that pod;
3. every terminal given back or exited has its pod deleted within ``--release-bound``
   seconds of the API (and a manager) being back;
4. the StatefulSet never has more than ``--max-terminals`` replicas;
5. after the faults stop, the pool converges to ``--spares`` ready spares within
   ``--converge-bound`` seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError, open_websocket_url

from tests.credentials import AUTH, CREDENTIAL, WEBSERVER_SECRET
from tests.kubeapi import MANAGER_ROLE_RULES, PODS, STATEFULSETS, KubeApi, Realism, run_kube_api
from tests.kubeapi.controllers import is_ready
from webterm.config import KeySource, WebserverConfig
from webterm.protocol import TokenError, read_token, subprotocols_for
from webterm.webserver.app import serve as serve_webserver

log = logging.getLogger("soak")

OWNER_ANNOTATION = "webterm.dev/client"


@dataclass(frozen=True, kw_only=True)
class SoakConfig:
    clients: int = 6
    managers: int = 1
    spares: int = 2
    max_terminals: int = 6
    chaos: float = 600.0  # seconds of faults
    fault_gap: tuple[float, float] = (5.0, 20.0)  # seconds between faults
    outage: tuple[float, float] = (30.0, 120.0)  # seconds the API is away
    manager_down: tuple[float, float] = (0.5, 5.0)  # seconds a killed manager stays dead
    slow_controller: tuple[float, float] = (3.0, 10.0)  # the controller's delay meanwhile
    shell_bound: float = 60.0  # seconds, after the last disruption, to get a shell
    release_bound: float = 60.0  # seconds, after the last disruption, to delete a pod
    converge_bound: float = 180.0
    ready_timeout: float = 30.0
    seed: int | None = None
    realism: Realism = field(default_factory=Realism.fast)

    @classmethod
    def short(cls, **overrides: Any) -> SoakConfig:
        """About a minute: shorter outages, faults more often, fewer clients."""
        values: dict[str, Any] = {
            "clients": 3,
            "spares": 1,
            "max_terminals": 4,
            "chaos": 40.0,
            "fault_gap": (2.0, 6.0),
            "outage": (5.0, 12.0),
            "shell_bound": 45.0,
            "release_bound": 45.0,
            "converge_bound": 90.0,
            **overrides,
        }
        return cls(**values)


@dataclass
class Violation:
    at: float
    invariant: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.at:7.1f} s] {self.invariant}: {self.detail}"


@dataclass
class SoakResult:
    allocations: int = 0
    refused: int = 0  # allocation answers other than 200
    shells: int = 0
    lost_to_chaos: int = 0
    releases: int = 0
    give_backs_refused: int = 0  # DELETE /api/terminal answered released: false
    faults: Counter[str] = field(default_factory=Counter)
    violations: list[Violation] = field(default_factory=list)
    converge_seconds: float | None = None
    duration: float = 0.0

    def report(self) -> str:
        lines = [
            "soak result",
            f"  duration          {self.duration:.0f} s",
            f"  allocations (200) {self.allocations}",
            f"  refused (503...)  {self.refused}",
            f"  working shells    {self.shells}",
            f"  lost to chaos     {self.lost_to_chaos} (pod deleted before the shell was used)",
            f"  released/exited   {self.releases}",
            f"  give-back refused {self.give_backs_refused} (released: false)",
            "  faults injected   "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none")
            + f" (total {sum(self.faults.values())})",
            "  time to converge  "
            + (f"{self.converge_seconds:.1f} s" if self.converge_seconds is not None else "never"),
            f"  violations        {len(self.violations)}",
            *(f"    {v}" for v in self.violations),
        ]
        return "\n".join(lines)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ManagerProcess:
    """One manager replica: a real process, so that a kill is a kill (SIGKILL)."""

    def __init__(self, index: int, api: KubeApi, config: SoakConfig, directory: Path) -> None:
        self.index = index
        self.api = api
        self.config = config
        self.port = _free_port()
        self.log_path = directory / f"manager-{index}.log"
        self.process: trio.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        key_file, credential_file = (
            self.log_path.with_name("signing-key.pem"),
            self.log_path.with_name("credential"),
        )
        key_file.write_bytes(self.api.signing_key.to_pem())
        credential_file.write_bytes(CREDENTIAL)
        env = {
            **os.environ,
            "WEBTERM_SECRET": self.api.secret.decode(),
            "WEBTERM_SIGNING_KEY_FILE": str(key_file),
            "WEBTERM_WEBSERVER_CREDENTIAL_FILE": str(credential_file),
        }
        argv = [
            sys.executable, "-m", "webterm", "manager", "--backend", "kubernetes",
            "--kubeconfig", str(self.api.kubeconfig), "--port", str(self.port),
            "--spares", str(self.config.spares),
            "--max-terminals", str(self.config.max_terminals),
            "--ready-timeout", str(self.config.ready_timeout),
            # the production default (150 s) is 2.5 bookmark intervals of a real API
            # server (60 s); the stand-in's are shorter, and so is this (half-open
            # watches would otherwise outlast the soak's bounds)
            "--watch-timeout", str(2.5 * self.config.realism.bookmark_interval),
        ]  # fmt: skip
        with self.log_path.open("ab") as out:
            self.process = await trio.lowlevel.open_process(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.starts += 1

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.process is not None:
            self.kill()
            with trio.CancelScope(shield=True):
                await self.process.wait()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None


class ServiceForwarder:
    """The manager Service: one address, each connection forwarded to the first
    manager (in order) that accepts it."""

    def __init__(self, managers: list[ManagerProcess]) -> None:
        self.managers = managers
        self.port = _free_port()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        task_status.started()
        await trio.serve_listeners(self._forward, listeners)

    async def _forward(self, client: trio.SocketStream) -> None:
        upstream: trio.SocketStream | None = None
        for manager in self.managers:
            if not manager.alive:
                continue
            try:
                upstream = await trio.open_tcp_stream("127.0.0.1", manager.port)
                break
            except OSError:
                continue
        if upstream is None:
            await client.aclose()  # no endpoint: the connection is closed at once
            return

        async def pipe(a: trio.SocketStream, b: trio.SocketStream) -> None:
            try:
                while data := await a.receive_some(65536):
                    await b.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            with trio.CancelScope(shield=True):
                await b.aclose()

        async with upstream, client, trio.open_nursery() as nursery:
            nursery.start_soon(pipe, client, upstream)
            nursery.start_soon(pipe, upstream, client)


class Soak:
    def __init__(self, config: SoakConfig, api: KubeApi, web: str) -> None:
        self.config = config
        self.api = api
        self.web = web
        self.rng = random.Random(config.seed)
        self.result = SoakResult()
        self.started = trio.current_time()
        self.disrupted = 0  # disruptions in progress (an outage, a dead manager)
        self.calm_since = self.started  # when the last disruption ended
        self.owner_of: dict[str, str] = {}  # pod UID -> client hash it was handed to
        self.handed_at: dict[str, float] = {}  # pod UID -> first handed out (soak time)
        self.released_at: dict[str, float] = {}  # pod UID -> given back (soak time)
        self.pending_releases: dict[str, float] = {}  # pod UID -> when given back
        self.stopping = False
        self.managers: list[ManagerProcess] = []

    # ---------------------------------------------------------------- bookkeeping

    def now(self) -> float:
        return trio.current_time() - self.started

    def violation(self, invariant: str, detail: str) -> None:
        v = Violation(self.now(), invariant, detail)
        self.result.violations.append(v)
        log.error("VIOLATION %s", v)

    def pod_by_uid(self, uid: str) -> dict[str, Any] | None:
        for pod in self.api.store.objects(PODS, self.api.namespace):
            if pod["metadata"]["uid"] == uid:
                return pod
        return None

    def overdue(self, since: float, bound: float) -> bool:
        """More than ``bound`` seconds since ``since`` and since the last disruption."""
        return not self.disrupted and trio.current_time() - max(since, self.calm_since) > bound

    @asynccontextmanager
    async def disruption(self) -> AsyncIterator[None]:
        self.disrupted += 1
        try:
            yield
        finally:
            self.disrupted -= 1
            self.calm_since = trio.current_time()

    # ---------------------------------------------------------------- invariants

    async def watch_statefulset(self) -> None:
        """Invariant 4, on every write of the StatefulSet (no polling)."""
        with self.api.store.subscribe(STATEFULSETS, self.api.namespace) as (_, sub):
            async for change in sub.receive:
                replicas = int(change.obj["spec"].get("replicas", 0))
                if change.type != "DELETED" and replicas > self.config.max_terminals:
                    self.violation(
                        "statefulset-over-max",
                        f"spec.replicas={replicas} > --max-terminals={self.config.max_terminals}",
                    )

    async def check_releases(self) -> None:
        """Invariant 3, once a second."""
        while True:
            for uid, since in list(self.pending_releases.items()):
                pod = self.pod_by_uid(uid)
                if pod is None or pod["metadata"].get("deletionTimestamp"):
                    del self.pending_releases[uid]
                elif self.overdue(since, self.config.release_bound):
                    del self.pending_releases[uid]
                    self.violation(
                        "released-pod-not-deleted",
                        f"{pod['metadata']['name']} (uid {uid}) still there "
                        f"{trio.current_time() - since:.0f} s after it was given back "
                        f"(labels {pod['metadata'].get('labels', {}).get('webterm.dev/state')}, "
                        f"owner {(pod['metadata'].get('annotations') or {}).get(OWNER_ANNOTATION, '')[:8]})",
                    )
            await trio.sleep(1)

    def record_allocation(self, tab: int, answer: dict[str, Any]) -> tuple[str, str] | None:
        """Invariant 1; returns (uid, client hash) from the answer's token."""
        try:
            claims = read_token(self.api.signing_key.key_set(), answer["token"], now=time.time())
        except TokenError as exc:
            self.violation("bad-token", f"tab {tab}: {exc}")
            return None
        self.result.allocations += 1
        previous = self.owner_of.setdefault(claims.instance, claims.client)
        self.handed_at.setdefault(claims.instance, self.now())
        if previous != claims.client:
            released = self.released_at.get(claims.instance)
            self.violation(
                "uid-handed-twice",
                f"{answer['terminal']} (uid {claims.instance}) handed to client "
                f"{claims.client[:8]} after client {previous[:8]} (handed at "
                f"{self.handed_at[claims.instance]:.1f} s, "
                + (f"given back at {released:.1f} s)" if released else "never given back)"),
            )
        return claims.instance, claims.client

    async def use_shell(self, tab: int, answer: dict[str, Any], uid: str, owner: str) -> bool:
        """Invariant 2: type into the shell, retrying until it works, its pod is gone
        (chaos), or the bound passes with no disruption to blame."""
        granted = trio.current_time()
        marker = f"soak-{tab}-{self.rng.randrange(10**6)}"
        while True:
            pod = self.pod_by_uid(uid)
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                self.result.lost_to_chaos += 1
                return False
            annotation = (pod["metadata"].get("annotations") or {}).get(OWNER_ANNOTATION)
            try:
                with trio.fail_after(15):
                    await self._echo(answer, f"echo {marker}-$((6*7))", f"{marker}-42")
            except (
                OSError,
                HandshakeError,
                ConnectionClosed,
                ConnectionRejected,
                trio.TooSlowError,
            ):
                if self.overdue(granted, self.config.shell_bound):
                    self.violation(
                        "allocation-without-shell",
                        f"tab {tab}: {answer['terminal']} (uid {uid}) answered 200 but no "
                        f"working shell within {self.config.shell_bound:.0f} s",
                    )
                    return False
                await trio.sleep(1)
                continue
            if annotation != owner:
                self.violation(
                    "shell-not-owned",
                    f"tab {tab}: {answer['terminal']} (uid {uid}) works but its owner "
                    f"annotation is {annotation!r}, not {owner[:8]}...",
                )
            self.result.shells += 1
            return True

    async def _echo(self, answer: dict[str, Any], command: str, expect: str) -> None:
        async with open_websocket_url(
            answer["url"],
            subprotocols=subprotocols_for(answer["token"]),
            extra_headers=[(b"origin", self.web.encode())],
        ) as ws:
            await ws.send_message(command.encode() + b"\n")
            seen = b""
            while expect.encode() not in seen:
                message = await ws.get_message()
                if isinstance(message, bytes):
                    seen += message

    async def _exit_shell(self, answer: dict[str, Any]) -> bool:
        """Type ``exit``; True once the session ended (the server closed the socket)."""
        sent = False
        with trio.move_on_after(15):
            try:
                async with open_websocket_url(
                    answer["url"],
                    subprotocols=subprotocols_for(answer["token"]),
                    extra_headers=[(b"origin", self.web.encode())],
                ) as ws:
                    await ws.send_message(b"exit\n")
                    sent = True
                    while True:
                        await ws.get_message()
            except ConnectionClosed:
                return sent
            except (OSError, HandshakeError, ConnectionRejected):
                return False
        return False

    # ---------------------------------------------------------------- clients

    async def tab(self, index: int) -> None:
        """One browser tab: allocate, type, then disconnect/reconnect, give back, or exit.
        Once the faults stop, one last allocation must give it a working shell within
        ``--converge-bound`` (service resumes), then it gives its terminal back."""
        handed: str | None = None
        async with httpx.AsyncClient(base_url=self.web, timeout=60) as http:
            last: str | None = None
            while True:
                if self.stopping:
                    last, handed = await self.final_shell(index, http, handed)
                    break
                body = {"client": handed} if handed else {}
                try:
                    response = await http.post("/api/terminal", json=body)
                except httpx.HTTPError:
                    await trio.sleep(1)
                    continue
                if response.status_code != 200:
                    self.result.refused += 1
                    await trio.sleep(self.rng.uniform(0.5, 2))
                    continue
                answer = response.json()
                handed = answer.get("client") or handed
                got = self.record_allocation(index, answer)
                if got is None:
                    continue
                uid, owner = got
                if uid in self.pending_releases:
                    # the manager has not yet heard that this tab's shell ended (the
                    # page asks again, as here); its pod must still go within the bound
                    await trio.sleep(1)
                    continue
                if not await self.use_shell(index, answer, uid, owner):
                    continue
                action = self.rng.choices(["reconnect", "give-back", "exit"], [5, 2, 2])[0]
                await trio.sleep(self.rng.uniform(0.2, 2))
                released = False
                if action == "give-back":
                    released = await self.give_back(http, handed, 30)
                elif action == "exit":
                    released = await self._exit_shell(answer)
                if released:
                    self.pending_releases[uid] = trio.current_time()
                    self.released_at[uid] = self.now()
                    self.result.releases += 1
            # the tab closes: give the terminal back
            if handed and await self.give_back(http, handed, 60) and last is not None:
                self.pending_releases[last] = trio.current_time()
                self.result.releases += 1

    async def give_back(self, http: httpx.AsyncClient, handed: str | None, within: float) -> bool:
        """``DELETE /api/terminal`` until the webserver says it was released."""
        with trio.move_on_after(within):
            while True:
                try:
                    answer = await http.request("DELETE", "/api/terminal", json={"client": handed})
                    if answer.status_code == 200:
                        released = bool(answer.json().get("released"))
                        self.result.give_backs_refused += not released
                        return released
                except httpx.HTTPError:
                    pass
                await trio.sleep(1)
        return False

    async def final_shell(
        self, index: int, http: httpx.AsyncClient, handed: str | None
    ) -> tuple[str | None, str | None]:
        """The pod UID of the working shell the tab finally got (None: a violation), and
        the tab's client identity."""
        deadline = trio.current_time() + self.config.converge_bound
        while trio.current_time() < deadline:
            try:
                response = await http.post(
                    "/api/terminal", json={"client": handed} if handed else {}
                )
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code == 200:
                answer = response.json()
                handed = answer.get("client") or handed
                got = self.record_allocation(index, answer)
                if got is not None and got[0] not in self.pending_releases:
                    try:
                        with trio.fail_after(15):
                            await self._echo(answer, "echo final-$((2+3))", "final-5")
                        self.result.shells += 1
                        return got[0], handed
                    except (OSError, HandshakeError, ConnectionClosed, ConnectionRejected,
                            trio.TooSlowError):  # fmt: skip
                        pass
            await trio.sleep(1)
        self.violation(
            "no-service-after-faults",
            f"tab {index}: no working shell within {self.config.converge_bound:.0f} s "
            "of the faults ending",
        )
        return None, handed

    # ---------------------------------------------------------------- chaos

    async def chaos(self) -> None:
        faults = self.api.faults
        end = trio.current_time() + self.config.chaos
        while trio.current_time() < end:
            await trio.sleep(self.rng.uniform(*self.config.fault_gap))
            kind = self.rng.choices(
                ["kill-manager", "cut-watches", "half-open-watches", "outage", "delete-pod",
                 "slow-controller"],
                [3, 2, 1, 2, 3, 1],
            )[0]  # fmt: skip
            self.result.faults[kind] += 1
            log.info("fault: %s", kind)
            if kind == "kill-manager":
                manager = self.rng.choice(self.managers)  # leader or follower alike
                async with self.disruption():
                    manager.kill()
                    if manager.process is not None:
                        await manager.process.wait()
                    await trio.sleep(self.rng.uniform(*self.config.manager_down))
                    await manager.start()
            elif kind == "cut-watches":
                faults.drop_watches(abort=self.rng.random() < 0.5)
            elif kind == "half-open-watches":
                faults.half_open_watches()
            elif kind == "outage":
                mode = self.rng.choice(["503", "refused"])
                self.result.faults[f"outage-{mode}"] += 1
                async with self.disruption():
                    faults.outage(mode, retry_after=self.rng.randint(1, 10))  # type: ignore[arg-type]
                    await trio.sleep(self.rng.uniform(*self.config.outage))
                    faults.end_outage()
            elif kind == "delete-pod":
                pods = [p for p in self.api.pods() if not p["metadata"].get("deletionTimestamp")]
                if pods:
                    victim = self.rng.choice(pods)
                    self.api.delete(PODS, victim["metadata"]["name"], grace_period=1)
            elif kind == "slow-controller":
                faults.controller_delay = self.config.slow_controller
                await trio.sleep(self.rng.uniform(10, 30))
                faults.controller_delay = None

    async def wait_for_managers(self, forwarder: ServiceForwarder) -> None:
        """Before any fault: the manager answers and the first spares are ready."""
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{forwarder.port}", headers=AUTH
        ) as http:
            with trio.fail_after(180):
                while True:
                    try:
                        if (await http.get("/readyz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await trio.sleep(0.5)
                await self.api.wait_until(
                    lambda: sum(map(is_ready, self.api.store.objects(PODS))) >= self.config.spares
                )
        self.started = trio.current_time()
        self.calm_since = self.started

    def converged(self) -> bool:
        live = [p for p in self.api.store.objects(PODS, self.api.namespace)
                if not p["metadata"].get("deletionTimestamp")]  # fmt: skip
        free = [
            p for p in live
            if is_ready(p) and not (p["metadata"].get("annotations") or {}).get(OWNER_ANNOTATION)
        ]  # fmt: skip
        return len(live) == len(free) == self.config.spares

    async def run(self, forwarder: ServiceForwarder, directory: Path) -> SoakResult:
        self.managers = [
            ManagerProcess(i, self.api, self.config, directory) for i in range(self.config.managers)
        ]
        forwarder.managers = self.managers
        for manager in self.managers:
            await manager.start()
        try:
            async with trio.open_nursery() as background:
                await background.start(forwarder.run)
                await self.wait_for_managers(forwarder)
                background.start_soon(self.watch_statefulset)
                background.start_soon(self.check_releases)
                async with trio.open_nursery() as work:
                    for i in range(self.config.clients):
                        work.start_soon(self.tab, i)
                    await self.chaos()
                    self.stopping = True  # faults over: the tabs finish and give back
                calm = trio.current_time()
                with trio.move_on_after(self.config.converge_bound):
                    while not self.converged():
                        await self.api.store._any_change.wait()  # re-check on every write
                    self.result.converge_seconds = trio.current_time() - calm
                if self.result.converge_seconds is None:
                    pods = sorted(
                        (p["metadata"]["name"], is_ready(p),
                         (p["metadata"].get("annotations") or {}).get(OWNER_ANNOTATION, "")[:8])
                        for p in self.api.pods()
                    )  # fmt: skip
                    self.violation(
                        "no-convergence",
                        f"not {self.config.spares} ready spares within "
                        f"{self.config.converge_bound:.0f} s of the faults ending: {pods}",
                    )
                # the last releases get their bound too
                with trio.move_on_after(self.config.release_bound + 2):
                    while self.pending_releases:
                        await trio.sleep(0.5)
                background.cancel_scope.cancel()
        finally:
            for manager in self.managers:
                await manager.stop()
        self.result.duration = self.now()
        return self.result


async def run_soak(config: SoakConfig, directory: Path | None = None) -> SoakResult:
    """Run one soak; the result carries the counts and every violation."""
    with tempfile.TemporaryDirectory(prefix="webterm-soak-") as tmp:
        where = directory or Path(tmp)
        forwarder = ServiceForwarder([])
        manager_url = f"http://127.0.0.1:{forwarder.port}"
        async with (
            run_kube_api(
                where,
                terminal_replicas=0,
                rbac=MANAGER_ROLE_RULES,
                realism=config.realism,
                pod_args=("--manager-url", manager_url),
            ) as api,
            trio.open_nursery() as nursery,
        ):
            web_port = await nursery.start(
                serve_webserver,
                WebserverConfig(
                    secret=WEBSERVER_SECRET, manager_url=manager_url, manager_credential=CREDENTIAL,
                    keys=KeySource(keys=api.signing_key.key_set()), port=0, max_per_address=0,
                    client_rate=(1000.0, 1000), address_rate=(1000.0, 1000),
                ),
            )  # fmt: skip
            soak = Soak(config, api, f"http://127.0.0.1:{web_port}")
            result = await soak.run(forwarder, where)
            nursery.cancel_scope.cancel()
            if result.violations:
                for manager in soak.managers:
                    lines = manager.log_path.read_text(errors="replace").splitlines()
                    tail = [line for line in lines if "listening on" in line or "WARNING" in line
                            or "recycl" in line or "rror" in line][-60:]  # fmt: skip
                    log.warning("manager-%d log (last lines):\n%s", manager.index, "\n".join(tail))
        return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = SoakConfig()
    parser.add_argument("--short", action="store_true", help="the ~1 minute version")
    parser.add_argument(
        "--chaos", type=float, help=f"seconds of faults (default {defaults.chaos:.0f})"
    )
    parser.add_argument("--clients", type=int)
    parser.add_argument("--managers", type=int, help="manager replicas (today: 1)")
    parser.add_argument("--spares", type=int)
    parser.add_argument("--max-terminals", type=int)
    parser.add_argument("--outage", type=float, nargs=2, metavar=("MIN", "MAX"))
    parser.add_argument("--seed", type=int)
    parser.add_argument("--shell-bound", type=float, help="seconds to a working shell")
    parser.add_argument("--release-bound", type=float, help="seconds to delete a given-back pod")
    parser.add_argument("--converge-bound", type=float, help="seconds to converge at the end")
    parser.add_argument("--real-timing", action="store_true", help="Realism() instead of fast()")
    parser.add_argument("--json", action="store_true", help="also print the result as JSON")
    args = parser.parse_args()
    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "chaos": args.chaos, "clients": args.clients, "managers": args.managers,
            "spares": args.spares, "max_terminals": args.max_terminals,
            "outage": tuple(args.outage) if args.outage else None, "seed": args.seed,
            "realism": Realism() if args.real_timing else None,
            "shell_bound": args.shell_bound, "release_bound": args.release_bound,
            "converge_bound": args.converge_bound,
        }.items()
        if v is not None
    }  # fmt: skip
    config = SoakConfig.short(**overrides) if args.short else SoakConfig(**overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("httpx", "kubeapi", "webterm", "trio-websocket", "hypercorn"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    result = trio.run(run_soak, config)
    print(result.report(), flush=True)
    if args.json:
        print(json.dumps({
            "allocations": result.allocations, "faults": dict(result.faults),
            "violations": [str(v) for v in result.violations],
            "converge_seconds": result.converge_seconds,
        }))  # fmt: skip
    sys.exit(1 if result.violations else 0)


if __name__ == "__main__":
    main()


__all__ = ["SoakConfig", "SoakResult", "Violation", "run_soak"]
