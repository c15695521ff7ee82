"""Allocation latency, cold start to the first prompt, and idle memory; loopback, one machine.

    python bench/allocation.py [--quick]

1. Allocation latency (rows ``alloc-local`` and ``alloc-stand-in``): ``POST /api/terminal``
   on ``webterm webserver`` in front of ``webterm manager``, each its own process, with the
   webserver's limits lifted (``--client-rate 10000/10000 --address-rate 10000/10000
   --max-per-address 0``), ``--identity tab`` (each request names its client in the body,
   so one load generator can be many clients) and the manager's ``--stale-after 3600``
   (allocations that never connect are not recycled mid-run). The clients are allocated
   once, before measuring; every measured request is then the reconnect path, "give me my
   terminal", which a warm pool must answer fast, and each answer is checked (200,
   ``reconnect: true``). Closed loop: ``c`` workers (c = 1, 50, 200), each on its own
   keep-alive connection (opened by one unmeasured request), send requests back to back;
   reported per ``c``: p50/p99 over every request of the round, the requests per second
   it sustained, and the CPU time each service spent per request (psutil), which says
   where the time went on a machine that is also doing other work. The load generator is
   a minimal HTTP/1.1 client on trio sockets: httpx costs about a millisecond of CPU per
   request, which on two cores would be counted as the server's latency.

   - local: ``--backend local`` with 20 clients. Each local terminal is a real ``webterm
     pty`` process (about 0.8 s of CPU to start and 35 MiB), so 200 would cost minutes of
     CPU and gigabytes on two cores; with 20, worker ``i`` asks for client ``i mod 20``:
     at concurrency 50 and 200 most requests are reconnects of a client that has other
     requests in flight (the pool answers them all alike: same terminal, fresh token).
   - stand-in: ``--backend kubernetes`` through the kubeconfig of the Kubernetes API
     stand-in (``tests/kubeapi``, run by this file in its own process with ``--stand-in
     DIR``), whose kubelet runs in ``fake`` mode: pods turn Ready with no process behind
     them, so 200 clients are cheap and every worker has its own. The pre-allocation
     writes ownership onto the pods through the API; a reconnect never calls the API (the
     manager knows the owner), so this measures the manager with the kubernetes backend
     (reflector and pool fed by the stand-in's watch) behind the webserver.

   - floor (rows ``floor-hypercorn`` and ``floor-quart``): the same rounds against
     ``bench/peers/http_floor.py``, Hypercorn answering a fixed allocation-shaped JSON
     from a bare ASGI callable, then from one quart-trio route: what the webserver's
     server stack costs per request with no webterm code and no manager behind it.
     webterm's rows read against these, measured on the same machine in the same run.

2. Cold start to the first prompt (row ``cold-start``): a fresh ``webterm up --spares 0``
   (no terminal running: the request makes the pool start one), from ``POST
   /api/terminal`` until the WebSocket, dialed through the webserver's proxy as the page
   does, delivers a binary frame completing the shell's prompt (``$ `` or ``# `` of
   ``bash --norc --noprofile -i``). ``warm_s``: the same against ``webterm up --spares
   1`` once its spare is free (the manager's ``/v1/terminals`` says so): the terminal
   server is running and the first connection spawns the shell. Medians over
   repetitions, each with a fresh ``webterm up`` whose own start-up is not counted; one
   unreported run first.

3. Idle RSS (row ``idle-rss``): a terminal server with one attached WebSocket and bash
   idle at its prompt (after an ``echo`` round trip and a few quiet seconds): ``webterm
   pty`` (with ``--manager-url``, as deployed, pointing at a stub here that accepts its
   attach report), terminado (``bench/peers/terminado_server.py``) and, when its
   ``node_modules`` exist, the node-pty + ws reference. psutil's RSS of the server
   process only: the shell (the server's child) is excluded, for every server alike.
   Median over repetitions, a fresh server each, after one unreported run.

Python children run with their bytecode cached in the run's temporary directory
(``PYTHONPYCACHEPREFIX``): this machine sets ``PYTHONDONTWRITEBYTECODE`` and the venv has
no ``__pycache__``, so otherwise every process would compile its imports from source
(seconds of CPU per start, megabytes of compiler garbage in RSS), which no installed
deployment does. The unreported first runs fill that cache.

Targets: allocation p99 < 50 ms at concurrency 200 (local) and < 100 ms (stand-in);
webterm's idle RSS <= 1.1x terminado's. Every process started here is stopped, with its
descendants, when the run ends, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import httpx
import psutil
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

THIS = Path(__file__).resolve()
HERE = THIS.parent
REPO = HERE.parent
PEERS = HERE / "peers"
SECRET = "bench-secret-0123456789abcdef"
CREDENTIAL = "bench-webserver-credential-0123456789"  # the webserver's, to the manager
SHELL = "/bin/bash --norc --noprofile -i"
PROMPTS = (b"$ ", b"# ")
CONCURRENCY = (1, 50, 200)
LIFTED_LIMITS = ("--client-rate", "10000/10000", "--address-rate", "10000/10000",
                 "--max-per-address", "0")  # fmt: skip
LOCAL_CLIENTS, LOCAL_SPARES = 20, 4
STAND_IN_CLIENTS, STAND_IN_SPARES = 200, 8
START_DEADLINE = 180.0  # seconds a service may take to come up on a loaded machine
TARGETS = (("alloc-local", 50.0), ("alloc-stand-in", 100.0))
RSS_TARGET = 1.1
FLOORS = {"floor-hypercorn": "Hypercorn, bare ASGI", "floor-quart": "one quart-trio route"}


# --- processes ------------------------------------------------------------------------------


class Processes:
    """Every process this benchmark starts, each with a log file in ``directory``.

    ``stop`` ends one (its signal, then SIGKILL) and then every descendant it had when
    asked to stop (the manager's terminals run in sessions of their own); leaving the
    ``with`` block stops whatever is still running, also after an error."""

    def __init__(self, directory: Path) -> None:
        from webterm.protocol import SigningKey

        self.directory = directory
        self.running: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}
        # the manager's signing key, which only it reads; terminals get the public half
        self.key = SigningKey.generate()
        (directory / "signing.pem").write_bytes(self.key.to_pem())
        (directory / "credential").write_text(CREDENTIAL)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *_: object) -> None:
        for process in reversed(list(self.running)):
            self.stop(process)

    def spawn(
        self, name: str, argv: list[str], *, stdout: bool = False, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv``; with ``stdout``, its stdout is a pipe (read its first line with
        :meth:`first_line`), else it goes to the log with stderr."""
        log_path = self.directory / f"{name}-{len(self.logs)}.log"
        env = {**os.environ, "WEBTERM_SECRET": SECRET, "PYTHONUNBUFFERED": "1",
               "PYTHONPYCACHEPREFIX": str(self.directory / "pycache"),
               "WEBTERM_SIGNING_KEY_FILE": str(self.directory / "signing.pem"),
               "WEBTERM_WEBSERVER_CREDENTIAL_FILE": str(self.directory / "credential"),
               "WEBTERM_MANAGER_CREDENTIAL_FILE": str(self.directory / "credential"),
               "WEBTERM_PUBLIC_KEYS": json.dumps(self.key.key_set().to_jwks())}  # fmt: skip
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if stdout else log,
                stderr=log, cwd=cwd, start_new_session=True, env=env,
            )  # fmt: skip
        self.running.append(process)
        self.logs[process.pid] = log_path
        return process

    def stop(self, process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if process in self.running:
            self.running.remove(process)
        try:
            descendants = psutil.Process(process.pid).children(recursive=True)
        except psutil.Error:
            descendants = []
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for child in descendants:
            with suppress(psutil.Error):
                child.kill()  # only if still running (psutil checks the pid was not reused)
        if process.stdout is not None:
            process.stdout.close()

    def tail(self, process: subprocess.Popen[bytes], lines: int = 15) -> str:
        path = self.logs.get(process.pid)
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def failed(self, process: subprocess.Popen[bytes], what: str) -> RuntimeError:
        return RuntimeError(f"{what} (exit status {process.poll()}); log:\n{self.tail(process)}")

    async def first_line(self, process: subprocess.Popen[bytes]) -> str:
        """The first line the process prints on stdout (how it says where it listens)."""
        assert process.stdout is not None
        with trio.fail_after(START_DEADLINE):
            line = await trio.to_thread.run_sync(process.stdout.readline, abandon_on_cancel=True)
        if not line:
            raise self.failed(process, f"{process.args!r} exited before printing its address")
        return line.decode().strip()

    async def log_match(self, process: subprocess.Popen[bytes], pattern: str) -> str:
        """Group 1 of the first log line matching ``pattern`` (services log where they
        listen on stderr)."""
        path = self.logs[process.pid]
        with trio.fail_after(START_DEADLINE):
            while True:
                found = re.search(pattern, path.read_text(errors="replace"))
                if found:
                    return found.group(1)
                if process.poll() is not None:
                    raise self.failed(process, f"{process.args!r} exited while starting")
                await trio.sleep(0.05)


def webterm(*args: str) -> list[str]:
    return [sys.executable, "-m", "webterm", *args]


# --- a minimal HTTP/1.1 client (the load generator) ---------------------------------------


class Connection:
    """A keep-alive HTTP/1.1 connection that POSTs one fixed body again and again. When
    the server closes it (Hypercorn does after 1000 requests), the next request dials
    again, and that request's latency includes the new connection, as a browser's would."""

    def __init__(self, address: str, path: str, body: bytes) -> None:
        self.host, _, port = address.rpartition(":")
        self.port = int(port)
        head = (f"POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
        self.request = head.encode() + body
        self.stream: trio.SocketStream | None = None
        self.buffer = b""

    async def _more(self) -> None:
        assert self.stream is not None
        data = await self.stream.receive_some(65536)
        if not data:
            raise ConnectionError("the server closed the connection mid-answer")
        self.buffer += data

    async def post(self) -> tuple[int, bytes]:
        if self.stream is None:  # TCP_NODELAY is trio's default
            self.stream = await trio.open_tcp_stream(self.host, self.port)
        await self.stream.send_all(self.request)
        while b"\r\n\r\n" not in self.buffer:
            await self._more()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
        }
        if "content-length" not in headers:
            raise RuntimeError(f"answer without Content-Length: {head!r}")
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            await self._more()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        if headers.get("connection", "").lower() == "close":
            await self.aclose()
        return status, body

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
        self.stream, self.buffer = None, b""


async def reconnect(connection: Connection) -> None:
    status, body = await connection.post()
    if status != 200 or json.loads(body).get("reconnect") is not True:
        raise RuntimeError(f"expected a reconnect, got {status} {body[:200]!r}")


# --- allocation latency ----------------------------------------------------------------------


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def preallocate(base: str, count: int, concurrency: int) -> list[str]:
    """``count`` fresh clients, each allocated its terminal (retried while the pool is
    still starting terminals)."""
    ids: list[str] = []
    limiter = trio.Semaphore(concurrency)

    async def one(http: httpx.AsyncClient) -> None:
        async with limiter:
            while True:
                answer = await http.post("/api/terminal", json={})
                if answer.status_code == 200 and answer.json().get("client"):
                    ids.append(answer.json()["client"])
                    return
                if answer.status_code not in (429, 503):
                    raise RuntimeError(f"allocation failed: {answer.status_code} {answer.text}")
                await trio.sleep(min(float(answer.headers.get("retry-after", 1)), 2.0))

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=150, limits=limits) as http:
        with trio.fail_after(900):
            async with trio.open_nursery() as nursery:
                for _ in range(count):
                    nursery.start_soon(one, http)
    return ids


