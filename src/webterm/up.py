"""``webterm up``: the whole product on one machine, in one process tree.

One nursery runs the manager (local backend: terminals are ``webterm pty`` child
processes) and the webserver. A fresh Ed25519 key pair signs tokens for this run only
(the terminals get its public half), and fresh random secrets key the webserver's ids,
the manager's client hashes and the webserver's credential to the manager.
Cancelling (Ctrl-C) stops the webserver, then the manager, which stops every terminal.

Off loopback, each terminal's shell runs in a bubblewrap sandbox by default
(:mod:`webterm.manager.sandbox`). One sandbox is started as a probe before anything
listens, so a machine that cannot run one fails at start, with a message saying how
to fix it.
"""

from __future__ import annotations

import getpass
import logging
import os

import trio

from webterm.config import KeySource, ManagerConfig, UpConfig, WebserverConfig, generate_secret
from webterm.hosts import listens_on_loopback_only
from webterm.manager import sandbox
from webterm.manager.app import serve as serve_manager
from webterm.protocol import SigningKey
from webterm.webserver.app import serve as serve_webserver

log = logging.getLogger("webterm.up")


def unconfined_warning(config: UpConfig) -> str | None:
    """What to warn about when shells run unconfined where others can reach them."""
    if listens_on_loopback_only(config.host):
        return None
    return (
        f"--sandbox none on {config.host}: anyone who can open the page gets a shell as "
        f"{getpass.getuser()} on this machine, with its files, processes and network"
    )


async def serve(
    config: UpConfig, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    chosen = sandbox.choose(
        config.sandbox, config.host, config.sandbox_network, config.sandbox_limits
    )
    if chosen is not None:
        probe_uid = sandbox.pick_uid_base(1) if os.geteuid() == 0 else None
        await sandbox.probe(chosen, host_uid=probe_uid)
    elif (warning := unconfined_warning(config)) is not None:
        log.warning("%s", warning)
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
        max_upload=config.max_upload,
        sandbox=chosen,
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
