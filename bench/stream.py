"""Throughput, server CPU and echo latency, measured by an independent client.

The client (``bench/peers/node-reference/client.js``, Node + ws) is a separate process
that is never what limits a server: a Python client tops out near the rates measured
here, so it would make every server look alike. Each round starts every target fresh
and interleaves them (round-robin), so a slow minute of this noisy machine hits all of
them alike; the report gives the median and the range over the rounds.

Targets:
  webterm-direct   `webterm pty`, straight to it (the client acks in 64 KiB batches, as
                   the page does)
  webterm-proxy    `webterm up`, through the webserver's WebSocket proxy
  terminado        Jupyter's terminal backend (tornado), JSON text frames
  node-binary      node-pty + ws the way a tuned Node server is written: Buffers, one
                   binary frame per pty read, the pty paused above 1 MiB queued: the peer
                   to beat
  node-reference   node-pty + ws decoding output to strings (the original design)

Server CPU is the user+system seconds the server's own processes spent during the flood
(psutil; the shell, ``yes`` and ``head`` excluded), per 50 MB of output.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent
NODE_DIR = ROOT / "peers" / "node-reference"
SHELL = "/bin/bash --norc --noprofile -i"
SHELL_NAMES = {"bash", "yes", "head", "sh"}
PER_MB = 50e6  # CPU is reported per 50 MB of output


@dataclass
class Target:
    """A running server: where the client connects, and whose CPU counts."""

    url: str
    kind: str  # the client's dialect: webterm | terminado | node
    protocols: list[str] = field(default_factory=list)
    origin: str | None = None
    root: int = 0  # the server's pid; its non-shell descendants count too
    renew: Callable[[], tuple[str, list[str]]] | None = None  # a fresh url and protocols

    def server_processes(self) -> list[psutil.Process]:
        root = psutil.Process(self.root)
        found = [root]
        for child in root.children(recursive=True):
            try:
                if child.name() not in SHELL_NAMES:
                    found.append(child)
            except psutil.NoSuchProcess:
                pass
        return found


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def spawn(
    argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=cwd,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def _stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    process.send_signal(sig)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def webterm_direct() -> Iterator[Target]:
    from webterm.protocol import SigningKey, TokenClaims, sign_token, subprotocols_for
    from webterm.pty import parse_listening_line

    key = SigningKey.generate()  # the manager's part: the server gets the public key only
    process, line = spawn([sys.executable, "-m", "webterm", "pty", "--host", "127.0.0.1",
                            "--port", "0", "--name", "bench", "--instance", "b",
                            "--shell", SHELL],
                          env={"WEBTERM_PUBLIC_KEYS": json.dumps(key.key_set().to_jwks())})  # fmt: skip
    try:
        host, port = parse_listening_line(line)
        address = f"{host}:{port}"
        token = sign_token(key, TokenClaims(
            terminal="bench", instance="b", client="", expires_at=int(time.time()) + 3000))  # fmt: skip
        yield Target(f"ws://{address}/ws", "webterm", subprotocols_for(token), root=process.pid)
    finally:
        _stop(process)


@contextmanager
def webterm_proxy() -> Iterator[Target]:
    from webterm.protocol import subprotocols_for

    process, line = spawn([sys.executable, "-m", "webterm", "up", "--port", "0",
                            "--spares", "1", "--shell", SHELL])  # fmt: skip
    try:
        base = line.split()[3].rstrip("/")
        client: dict[str, str] = {}

        def renew() -> tuple[str, list[str]]:
            answer = httpx.post(f"{base}/api/terminal", json=client, timeout=60).json()
            client["client"] = answer["client"]
            return answer["url"], subprotocols_for(answer["token"])

        url, protocols = renew()
        yield Target(url, "webterm", protocols, origin=base, root=process.pid, renew=renew)
    finally:
        _stop(process, signal.SIGINT)


@contextmanager
def terminado_peer() -> Iterator[Target]:
    process, line = spawn([sys.executable, str(ROOT / "peers" / "terminado_server.py")])
    try:
        port = line.rsplit(" ", 1)[1]
        yield Target(f"ws://127.0.0.1:{port}/websocket", "terminado", root=process.pid)
    finally:
        _stop(process)


def _node(script: str) -> Callable[[], Any]:
    @contextmanager
    def peer() -> Iterator[Target]:
        process, line = spawn(["node", script, "0"], cwd=NODE_DIR)
        try:
            port = line.rsplit(" ", 1)[1]
            yield Target(f"ws://127.0.0.1:{port}/", "node", root=process.pid)
        finally:
            _stop(process)

    return peer


TARGETS: dict[str, Callable[[], Any]] = {
    "webterm-direct": webterm_direct,
    "webterm-proxy": webterm_proxy,
    "terminado": terminado_peer,
    "node-binary": _node("binary.js"),
    "node-reference": _node("server.js"),
}


def available() -> bool:
    """The Node client needs the peers' node_modules (``npm ci`` in node-reference)."""
    return (NODE_DIR / "node_modules" / "ws").exists()