async def measure_round(
    address: str, ids: list[str], concurrency: int, per_worker: int
) -> tuple[list[float], float]:
    """``concurrency`` workers, each ``per_worker`` reconnects back to back on its own
    connection (after one unmeasured request); the latencies (ms) and requests/s."""
    samples: list[float] = []
    connected = 0
    all_connected = trio.Event()
    go = trio.Event()

    async def worker(i: int) -> None:
        nonlocal connected
        body = json.dumps({"client": ids[i % len(ids)]}).encode()
        connection = Connection(address, "/api/terminal", body)
        try:
            await reconnect(connection)
            connected += 1
            if connected == concurrency:
                all_connected.set()
            await go.wait()
            for _ in range(per_worker):
                started = time.perf_counter()
                await reconnect(connection)
                samples.append((time.perf_counter() - started) * 1000)
        finally:
            await connection.aclose()

    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            for i in range(concurrency):
                nursery.start_soon(worker, i)
            await all_connected.wait()
            started = time.perf_counter()
            go.set()
        elapsed = time.perf_counter() - started
    return samples, len(samples) / elapsed


def cpu_seconds(process: subprocess.Popen[bytes]) -> float:
    times = psutil.Process(process.pid).cpu_times()
    return times.user + times.system


async def allocation_rounds(
    address: str, ids: list[str], quick: bool, services: dict[str, subprocess.Popen[bytes]]
) -> dict[str, float]:
    """The row for one stack: per concurrency, p50/p99, requests per second, and the CPU
    each service spent per request."""
    row: dict[str, float] = {"clients": float(len(ids))}
    await measure_round(address, ids, 20, 2 if quick else 10)  # warm-up, not reported
    for c in CONCURRENCY:
        total = {1: 50, 50: 200, 200: 400}[c] if quick else {1: 300, 50: 1500, 200: 2000}[c]
        before = {name: cpu_seconds(process) for name, process in services.items()}
        samples, rate = await measure_round(address, ids, c, max(1, total // c))
        row[f"c{c}_p50_ms"] = percentile(samples, 0.50)
        row[f"c{c}_p99_ms"] = percentile(samples, 0.99)
        row[f"c{c}_rps"] = rate
        for name, process in services.items():
            spent = cpu_seconds(process) - before[name]
            row[f"c{c}_{name}_cpu_ms"] = spent / (len(samples) + c) * 1000  # + warm-ups
    return row


async def terminal_states(manager_url: str) -> list[str]:
    async with httpx.AsyncClient(
        timeout=10, headers={"Authorization": f"Bearer {CREDENTIAL}"}
    ) as http:
        terminals = (await http.get(f"{manager_url}/v1/terminals")).json()["terminals"]
    return [t["state"] for t in terminals]


async def free_terminals(manager_url: str) -> int:
    """Free terminals by the manager's metrics (unauthenticated: ``webterm up`` keeps
    the webserver's credential in memory)."""
    async with httpx.AsyncClient(timeout=10) as http:
        metrics = (await http.get(f"{manager_url}/metrics")).text
    found = re.search(r'^webterm_terminals\{state="free"\} (\S+)$', metrics, re.M)
    return int(float(found.group(1))) if found else 0


async def settled(manager_url: str, in_use: int, free: int) -> None:
    """Until the pool has ``in_use`` terminals in use and ``free`` free ones, and none
    starting: nothing else competes for the CPU while measuring."""
    with trio.fail_after(START_DEADLINE):
        while True:
            states = await terminal_states(manager_url)
            if (states.count("in-use"), states.count("free"), len(states)) == (
                in_use, free, in_use + free
            ):  # fmt: skip
                return
            await trio.sleep(0.2)


@asynccontextmanager
async def webserver_for(
    procs: Processes, name: str, manager_url: str
) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """A ``webterm webserver`` in front of ``manager_url``; yields its ``host:port``."""
    process = procs.spawn(name, webterm("webserver", "--manager-url", manager_url,
                                        "--host", "127.0.0.1", "--port", "0",
                                        "--identity", "tab", *LIFTED_LIMITS))  # fmt: skip
    try:
        yield await procs.log_match(process, r"webserver listening on (?:http://)?(\S+)"), process
    finally:
        procs.stop(process)


async def alloc_local(procs: Processes, quick: bool) -> dict[str, float]:
    clients = LOCAL_CLIENTS
    manager = procs.spawn("manager-local", webterm(
        "manager", "--backend", "local", "--host", "127.0.0.1", "--port", "0",
        "--spares", str(LOCAL_SPARES), "--max-terminals", str(clients + LOCAL_SPARES),
        "--stale-after", "3600", "--shell", SHELL))  # fmt: skip
    try:
        manager_url = await procs.log_match(manager, r"listening on (http://\S+)")
        async with webserver_for(procs, "webserver-local", manager_url) as (address, web):
            ids = await preallocate(f"http://{address}", clients, LOCAL_SPARES)
            await settled(manager_url, clients, LOCAL_SPARES)
            services = {"webserver": web, "manager": manager}
            return await allocation_rounds(address, ids, quick, services)
    finally:
        procs.stop(manager)


async def alloc_stand_in(procs: Processes, quick: bool) -> dict[str, float]:
    clients = STAND_IN_CLIENTS
    directory = procs.directory / "stand-in"
    api = procs.spawn("stand-in", [sys.executable, str(THIS),
                                   "--stand-in", str(directory)], stdout=True)  # fmt: skip
    manager = None
    try:
        await procs.first_line(api)
        manager = procs.spawn("manager-stand-in", webterm(
            "manager", "--backend", "kubernetes", "--kubeconfig", str(directory / "kubeconfig"),
            "--host", "127.0.0.1", "--port", "0", "--spares", str(STAND_IN_SPARES),
            "--max-terminals", str(clients + STAND_IN_SPARES),
            "--stale-after", "3600"))  # fmt: skip
        manager_url = await procs.log_match(manager, r"listening on (http://\S+)")
        async with webserver_for(procs, "webserver-stand-in", manager_url) as (address, web):
            ids = await preallocate(f"http://{address}", clients, STAND_IN_SPARES)
            await settled(manager_url, clients, STAND_IN_SPARES)
            services = {"webserver": web, "manager": manager, "stand_in": api}
            return await allocation_rounds(address, ids, quick, services)
    finally:
        if manager is not None:
            procs.stop(manager)
        procs.stop(api)


async def floor_row(procs: Processes, quick: bool, kind: str) -> dict[str, float]:
    """The same rounds against ``bench/peers/http_floor.py``: Hypercorn alone (``raw``)
    or one quart-trio route (``quart``) answering a fixed allocation, no manager behind."""
    server = procs.spawn(f"floor-{kind}", [sys.executable, str(PEERS / "http_floor.py"), kind],
                         stdout=True)  # fmt: skip
    try:
        address = (await procs.first_line(server)).split()[-1]
        ids = [f"floor-{i}" for i in range(LOCAL_CLIENTS)]  # ignored by the server
        return await allocation_rounds(address, ids, quick, {"webserver": server})
    finally:
        procs.stop(server)


async def floor_hypercorn(procs: Processes, quick: bool) -> dict[str, float]:
    return await floor_row(procs, quick, "raw")


async def floor_quart(procs: Processes, quick: bool) -> dict[str, float]:
    return await floor_row(procs, quick, "quart")


async def serve_stand_in(directory: Path) -> None:
    """The Kubernetes API stand-in with a fake-mode kubelet, until SIGTERM/SIGINT.
    Prints one line when its kubeconfig is written."""
    sys.path.insert(0, str(REPO))
    from tests.kubeapi import MANAGER_ROLE_RULES, KubeletConfig, Realism, run_kube_api

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with run_kube_api(
            directory, terminal_replicas=0, rbac=MANAGER_ROLE_RULES, secret=SECRET.encode(),
            kubelet=KubeletConfig(mode="fake"),
            # the manager's own cost, as in bench/results/baseline.json: no cluster delays
            realism=Realism.instant(),
        ) as api:  # fmt: skip
            print(f"stand-in kubeconfig {api.kubeconfig}", flush=True)
            async for _ in signals:
                break


# --- cold start to the first prompt ---------------------------------------------------------


def listening_ports(pid: int) -> set[int]:
    return {
        c.laddr.port
        for c in psutil.Process(pid).net_connections("tcp")
        if c.status == psutil.CONN_LISTEN
    }


async def to_first_prompt(procs: Processes, spares: int) -> float:
    """Seconds from POST /api/terminal to the prompt through a fresh ``webterm up``."""
    from webterm.protocol import subprotocols_for

    up = procs.spawn(f"up-spares-{spares}", webterm(
        "up", "--host", "127.0.0.1", "--port", "0", "--spares", str(spares),
        "--shell", SHELL), stdout=True)  # fmt: skip
    try:
        base = (await procs.first_line(up)).split()[3].rstrip("/")
        if spares:  # wait until the spare is free: the manager is up's other listener
            webserver_port = int(base.rsplit(":", 1)[1])
            (manager_port,) = listening_ports(up.pid) - {webserver_port}
            manager_url = f"http://127.0.0.1:{manager_port}"
            with trio.fail_after(START_DEADLINE):
                while await free_terminals(manager_url) < spares:
                    await trio.sleep(0.1)
        await trio.sleep(0.5)  # let the start-up settle
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            with trio.fail_after(120):
                started = time.perf_counter()
                answer = await http.post("/api/terminal", json={})
                if answer.status_code != 200:
                    raise RuntimeError(f"allocation failed: {answer.status_code} {answer.text}")
                got = answer.json()
                async with open_websocket_url(
                    got["url"], subprotocols=subprotocols_for(got["token"]),
                    extra_headers=[(b"origin", base.encode())],
                ) as ws:  # fmt: skip
                    seen = b""
                    while not any(prompt in seen for prompt in PROMPTS):
                        message = await ws.get_message()
                        if isinstance(message, bytes):
                            seen += message
                    return time.perf_counter() - started
    finally:
        procs.stop(up, signal.SIGINT)


async def cold_start(procs: Processes, quick: bool) -> dict[str, float]:
    reps = 1 if quick else 5
    cold, warm = [], []
    await to_first_prompt(procs, 1)  # warm-up: every module imported once, not reported
    for _ in range(reps):
        cold.append(await to_first_prompt(procs, 0))
        warm.append(await to_first_prompt(procs, 1))
    return {"cold_s": statistics.median(cold), "warm_s": statistics.median(warm)}


# --- idle RSS ------------------------------------------------------------------------------------


async def send(ws: WebSocketConnection, kind: str, data: str) -> None:
    if kind == "terminado":
        await ws.send_message(json.dumps(["stdin", data]))
    else:
        await ws.send_message(data.encode() if kind == "webterm" else data)


async def receive(ws: WebSocketConnection, kind: str) -> bytes:
    while True:
        message = await ws.get_message()
        if kind == "terminado":
            what, *rest = json.loads(message)
            if what == "stdout":
                return str(rest[0]).encode()
        elif kind == "node" or isinstance(message, bytes):  # webterm: text is control
            return message.encode() if isinstance(message, str) else message


async def null_manager(*, task_status: trio.TaskStatus[str]) -> None:
    """Answers every HTTP request with 200 ``{"ok":true}``: where a terminal server
    reports its attaches, as a deployed one does to its manager. Reports its URL."""
    sys.path.insert(0, str(REPO))
    from tests.httphead import BadRequest, RequestReader

    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
        b'{"ok":true}'
    )

    async def handle(stream: trio.SocketStream) -> None:
        requests = RequestReader(stream)
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError, BadRequest):
            while await requests.next() is not None:
                await stream.send_all(answer)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started(f"http://127.0.0.1:{port}")


