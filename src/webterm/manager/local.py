"""The ``local`` backend: each terminal is a ``webterm pty`` child process on loopback.

It behaves like a tiny StatefulSet controller: for every ordinal below ``replicas`` a
task keeps one instance of ``<prefix>-<ordinal>`` running. An instance gets a fresh
instance id (the analogue of a pod UID) and a fresh, empty HOME directory, both thrown
away when it ends, so a recycled terminal never shows the previous user's files. The
process listens on ``--port 0`` and reports its port on its first line of stdout.

Every process runs inside the manager's nursery: cancelling the manager terminates
them all (SIGTERM, then SIGKILL after :data:`STOP_GRACE`); nothing outlives it.

With a sandbox (``ManagerConfig.sandbox``), the terminal process is unchanged: it runs
outside the sandbox, and its shell runs in a bubblewrap sandbox of its own
(:mod:`webterm.manager.sandbox`). The instance's directory then also holds the
sandbox's account files. The sandbox's HOME is a tmpfs of its own, and it ends with
the shell. When we are root, each ordinal has its own host uid for its shell.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from functools import partial
from typing import Final

import httpx
import trio

from webterm.config import PUBLIC_KEYS_ENV, ManagerConfig
from webterm.manager import pool, sandbox
from webterm.manager.backend import BackendDecision
from webterm.pty import parse_listening_line

log = logging.getLogger("webterm.manager.local")

START_TIMEOUT: Final = 20.0
"""Seconds a terminal process may take to listen and answer /healthz (a cold Python
start on a loaded 2-core machine takes 1-3 s)."""

STOP_GRACE: Final = 3.0
"""Seconds between SIGTERM and SIGKILL when a terminal is stopped or recycled."""

STARTS_PER_CORE: Final = 2
"""Terminal processes starting at once per CPU core. Fifty Python processes started
together on two cores each take 20 s or more; a few at a time, the first is ready in
about a second and the last no later than before."""

RESTART_BACKOFF: Final = 1.0
"""Seconds before restarting a terminal whose process died by itself (crash loops
must not spin the CPU)."""


@dataclass
class _Instance:
    uid: str
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


class LocalBackend:
    def __init__(
        self, config: ManagerConfig, *, manager_url: str, prefix: str = "terminal"
    ) -> None:
        self.config = config
        self.manager_url = manager_url
        self.prefix = prefix
        self.replicas = 0
        self.instances: dict[str, _Instance] = {}
        self._loops: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None
        self._events: trio.MemorySendChannel[pool.Event] | None = None
        self._starting = trio.Semaphore(STARTS_PER_CORE * (os.cpu_count() or 1))
        self._layout: sandbox.HostLayout | None = None
        self.uid_base: int | None = None  # first sandbox host uid (root only)
        if config.sandbox is not None and os.geteuid() == 0:
            self.uid_base = sandbox.pick_uid_base(config.max_terminals)

    async def run(
        self,
        events: trio.MemorySendChannel[pool.Event],
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._events = events
        if self.config.sandbox is not None:
            self._layout = await trio.to_thread.run_sync(sandbox.host_layout)
            uids = None
            if self.uid_base is not None:
                uids = f"{self.uid_base}-{self.uid_base + self.config.max_terminals - 1}"
            log.info(
                "terminals are sandboxed (bwrap): %s",
                sandbox.limits_summary(self.config.sandbox, host_uids=uids),
            )
            budget = sandbox.pid_budget_warning(
                self.config.max_terminals, self.config.sandbox.processes
            )
            if budget is not None:
                log.warning("%s", budget)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started(0)
            await trio.sleep_forever()

    async def apply(self, decision: BackendDecision) -> bool:
        """Always durable: the terminals live and die with this process."""
        assert self._nursery is not None, "apply() before run() started"
        if isinstance(decision, pool.ScaleTo):
            self.replicas = decision.replicas
            for ordinal in range(decision.replicas):
                name = f"{self.prefix}-{ordinal}"
                if name not in self._loops:
                    scope = trio.CancelScope()
                    self._loops[name] = scope
                    self._nursery.start_soon(self._keep_running, name, ordinal, scope)
            for name, instance in list(self.instances.items()):
                if int(name.rpartition("-")[2]) >= decision.replicas:
                    instance.scope.cancel()
        elif isinstance(decision, pool.Restart):
            current = self.instances.get(decision.name)
            if current is not None and current.uid == decision.instance:
                current.scope.cancel()
        return True

    async def claim(self, assign: pool.Assign) -> str:
        return assign.address  # one manager, ownership lives in its pool

    async def _keep_running(self, name: str, ordinal: int, loop_scope: trio.CancelScope) -> None:
        """Keep one instance of ``name`` running while its ordinal is wanted."""
        try:
            with loop_scope:
                while ordinal < self.replicas:
                    instance = _Instance(uid=str(uuid.uuid4()))
                    self.instances[name] = instance
                    ended_by_us = False
                    with instance.scope:
                        await self._run_instance(name, ordinal, instance.uid)
                    ended_by_us = instance.scope.cancelled_caught or instance.scope.cancel_called
                    if not ended_by_us and ordinal < self.replicas:
                        await trio.sleep(RESTART_BACKOFF)
        finally:
            self.instances.pop(name, None)
            self._loops.pop(name, None)

    async def _send(self, event: pool.Event) -> None:
        assert self._events is not None
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._events.send(event)

    async def _run_instance(self, name: str, ordinal: int, uid: str) -> None:
        """One instance of ``name``: its HOME, its events, its process. However it ends,
        even cancelled at its first checkpoint, the HOME directory is removed and, once
        the pool has heard of it, the pool hears it is gone."""
        home = await trio.to_thread.run_sync(partial(tempfile.mkdtemp, prefix=f"webterm-{name}-"))
        appeared = False
        try:
            await self._send(pool.TerminalAppeared(name=name, instance=uid))
            appeared = True  # a channel send is atomic: cancelled means not sent
            await self._run_process(name, ordinal, uid, home)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(shutil.rmtree, home, True)
                if appeared:
                    await self._send(pool.TerminalGone(name=name, instance=uid))

    async def _run_process(self, name: str, ordinal: int, uid: str, home: str) -> None:
        """Start the terminal process, report it ready, and wait for it to end; it is
        stopped (shielded) however this ends."""
        argv = [
            sys.executable, "-m", "webterm", "pty",
            "--host", self.config.terminal_host, "--port", "0",
            "--name", name, "--instance", uid,
            "--manager-url", self.manager_url,
            "--idle-timeout", str(self.config.idle_timeout),
        ]  # fmt: skip
        if self.config.sandbox is not None:
            argv += await self._sandbox_args(name, ordinal, home)
        elif self.config.shell:
            argv += ["--shell", shlex.join(self.config.shell)]
        env = {
            # none of the manager's own settings (its key or secret files among them)
            **{k: v for k, v in os.environ.items() if not k.startswith("WEBTERM_")},
            # public keys only: a terminal can check tokens, never make one
            PUBLIC_KEYS_ENV: json.dumps(self.config.public_keys.to_jwks()),
            "HOME": home,
            "WEBTERM_INSTANCE": uid,
        }
        await self._starting.acquire()  # released once this one listens (or failed)
        try:
            process = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                env=env,
                cwd=home,
                start_new_session=True,
            )
        except BaseException:
            self._starting.release()
            raise
        try:
            assert process.stdout is not None
            try:
                with trio.fail_after(START_TIMEOUT):
                    address = await _read_address(process.stdout)
                    await _wait_healthy(address)
            except (trio.TooSlowError, OSError, ValueError) as exc:
                log.warning("terminal %s did not start: %s", name, exc or "timed out")
                await self._send(
                    pool.TerminalFailed(name=name, instance=uid, reason=str(exc) or "timed out")
                )
                return
            finally:
                self._starting.release()
            await self._send(pool.TerminalReady(name=name, instance=uid, address=address))
            log.info("terminal %s ready at %s", name, address)
            await _drain(process.stdout)
            await process.wait()
        finally:
            with trio.CancelScope(shield=True):
                await _stop(process)

    async def _sandbox_args(self, name: str, ordinal: int, home: str) -> list[str]:
        """The terminal server's flags that put its shell in a sandbox of its own."""
        config = self.config.sandbox
        assert config is not None
        assert self._layout is not None
        await trio.to_thread.run_sync(sandbox.write_account_files, home, name)
        shell = sandbox.wrap(
            self.config.shell or sandbox.default_shell(),
            config=config,
            layout=self._layout,
            files_dir=home,
            hostname=name,
            host_uid=None if self.uid_base is None else self.uid_base + ordinal,
        )
        # the process limit is set inside the sandbox; ours only bounds the host level
        host_nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
        return [
            "--shell", shlex.join(shell),
            f"--max-processes={host_nproc}",
            f"--max-open-files={config.open_files}",
        ]  # fmt: skip


async def _read_address(stdout: trio.abc.ReceiveStream) -> str:
    buffer = b""
    while b"\n" not in buffer:
        data = await stdout.receive_some(4096)
        if not data:
            raise ValueError("terminal process exited before listening")
        buffer += data
    host, port = parse_listening_line(buffer.split(b"\n", 1)[0].decode())
    return f"{host}:{port}"


async def _wait_healthy(address: str) -> None:
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            try:
                response = await client.get(f"http://{address}/healthz")
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await trio.sleep(0.05)


async def _drain(stdout: trio.abc.ReceiveStream) -> None:
    """Read stdout to its end so the child never blocks on a full pipe."""
    while await stdout.receive_some(65536):
        pass


async def _stop(process: trio.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    with trio.move_on_after(STOP_GRACE):
        await process.wait()
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()
