"""Measure the WebSocket proxy's throughput and round-trip latency (not a test).

    .venv/bin/python bench/measure_proxy.py [--megabytes 50] [--frame 65536]

Three processes on loopback, so that each side has its own interpreter as in
production: a trio-websocket *terminal* stand-in that floods binary frames (and echoes
whatever it is sent), the webserver (``webterm.webserver.app.serve`` with the manager
stood in by an ``httpx.MockTransport``), and this process as the *browser*. The same
flood is also measured without the proxy, for the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import httpx
import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketRequest,
    open_websocket_url,
    serve_websocket,
)

from webterm.config import WebserverConfig
from webterm.protocol import SUBPROTOCOL, subprotocols_for

from ..credentials import CREDENTIAL, KEY_SOURCE
from ..credentials import token as make_token

SECRET = b"measure-proxy-secret-0123456789ab"
NAME = "bench-0"
INSTANCE = "bench-instance"
MEBIBYTE = 1024 * 1024


async def terminal(frame: int) -> None:
    """Per connection: text "flood N" → N bytes in ``frame``-sized binary frames then
    text "done"; anything else is echoed back as it came."""
    chunk = bytes(range(256)) * (frame // 256)

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept(subprotocol=SUBPROTOCOL)
        try:
            while True:
                message = await ws.get_message()
                if isinstance(message, str) and message.startswith("flood "):
                    left = int(message.split()[1])
                    while left > 0:
                        await ws.send_message(chunk[: min(left, frame)])
                        left -= frame
                    await ws.send_message("done")
                else:
                    await ws.send_message(message)
        except ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve_websocket(
                handler, "127.0.0.1", 0, None, max_message_size=4 * MEBIBYTE,
                task_status=task_status,
            )
        )  # fmt: skip
        print(server.port, flush=True)


async def proxy(backend_port: int) -> None:
    from webterm.webserver.app import serve

    def manager(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={
            "name": NAME, "state": "in-use", "instance": INSTANCE,
            "address": f"127.0.0.1:{backend_port}",
        })  # fmt: skip

    config = WebserverConfig(
        secret=SECRET,
        manager_url="http://manager",
        manager_credential=CREDENTIAL,
        keys=KEY_SOURCE,
        port=0,
    )
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            lambda task_status: serve(
                config, task_status=task_status, manager_transport=httpx.MockTransport(manager)
            )
        )
        print(port, flush=True)


def spawn(*args: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, __file__, *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, int(process.stdout.readline())


async def browser(url: str, size: int, pings: int) -> tuple[float, float, float]:
    token = make_token(NAME, INSTANCE, ttl=600)
    async with open_websocket_url(
        url, subprotocols=subprotocols_for(token), max_message_size=4 * MEBIBYTE,
        receive_buffer_size=256 * 1024,
    ) as ws:  # fmt: skip
        await ws.send_message("flood 1000")  # warm up
        while await ws.get_message() != "done":
            pass
        started = time.perf_counter()
        await ws.send_message(f"flood {size}")
        received = 0
        while True:
            message = await ws.get_message()
            if message == "done":
                break
            received += len(message)
        rate = received / (time.perf_counter() - started) / 1e6
        assert received == size
        samples = []
        for _ in range(pings):
            started = time.perf_counter()
            await ws.send_message(b"k")
            await ws.get_message()
            samples.append((time.perf_counter() - started) * 1000)
        samples.sort()
        return rate, samples[len(samples) // 2], samples[int(len(samples) * 0.99) - 1]


async def measure(args: argparse.Namespace) -> None:
    size = int(args.megabytes * 1e6)
    backend, backend_port = spawn("--terminal", str(args.frame))
    web, web_port = spawn("--proxy", str(backend_port))
    try:
        for label, url in [
            ("direct", f"ws://127.0.0.1:{backend_port}/ws"),
            ("proxied", f"ws://127.0.0.1:{web_port}/terminals/{NAME}/ws"),
        ]:
            runs = [await browser(url, size, args.pings) for _ in range(args.repeat)]
            rate = statistics.median(r[0] for r in runs)
            p50 = statistics.median(r[1] for r in runs)
            p99 = statistics.median(r[2] for r in runs)
            print(f"{label:8} {rate:7.1f} MB/s   echo p50 {p50:.3f} ms  p99 {p99:.3f} ms")
    finally:
        for process in (web, backend):
            process.terminate()
            process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabytes", type=float, default=50.0)
    parser.add_argument("--frame", type=int, default=65536)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pings", type=int, default=500)
    parser.add_argument("--terminal", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--proxy", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        if args.terminal is not None:
            trio.run(terminal, args.terminal)
        elif args.proxy is not None:
            trio.run(proxy, args.proxy)
        else:
            trio.run(measure, args)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
