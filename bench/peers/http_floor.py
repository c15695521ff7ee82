"""What the webserver's own stack costs per request: Hypercorn (trio worker) answering
``POST /api/terminal`` with a fixed allocation-shaped JSON, and nothing else.

    python bench/peers/http_floor.py raw     # a bare ASGI callable
    python bench/peers/http_floor.py quart   # one quart-trio route

Prints "listening on HOST:PORT" when ready; runs until SIGTERM. No manager, no token,
no limits, no logging: the allocation benchmark measures it with the same load generator
and concurrency as webterm, so webterm's numbers read against what the framework alone
allows on the same machine in the same run."""

from __future__ import annotations

import json
import sys
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart_trio import QuartTrio

BODY = json.dumps(
    {
        "terminal": "terminal-0",
        "url": "ws://127.0.0.1/terminals/terminal-0/ws",
        "token": "t" * 180,  # about the size of a real token
        "reconnect": True,
        "client": "c" * 43,
    }
).encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]


async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def quart_app() -> QuartTrio:
    app = QuartTrio("floor")

    @app.post("/api/terminal")
    async def terminal() -> tuple[bytes, int, dict[str, str]]:
        return BODY, 200, {"content-type": "application/json"}

    return app


async def main(kind: str) -> None:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = config.errorlog = None
    config.keep_alive_timeout = 75.0  # as webterm's services
    app = raw_app if kind == "raw" else quart_app()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, app, config)
        print(f"listening on {binds[0].removeprefix('http://')}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] not in (["raw"], ["quart"]):
        sys.exit("usage: http_floor.py raw|quart")
    trio.run(main, sys.argv[1])
