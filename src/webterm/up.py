"""``webterm up``: the whole product on one machine, in one process tree.

One nursery runs the manager (local backend: terminals are ``webterm pty`` child
processes) and the webserver. A fresh Ed25519 key pair signs tokens for this run only
(the terminals get its public half), and fresh random secrets key the webserver's ids,
the manager's client hashes and the webserver's credential to the manager.
Cancelling (Ctrl-C) stops the webserver, then the manager, which stops every terminal.
"""

from __future__ import annotations

import logging

import trio

from webterm.config import KeySource, ManagerConfig, UpConfig, WebserverConfig, generate_secret
from webterm.manager.app import serve as serve_manager
from webterm.protocol import SigningKey
from webterm.webserver.app import serve as serve_webserver

log = logging.getLogger("webterm.up")


async def serve(
    config: UpConfig, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    credential = generate_secret()
    manager_config = ManagerConfig(
        secret=generate_secret(),
        signing_key=SigningKey.generate(),
        webserver_credential=credential,
        backend="local",
        host="127.0.0.1",
        port=0,
        spares=config.spares,
        max_terminals=config.max_terminals,
        shell=config.shell,
        idle_timeout=config.idle_timeout,
    )
    async with trio.open_nursery() as nursery:
        manager_port = await nursery.start(serve_manager, manager_config)
        webserver_config = WebserverConfig(
            secret=generate_secret(),
            manager_url=f"http://127.0.0.1:{manager_port}",
            manager_credential=credential,
            keys=KeySource(keys=manager_config.public_keys),
            host=config.host,
            port=config.port,
            identity=config.identity,
        )
        port = await nursery.start(serve_webserver, webserver_config)
        shown = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
        print(f"webterm is up: http://{shown}:{port}/  (Ctrl-C to stop)", flush=True)
        task_status.started(port)
