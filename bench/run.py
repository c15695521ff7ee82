"""webterm benchmarks against its peers, measured in the same run on loopback.

    nox -s bench            # or: python bench/run.py [--quick] [--suites ...]

Suites (all by default): `stream` (below), `ctrl-c` (bench/ctrl_c.py: Ctrl-C under a
flood, direct and in the throttled page), `allocation` (bench/allocation.py: allocation
p50/p99 at concurrency 1/50/200, cold start, idle RSS) and `manager`
(bench/manager_scale.py: watch events/s and RSS with 10,000 pods).

Targets, each started fresh as a subprocess:
  webterm-direct   `webterm pty`, a WebSocket client straight to it (acks like the page)
  webterm-proxy    `webterm up`, through the webserver's WebSocket proxy
  terminado        Jupyter's terminal backend (tornado), JSON text frames
  node-reference   node-pty + ws, one message per pty read (the original design)
  raw-pty          this machine's ceiling: a pty read as fast as Python can, no network

Reported: output throughput (MB/s, ~50 MB of `yes` lines until a sentinel) and keystroke
echo latency (p50/p99 over 500 single keystrokes), as medians of repetitions, with the
ratio of webterm to each peer. Results also go to bench/results/<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

ROOT = Path(__file__).resolve().parent
PEERS = ROOT / "peers"
SECRET = "bench-secret-0123456789abcdef"
SENTINEL = b"BENCH-DONE-42"
ACK_EVERY = 64 * 1024  # what the page batches its acks to
FLOOD = "yes 'webterm throughput benchmark: the quick brown fox jumps over the lazy dog 0123' | head -c {n}; echo BENCH-DONE-$((6*7))\n"


@dataclass
class Session:
    """How to talk to one target: send keystrokes, receive output bytes."""

    ws: WebSocketConnection
    kind: str  # "webterm" | "terminado" | "node"
    unacked: int = 0  # webterm: bytes received but not yet acknowledged

    async def send(self, data: str) -> None:
        if self.kind == "terminado":
            await self.ws.send_message(json.dumps(["stdin", data]))
        elif self.kind == "webterm":
            await self.ws.send_message(data.encode())
        else:
            await self.ws.send_message(data)

    async def receive(self) -> bytes:
        while True:
            message = await self.ws.get_message()
            if self.kind == "terminado":
                kind, *rest = json.loads(message)
                if kind == "stdout":
                    return str(rest[0]).encode()
                continue
            if self.kind == "webterm":
                if isinstance(message, str):
                    continue  # control messages
                # acknowledge in 64 KiB batches, as the page does
                self.unacked += len(message)
                if self.unacked >= ACK_EVERY:
                    await self.ws.send_message(f'{{"type":"ack","bytes":{self.unacked}}}')
                    self.unacked = 0
                return message
            return message.encode() if isinstance(message, str) else message


def _spawn(
    argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "WEBTERM_SECRET": SECRET, **(env or {})}, cwd=cwd,
    )  # fmt: skip
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@asynccontextmanager
async def webterm_direct() -> AsyncIterator[Session]:
    from webterm.protocol import TokenClaims, sign_token, subprotocols_for
    from webterm.pty import parse_listening_line

    process, line = _spawn([sys.executable, "-m", "webterm", "pty", "--host", "127.0.0.1",
                            "--port", "0", "--name", "bench", "--instance", "b",
                            "--shell", "/bin/bash --norc --noprofile -i"])  # fmt: skip
    try:
        host, port = parse_listening_line(line)
        address = f"{host}:{port}"
        token = sign_token(SECRET.encode(), TokenClaims(
            terminal="bench", instance="b", client="", expires_at=int(time.time()) + 600))  # fmt: skip
        async with open_websocket_url(f"ws://{address}/ws", subprotocols=subprotocols_for(token),
                                      receive_buffer_size=256 * 1024, max_message_size=4 << 20) as ws:  # fmt: skip
            yield Session(ws, "webterm")
    finally:
        _stop(process)


@asynccontextmanager
async def webterm_proxy() -> AsyncIterator[Session]:
    from webterm.protocol import subprotocols_for

    process, line = _spawn([sys.executable, "-m", "webterm", "up", "--port", "0", "--spares", "1",
                            "--shell", "/bin/bash --norc --noprofile -i"])  # fmt: skip
    try:
        base = line.split()[3].rstrip("/")
        async with httpx.AsyncClient() as http:
            answer = (await http.post(f"{base}/api/terminal", json={}, timeout=60)).json()
        async with open_websocket_url(answer["url"], subprotocols=subprotocols_for(answer["token"]),
                                      receive_buffer_size=256 * 1024, max_message_size=4 << 20,
                                      extra_headers=[(b"origin", base.encode())]) as ws:  # fmt: skip
            yield Session(ws, "webterm")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)


@asynccontextmanager
async def terminado_peer() -> AsyncIterator[Session]:
    process, line = _spawn([sys.executable, str(PEERS / "terminado_server.py")])
    try:
        port = line.rsplit(" ", 1)[1]
        async with open_websocket_url(f"ws://127.0.0.1:{port}/websocket",
                                      receive_buffer_size=256 * 1024, max_message_size=4 << 20) as ws:  # fmt: skip
            yield Session(ws, "terminado")
    finally:
        _stop(process)


@asynccontextmanager
async def node_peer() -> AsyncIterator[Session]:
    node_dir = PEERS / "node-reference"
    process, line = _spawn(["node", "server.js", "0"], cwd=node_dir)
    try:
        port = line.rsplit(" ", 1)[1]
        async with open_websocket_url(f"ws://127.0.0.1:{port}/",
                                      receive_buffer_size=256 * 1024, max_message_size=4 << 20) as ws:  # fmt: skip
            yield Session(ws, "node")
    finally:
        _stop(process)


TARGETS: dict[str, Callable[[], Any]] = {
    "webterm-direct": webterm_direct,
    "webterm-proxy": webterm_proxy,
    "terminado": terminado_peer,
    "node-reference": node_peer,
}


async def settle(session: Session) -> None:
    """Wait for the first prompt, then for quiet."""
    await session.send("echo READY-$((2+3))\n")
    seen = b""
    with trio.fail_after(30):
        while b"READY-5" not in seen:
            seen += await session.receive()
    with trio.move_on_after(0.3):
        while True:
            await session.receive()


async def throughput(session: Session, size: int) -> float:
    await session.send(FLOOD.format(n=size))
    received = 0
    tail = b""
    started = time.perf_counter()
    with trio.fail_after(300):
        while SENTINEL not in tail:
            data = await session.receive()
            received += len(data)
            tail = (tail + data)[-64:]
    return received / (time.perf_counter() - started) / 1e6


async def echo_latency(session: Session, count: int) -> tuple[float, float]:
    samples = []
    for i in range(count):
        key = "abcdefghij"[i % 10]
        started = time.perf_counter()
        await session.send(key)
        with trio.fail_after(10):
            while key.encode() not in await session.receive():
                pass
        samples.append((time.perf_counter() - started) * 1000)
        if i % 50 == 49:
            await session.send("\x15")  # ^U: keep the line short
            with trio.move_on_after(0.05):
                while True:
                    await session.receive()
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99) - 1]


def raw_pty_throughput(size: int) -> float:
    """The ceiling: read a pty's master as fast as possible, no network."""
    import pty as ptymod

    master, slave = ptymod.openpty()
    command = FLOOD.format(n=size).strip()
    process = subprocess.Popen(
        ["/bin/bash", "-c", command], stdout=slave, stderr=slave, stdin=slave
    )
    os.close(slave)
    received = 0
    started = time.perf_counter()
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        received += len(data)
    elapsed = time.perf_counter() - started
    process.wait()
    os.close(master)
    return received / elapsed / 1e6