async def idle_rss(procs: Processes, kind: str, quiet: float, manager_url: str) -> float:
    """MiB resident in the server process (not its shell) with one idle session attached."""
    if kind == "webterm":
        from webterm.protocol import TokenClaims, sign_token, subprotocols_for

        process = procs.spawn("pty", webterm(
            "pty", "--host", "127.0.0.1", "--port", "0", "--name", "bench", "--instance", "b",
            "--manager-url", manager_url, "--shell", SHELL), stdout=True)  # fmt: skip
        claims = TokenClaims(terminal="bench", instance="b", client="",
                             expires_at=int(time.time()) + 600)  # fmt: skip
        token = sign_token(procs.key, claims)
        subprotocols = subprotocols_for(token)
        path = "/ws"
    elif kind == "terminado":
        process = procs.spawn("terminado", [sys.executable, str(PEERS / "terminado_server.py")],
                              stdout=True)  # fmt: skip
        subprotocols, path = [], "/websocket"
    else:
        process = procs.spawn("node", ["node", "server.js", "0"], stdout=True,
                              cwd=PEERS / "node-reference")  # fmt: skip
        subprotocols, path = [], "/"
    try:
        port = (await procs.first_line(process)).rsplit(":", 1)[-1].rsplit(" ", 1)[-1]
        async with open_websocket_url(f"ws://127.0.0.1:{port}{path}",
                                      subprotocols=subprotocols) as ws:  # fmt: skip
            with trio.fail_after(60):
                await send(ws, kind, "echo READY-$((2+3))\n")
                seen = b""
                while b"READY-5" not in seen:
                    seen += await receive(ws, kind)
            await trio.sleep(quiet)
            server = psutil.Process(process.pid)
            if not server.children():
                raise RuntimeError(f"{kind}: no shell under the server process")
            return server.memory_info().rss / 2**20
    finally:
        procs.stop(process)