def _client(target: Target, **job: Any) -> dict[str, float]:
    if target.renew is not None:
        target.url, target.protocols = target.renew()
    config = {"url": target.url, "kind": target.kind, "protocols": target.protocols,
              "origin": target.origin, **job}  # fmt: skip
    done = subprocess.run(
        ["node", str(NODE_DIR / "client.js"), json.dumps(config)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"bench client failed: {done.stderr.strip()[-500:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def one_round(name: str, size: int, keys: int) -> dict[str, float]:
    """Start ``name`` fresh, flood it once (with its CPU), then time ``keys`` keystrokes."""
    with TARGETS[name]() as target:
        _client(target, mode="echo", keys=5)  # warm: the first shell is up, imports done
        processes = target.server_processes()
        before = cpu_seconds(processes)
        flood = _client(target, mode="flood", size=size)
        cpu = cpu_seconds(processes) - before
        echo = _client(target, mode="echo", keys=keys)
    return {
        "throughput_mb_s": flood["mb_s"],
        "cpu_s_per_50mb": cpu * PER_MB / flood["bytes"],
        "echo_p50_ms": echo["p50_ms"],
        "echo_p99_ms": echo["p99_ms"],
    }


def measure(names: list[str], rounds: int, size: int, keys: int) -> dict[str, dict[str, Any]]:
    """Median and range of every metric over ``rounds`` interleaved rounds."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names:
            row = one_round(name, size, keys)
            samples[name].append(row)
            shown = ", ".join(f"{k} {v:.3g}" for k, v in row.items())
            print(f"  round {index + 1}/{rounds} {name}: {shown}", flush=True)
    results: dict[str, dict[str, Any]] = {}
    for name, rows in samples.items():
        results[name] = {}
        for metric in rows[0]:
            values = [row[metric] for row in rows]
            results[name][metric] = statistics.median(values)
            results[name][f"{metric}_range"] = [min(values), max(values)]
    return results


TARGET_RATIOS = [
    # ours, peer, metric, op, bound (issue #15's targets)
    ("webterm-direct", "node-binary", "throughput_mb_s", ">=", 1.0),
    ("webterm-direct", "terminado", "throughput_mb_s", ">=", 1.5),
    ("webterm-proxy", "node-binary", "throughput_mb_s", ">=", 0.9),
    ("webterm-direct", "node-binary", "cpu_s_per_50mb", "<=", 1.0),
    ("webterm-direct", "node-binary", "echo_p99_ms", "<=", 1.2),
    ("webterm-direct", "node-reference", "throughput_mb_s", ">=", 1.0),
]


def report(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        f"{'target':<16} {'MB/s':>8} {'range':>13} {'CPU s/50MB':>11} {'p50 ms':>7} {'p99 ms':>7}"
    ]
    for name, row in results.items():
        if "throughput_mb_s_range" not in row:  # the no-network ceiling
            lines.append(f"{name:<16} {row['throughput_mb_s']:>8.1f}")
            continue
        lo, hi = row["throughput_mb_s_range"]
        lines.append(
            f"{name:<16} {row['throughput_mb_s']:>8.1f} {f'{lo:.0f}-{hi:.0f}':>13} "
            f"{row['cpu_s_per_50mb']:>11.3f} {row['echo_p50_ms']:>7.3f} {row['echo_p99_ms']:>7.3f}"
        )
    return [*lines, "", *ratio_lines(results)]


def ratio_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    """Each of :data:`TARGET_RATIOS` that ``results`` can tell, with PASS or MISS."""
    lines = []
    for ours, peer, metric, op, bound in TARGET_RATIOS:
        if metric not in results.get(ours, {}) or metric not in results.get(peer, {}):
            continue
        ratio = results[ours][metric] / results[peer][metric]
        ok = ratio >= bound if op == ">=" else ratio <= bound
        verdict = "PASS" if ok else "MISS"
        lines.append(f"{ours} / {peer} {metric}: {ratio:.2f}x (target {op} {bound}x) {verdict}")
    return lines