async def measure(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    size = 5_000_000 if args.quick else 50_000_000
    reps = 1 if args.quick else 3
    keys = 50 if args.quick else 500
    for name in args.targets:
        if name == "node-reference" and not (PEERS / "node-reference" / "node_modules").exists():
            print(f"  {name}: skipped (run `npm ci` in bench/peers/node-reference)")
            continue
        rates, p50s, p99s = [], [], []
        for _ in range(reps):
            async with TARGETS[name]() as session:
                await settle(session)
                rates.append(await throughput(session, size))
                await settle(session)
                p50, p99 = await echo_latency(session, keys)
                p50s.append(p50)
                p99s.append(p99)
        results[name] = {
            "throughput_mb_s": statistics.median(rates),
            "echo_p50_ms": statistics.median(p50s),
            "echo_p99_ms": statistics.median(p99s),
        }
        print(f"  {name}: {results[name]}", flush=True)
    results["raw-pty"] = {
        "throughput_mb_s": statistics.median(raw_pty_throughput(size) for _ in range(reps))
    }
    return results


def report(results: dict[str, dict[str, float]]) -> None:
    print()
    print(f"{'target':<16} {'MB/s':>8} {'echo p50 ms':>12} {'echo p99 ms':>12}")
    for name, row in results.items():
        print(f"{name:<16} {row['throughput_mb_s']:>8.1f} {row.get('echo_p50_ms', float('nan')):>12.3f} "
              f"{row.get('echo_p99_ms', float('nan')):>12.3f}")  # fmt: skip
    print()
    targets = [
        ("webterm-direct", "node-reference", "throughput_mb_s", ">=", 1.0),
        ("webterm-direct", "terminado", "throughput_mb_s", ">=", 1.5),
        ("webterm-proxy", "node-reference", "throughput_mb_s", ">=", 0.8),
        ("webterm-direct", "node-reference", "echo_p99_ms", "<=", 1.2),
        ("webterm-proxy", "node-reference", "echo_p99_ms", "<=", 2.0),
    ]
    for ours, peer, metric, op, bound in targets:
        if ours not in results or peer not in results:
            continue
        ratio = results[ours][metric] / results[peer][metric]
        ok = ratio >= bound if op == ">=" else ratio <= bound
        print(
            f"{ours} / {peer} {metric}: {ratio:.2f}x (target {op} {bound}x) {'PASS' if ok else 'MISS'}"
        )


def _ctrl_c(quick: bool) -> tuple[Any, list[str]]:
    import ctrl_c

    results = ctrl_c.run(quick)
    return results, ctrl_c.report(results)


def _allocation(quick: bool) -> tuple[Any, list[str]]:
    import allocation

    results = allocation.run(quick)
    return results, allocation.report(results)


def _manager(quick: bool) -> tuple[Any, list[str]]:
    import manager_scale

    row = manager_scale.run(10_000, 50_000 if quick else 200_000)
    return row, manager_scale.report(row)


SUITES: dict[str, Callable[[bool], tuple[Any, list[str]]]] = {
    "ctrl-c": _ctrl_c,
    "allocation": _allocation,
    "manager": _manager,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small payloads, one repetition")
    parser.add_argument("--targets", nargs="*", default=list(TARGETS))
    parser.add_argument("--output", type=Path, default=ROOT / "results")
    names = ["stream", *SUITES]
    parser.add_argument("--suites", nargs="*", default=names, choices=names)
    args = parser.parse_args()
    if shutil.which("node") is None and "node-reference" in args.targets:
        args.targets.remove("node-reference")
    results: dict[str, Any] = {}
    lines: list[str] = []
    if "stream" in args.suites:
        print("measuring throughput and echo (loopback, medians):", flush=True)
        results["stream"] = trio.run(measure, args)
        report(results["stream"])
    for name in args.suites:
        if name in SUITES:
            print(f"\nmeasuring {name}:", flush=True)
            results[name], more = SUITES[name](args.quick)
            lines += more
            print("\n".join(more), flush=True)
    if lines:
        print("\nsummary of the other suites:\n" + "\n".join(lines))
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"machine": os.uname().nodename, "cores": os.cpu_count(),
                                "quick": args.quick, "suites": args.suites,
                                "results": results}, indent=2))  # fmt: skip
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