async def rss_row(procs: Processes, quick: bool) -> dict[str, float]:
    kinds = ["webterm", "terminado"]
    if (PEERS / "node-reference" / "node_modules").exists() and shutil.which("node"):
        kinds.append("node")
    row = {}
    async with trio.open_nursery() as nursery:
        manager_url = await nursery.start(null_manager)
        for kind in kinds:
            # first a run that is not reported: Python servers then load their modules
            # from cached bytecode, as an installed server does, instead of compiling
            # them (which leaves the compiler's garbage in the heap)
            await idle_rss(procs, kind, 0.0, manager_url)
            values = []
            for _ in range(1 if quick else 3):
                values.append(await idle_rss(procs, kind, 2.0 if quick else 5.0, manager_url))
            row[f"{kind}_mib"] = statistics.median(values)
        nursery.cancel_scope.cancel()
    return row


# --- the run ------------------------------------------------------------------------------------


async def measure(quick: bool) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="webterm-bench-alloc-") as directory,
        Processes(Path(directory)) as procs,
    ):
        for name, step in (
            ("alloc-local", alloc_local),
            ("alloc-stand-in", alloc_stand_in),
            ("floor-hypercorn", floor_hypercorn),
            ("floor-quart", floor_quart),
            ("cold-start", cold_start),
            ("idle-rss", rss_row),
        ):
            results[name] = await step(procs, quick)
            shown = ", ".join(f"{k}={v:.3g}" for k, v in results[name].items())
            print(f"  {name}: {shown}", file=sys.stderr, flush=True)
    return results


