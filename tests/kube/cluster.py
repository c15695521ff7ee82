"""`nox -s cluster`: the whole simulated stack for a person to try in a browser.

The Kubernetes API stand-in (its StatefulSet controller and kubelet run each pod as a
real `webterm pty` process on its own loopback address), the manager with the
kubernetes backend talking to it through a kubeconfig, and the webserver in front.
Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import logging
import socket
import tempfile
from pathlib import Path

import trio

from tests.credentials import CREDENTIAL, WEBSERVER_SECRET
from tests.kubeapi import MANAGER_ROLE_RULES, Realism, run_kube_api
from webterm.cli import run_until_signalled
from webterm.config import ManagerConfig, WebserverConfig
from webterm.manager.app import serve as serve_manager
from webterm.webserver.app import serve as serve_webserver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run(
    args: argparse.Namespace, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    manager_port = _free_port()
    with tempfile.TemporaryDirectory(prefix="webterm-cluster-") as directory:
        async with (
            run_kube_api(
                Path(directory),
                terminal_replicas=0,
                rbac=MANAGER_ROLE_RULES,
                realism=Realism() if args.real_timing else Realism.fast(),
                pod_args=("--manager-url", f"http://127.0.0.1:{manager_port}"),
            ) as api,
            trio.open_nursery() as nursery,
        ):
            await nursery.start(
                serve_manager,
                ManagerConfig(
                    secret=api.secret, signing_key=api.signing_key,
                    webserver_credential=CREDENTIAL, backend="kubernetes", port=manager_port,
                    kubeconfig=str(api.kubeconfig), spares=args.spares,
                    max_terminals=args.max_terminals,
                ),
            )  # fmt: skip
            port = await nursery.start(
                serve_webserver,
                WebserverConfig(
                    secret=WEBSERVER_SECRET, manager_url=f"http://127.0.0.1:{manager_port}",
                    manager_credential=CREDENTIAL, port=args.port,
                ),
            )  # fmt: skip
            print(f"kubeconfig of the stand-in: {api.kubeconfig}", flush=True)
            print(f"webterm (simulated cluster) is up: http://127.0.0.1:{port}/", flush=True)
            task_status.started()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--spares", type=int, default=2)
    parser.add_argument("--max-terminals", type=int, default=10)
    parser.add_argument(
        "--real-timing",
        action="store_true",
        help="a real cluster's timing (pods take 2-30 s to start...) instead of test speed",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    trio.run(run_until_signalled, lambda _: run(args), None)


if __name__ == "__main__":
    main()
