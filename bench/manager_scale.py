"""Manager at scale: watch events per second applied through the real client, reflector,
backend and pool, with 10,000 terminal pods tracked and 1,000 waiters subscribed; and the
manager's memory, in all and per tracked pod.

The Kubernetes API is a small HTTP/1.1 server in a child process (so its data is not in
the manager's RSS) that answers the manager's real client code over loopback: a list of
N pods (90% Ready, 10% still starting: each of those gets a readiness watchdog, the
per-pod waiters that events are fanned out to), the scale subresource, then one chunked
watch stream of realistic pod JSON (~1.6 KB per event, MODIFIED events round-robin over
every pod, each with a new resourceVersion; one in CHANGE_EVERY flips the pod's readiness,
which the pool and the pod's waiters act on; the rest is status churn, which the backend
absorbs). Measured: from the first watch event until the last is applied and the pool
has caught up.

    python bench/manager_scale.py [--pods 10000] [--events 200000]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import trio
import trio.testing
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # for tests.httphead

from tests.httphead import RequestReader
from webterm.config import ManagerConfig
from webterm.manager.app import Manager
from webterm.manager.kube.backend import KubernetesBackend
from webterm.manager.kube.client import ClusterConnection, KubeClient
from webterm.protocol import SigningKey

CHANGE_EVERY = 10  # --pods must be a multiple of it (each flip is flipped back)


def pod(i: int, ready: bool, rv: int) -> dict[str, Any]:
    """A pod as the API returns it, trimmed of nothing the manager would not also get."""
    name = f"terminal-{i}"
    return {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {
            "name": name, "namespace": "webterm", "uid": f"0b6f3c8e-{i:04d}-4a8e-9d7f-5c4b3a2f1e0d",
            "resourceVersion": str(rv), "generateName": "terminal-",
            "creationTimestamp": "2026-11-25T10:00:00Z",
            "labels": {
                "app.kubernetes.io/name": "webterm", "app.kubernetes.io/component": "terminal",
                "statefulset.kubernetes.io/pod-name": name,
                "controller-revision-hash": "terminal-6d8f9c7b5d", "apps.kubernetes.io/pod-index": str(i),
            },
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "terminal",
                "uid": "5d1c2b3a-0000-4f5e-8d7c-6b5a4f3e2d1c", "controller": True,
                "blockOwnerDeletion": True,
            }],
        },
        "spec": {
            "containers": [{
                "name": "terminal", "image": "ghcr.io/webterm/webterm-terminal:0.1.0",
                "args": ["--port=7681", "--shell=/bin/bash --login"],
                "ports": [{"name": "terminal", "containerPort": 7681, "protocol": "TCP"}],
                "resources": {"limits": {"cpu": "1", "memory": "512Mi"}},
            }],
            "hostname": name, "subdomain": "terminal", "nodeName": "node-1",
            "serviceAccountName": "terminal", "automountServiceAccountToken": False,
        },
        "status": {
            "phase": "Running" if ready else "Pending",
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-11-25T10:00:01Z"},
                {"type": "Ready", "status": "True" if ready else "False",
                 "lastTransitionTime": "2026-11-25T10:00:02Z"},
                {"type": "ContainersReady", "status": "True" if ready else "False",
                 "lastTransitionTime": "2026-11-25T10:00:02Z"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-25T10:00:00Z"},
            ],
            "hostIP": "172.18.0.2", "podIP": f"10.244.{i // 250}.{i % 250 + 2}",
            "startTime": "2026-11-25T10:00:00Z", "qosClass": "Burstable",
        },
    }  # fmt: skip


class FakeApi:
    """Just enough of the API server, as raw HTTP/1.1 with keep-alive."""

    def __init__(self, pods: int, events: int, starting_every: int = 10) -> None:
        self.pods = pods
        self.events = events
        self.ready = [i % starting_every != 0 for i in range(pods)]
        self.template = [
            json.dumps({"type": "MODIFIED", "object": pod(i, self.ready[i], 999_999_999)})
            for i in range(pods)
        ]
        # the same pods with their readiness flipped: real changes for the pool
        self.flipped = [
            json.dumps({"type": "MODIFIED", "object": pod(i, not self.ready[i], 999_999_999)})
            for i in range(pods)
        ]
        items = [pod(i, self.ready[i], i + 1) for i in range(pods)]
        self.listing = json.dumps(
            {"kind": "PodList", "metadata": {"resourceVersion": str(pods + 1)}, "items": items}
        ).encode()
        self.watches = 0

    async def serve(self, stream: trio.SocketStream) -> None:
        requests = RequestReader(stream)
        while (request := await requests.next()) is not None:
            target, path = request.target, request.path
            if path.endswith("/scale"):
                await self.send(stream, json.dumps({"spec": {"replicas": self.pods}}).encode())
            elif path.endswith("/pods") and "watch=1" in target:
                self.watches += 1
                if self.watches > 1:
                    await trio.sleep_forever()  # the benchmark is over before this matters
                await self.stream_events(stream)
            elif path.endswith("/pods"):
                await self.send(stream, self.listing)
            else:
                await self.send(stream, b'{"kind":"Status","code":404,"reason":"NotFound"}', 404)

    async def send(self, stream: trio.SocketStream, body: bytes, status: int = 200) -> None:
        head = (
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        await stream.send_all(head.encode() + body)

    async def stream_events(self, stream: trio.SocketStream) -> None:
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        version = self.pods + 1
        chunk: list[str] = []
        for n in range(self.events):
            version += 1
            # one event in CHANGE_EVERY flips a pod's readiness (and the next one to reach
            # that pod flips it back); the rest are status churn, as in a real cluster
            lines = self.flipped if (n // self.pods) % 2 and n % CHANGE_EVERY == 0 else None
            line = (lines or self.template)[n % self.pods]
            chunk.append(line.replace("999999999", str(version)))
            if len(chunk) == 64 or n == self.events - 1:
                data = ("\n".join(chunk) + "\n").encode()
                await stream.send_all(b"%x\r\n%s\r\n" % (len(data), data))
                chunk.clear()
        await stream.send_all(b"0\r\n\r\n")


async def serve_api(pods: int, events: int) -> None:
    api = FakeApi(pods, events)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(listeners[0].socket.getsockname()[1], flush=True)
    await trio.serve_listeners(api.serve, listeners)


async def measure(pods: int, events: int, port: int) -> dict[str, float]:
    process = psutil.Process()
    gc.collect()
    rss_start = process.memory_info().rss
    connection = ClusterConnection(f"http://127.0.0.1:{port}", False, None, None, "webterm")
    config = ManagerConfig(
        secret=b"b" * 32, signing_key=SigningKey.generate(), webserver_credential=b"c" * 32,
        backend="kubernetes", spares=2, max_terminals=pods + 10,
        ready_timeout=3600.0, stale_after=3600.0,
    )  # fmt: skip
    registry = CollectorRegistry()
    backend = KubernetesBackend(config, client=KubeClient(connection), registry=registry)
    manager = Manager(config, backend, registry)
    seen = 0
    first = 0.0
    done = trio.Event()
    on_event = backend._on_event

    def counting(kind: str, info: Any) -> None:
        nonlocal seen, first
        seen += 1
        if seen == 1:
            first = time.perf_counter()
        on_event(kind, info)
        if seen == events:
            done.set()

    backend._on_event = counting  # type: ignore[method-assign]
    watchdog = backend._readiness_watchdog
    started: set[str] = set()

    async def counted_watchdog(name: str, uid: str) -> None:
        started.add(uid)
        await watchdog(name, uid)

    backend._readiness_watchdog = counted_watchdog  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        # readiness watchdogs, one per starting pod, as the backend's first replay of
        # its cache started them (counted as started: one may end at once, when its
        # pod's flip to Ready has already landed)
        await trio.testing.wait_all_tasks_blocked()
        waiters = len(started | backend._watched)
        gc.collect()
        rss_tracking = process.memory_info().rss
        with trio.fail_after(600):
            await done.wait()
            await trio.testing.wait_all_tasks_blocked()  # the pool has caught up
        last = time.perf_counter()
        rss_end = process.memory_info().rss
        nursery.cancel_scope.cancel()
    return {
        "pods": pods,
        "waiters": waiters,
        "events": events,
        "events_per_s": (events - 1) / (last - first),
        "rss_mib": max(rss_tracking, rss_end) / 2**20,
        "rss_per_pod_kib": (rss_tracking - rss_start) / pods / 1024,
    }


def run(pods: int = 10_000, events: int = 200_000) -> dict[str, float]:
    """Start the API in a child process, measure against it, stop it."""
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--pods", str(pods), "--events", str(events)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        return trio.run(measure, pods, events, port)
    finally:
        server.kill()
        server.wait()


EVENTS_TARGET = 50_000
RSS_TARGET_MIB = 150


def report(row: dict[str, float]) -> list[str]:
    """The row in words, then the two targets, each ending PASS or MISS."""
    rate, rss = row["events_per_s"], row["rss_mib"]
    return [
        f"manager: {row['pods']:.0f} pods, {row['waiters']:.0f} waiters: "
        f"{rate:,.0f} watch events/s, RSS {rss:.0f} MiB "
        f"({row['rss_per_pod_kib']:.2f} KiB per tracked pod)",
        f"manager events/s: {rate:,.0f} (target >= {EVENTS_TARGET:,}) "
        f"{'PASS' if rate >= EVENTS_TARGET else 'MISS'}",
        f"manager RSS: {rss:.0f} MiB (target <= {RSS_TARGET_MIB} MiB) "
        f"{'PASS' if rss <= RSS_TARGET_MIB else 'MISS'}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        trio.run(serve_api, args.pods, args.events)
    else:
        row = run(args.pods, args.events)
        print("\n".join(report(row)))
        print(json.dumps(row))


if __name__ == "__main__":
    main()