def run(quick: bool = False) -> dict[str, dict[str, float]]:
    """Measure everything (see the module docstring); rows as in :func:`report`."""
    return trio.run(measure, quick)


def report(results: dict[str, dict[str, float]]) -> list[str]:
    """Table lines, then one line per target ending PASS or MISS."""
    lines = [
        f"{'allocation':<15} {'clients':>7} {'c':>4} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>6}"
        f"  {'CPU ms per request: webserver':>29} {'manager':>7}"
    ]
    for name in [name for name, _ in TARGETS] + list(FLOORS):
        row = results.get(name, {})
        for c in CONCURRENCY if row else ():
            lines.append(
                f"{name:<15} {row.get('clients', 0):>7.0f} {c:>4} {row[f'c{c}_p50_ms']:>8.1f} "
                f"{row[f'c{c}_p99_ms']:>8.1f} {row.get(f'c{c}_rps', math.nan):>6.0f}  "
                f"{row.get(f'c{c}_webserver_cpu_ms', math.nan):>29.2f} "
                f"{row.get(f'c{c}_manager_cpu_ms', math.nan):>7.2f}"
            )
    cold = results.get("cold-start")
    if cold:
        lines.append(
            f"request to first prompt: cold (--spares 0) {cold['cold_s'] * 1000:.0f} ms, "
            f"warm (--spares 1) {cold['warm_s'] * 1000:.0f} ms"
        )
    rss = results.get("idle-rss", {})
    if rss:
        shown = ", ".join(f"{k.removesuffix('_mib')} {v:.1f} MiB" for k, v in rss.items())
        if "node_mib" not in rss:
            shown += ", node-reference skipped (no node_modules)"
        lines.append(f"idle RSS, server process only (shell excluded): {shown}")
    for name, bound in TARGETS:
        if name in results:
            p99 = results[name]["c200_p99_ms"]
            verdict = "PASS" if p99 < bound else "MISS"
            lines.append(
                f"{name} p99 at concurrency 200: {p99:.1f} ms (target < {bound:.0f} ms) {verdict}"
            )
    floors = [(FLOORS[name], results[name]) for name in FLOORS if name in results]
    if floors:
        shown = "; ".join(
            f"{what} p99 {row['c200_p99_ms']:.0f} ms at {row['c200_rps']:.0f} req/s"
            for what, row in floors
        )
        lines.append(
            f"the server stack alone at concurrency 200 (no webterm code): {shown}; "
            f"p99 < 50 ms there takes >= {200 / 0.05:.0f} req/s"
        )
    if "webterm_mib" in rss and "terminado_mib" in rss:
        ratio = rss["webterm_mib"] / rss["terminado_mib"]
        verdict = "PASS" if ratio <= RSS_TARGET else "MISS"
        lines.append(
            f"idle RSS webterm / terminado: {ratio:.2f}x (target <= {RSS_TARGET}x) {verdict}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer requests and repetitions")
    parser.add_argument("--stand-in", type=Path, help=argparse.SUPPRESS)  # internal
    args = parser.parse_args()
    if args.stand_in is not None:
        trio.run(serve_stand_in, args.stand_in)
        return
    print("measuring (loopback):", file=sys.stderr, flush=True)
    results = run(args.quick)
    print("\n".join(report(results)))
    print(json.dumps({"machine": os.uname().nodename, "cores": os.cpu_count(),
                      "quick": args.quick, "results": results}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
