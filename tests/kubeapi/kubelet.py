"""A kubelet (plus a trivial scheduler) for the stand-in's single node.

Each pod gets one task in the kubelet's nursery that plays its life:

1. bind it to the node (``spec.nodeName``, condition PodScheduled);
2. stay Pending while a test holds it (``faults.hold_pending``) or for ``start_delay``;
3. give it a unique loopback IP (127.A.B.C: Linux routes all of 127/8 to lo) and start
   its container — a REAL process (by default ``webterm pty`` listening on
   ``<podIP>:7681``; the command is a factory) or, in ``fake`` mode, nothing at all;
   phase Running;
4. run the pod's readinessProbe (httpGet/tcpSocket; no probe: ready once running)
   and flip the Ready condition; restart the container when it exits
   (restartPolicy Always/OnFailure, with back-off, restartCount), or end the pod
   (Succeeded/Failed) when it may not restart;
5. on deletion (deletionTimestamp): SIGTERM, wait for the grace period, SIGKILL the
   process and everything it spawned, report the containers terminated, then remove
   the pod object (DELETED). A force delete (the object vanishes) kills at once.

The container process is opened with ``trio.lowlevel.open_process`` rather than
``run_process`` so that cancelling the running phase does not kill it: the
termination phase decides how it dies."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal

import httpx
import psutil  # type: ignore[import-untyped]
import trio

from webterm.config import PUBLIC_KEYS_ENV
from webterm.protocol import KeySet
from webterm.pty import parse_listening_line

from . import resources as R
from .controllers import condition
from .faults import Faults
from .realism import Realism
from .store import Change, Obj, Store, timestamp

log = logging.getLogger("kubeapi.kubelet")

CONTAINER_PORT: Final = 7681  # the terminal container's port (ARCHITECTURE.md, Kubernetes objects)
LOG_LINES: Final = 2000  # container log lines kept per pod for GET .../log
RESTART_RESET_AFTER: Final = (
    10.0  # seconds of running after which the restart back-off resets (kubelet: 10 min)
)
SHUTDOWN_GRACE: Final = 1.0  # seconds a container gets after SIGTERM when the whole stand-in stops
FAKEPOD: Final = Path(__file__).with_name("fakepod.py")
OCTET_CLAIM_PORT: Final = 29999  # below the NodePort range; bound on 127.A.0.1 to own block A


@dataclass(frozen=True, kw_only=True)
class PodContext:
    """What a pod-command factory gets to build a container's command line."""

    name: str
    namespace: str
    uid: str
    ip: str
    port: int
    pod: Obj  # the pod as stored when the container starts (read-only)
    env: Mapping[str, str]  # the container's env from the pod spec, resolved


@dataclass(frozen=True, kw_only=True)
class ContainerCommand:
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)  # on top of the inherited environment


PodCommand = Callable[[PodContext], ContainerCommand]


def webterm_pty_command(
    public_keys: KeySet,
    *,
    extra_args: Sequence[str] | Callable[[], Sequence[str]] = (),
    extra_env: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
) -> PodCommand:
    """``python -m webterm pty --host <podIP> --port 7681 --name <pod> --instance <uid>``
    with WEBTERM_PUBLIC_KEYS (the manager's public keys: all a terminal pod holds) and
    WEBTERM_INSTANCE set. ``extra_args``/``extra_env`` may be
    callables, read at each container start (e.g. a manager URL known later)."""

    def build(ctx: PodContext) -> ContainerCommand:
        args = extra_args() if callable(extra_args) else extra_args
        env = extra_env() if callable(extra_env) else (extra_env or {})
        return ContainerCommand(
            argv=[
                sys.executable,
                "-m",
                "webterm",
                "pty",
                "--host",
                ctx.ip,
                "--port",
                str(ctx.port),
                "--name",
                ctx.name,
                "--instance",
                ctx.uid,
                *args,
            ],
            env={
                PUBLIC_KEYS_ENV: json.dumps(public_keys.to_jwks()),
                "WEBTERM_INSTANCE": ctx.uid,
                **env,
            },
        )

    return build


FAKEPOD_ARGS_ANNOTATION: Final = "kubeapi.test/fakepod-args"


def fake_pod_command(*extra_args: str) -> PodCommand:
    """A real but tiny process (``fakepod.py``) answering /healthz: for tests of the
    stand-in and of code that needs processes but not shells. A pod annotation
    ``kubeapi.test/fakepod-args`` adds per-pod options (e.g. ``--ignore-sigterm``)."""

    def build(ctx: PodContext) -> ContainerCommand:
        per_pod = (
            (ctx.pod["metadata"].get("annotations") or {}).get(FAKEPOD_ARGS_ANNOTATION) or ""
        ).split()
        return ContainerCommand(
            argv=[
                sys.executable,
                "-I",
                str(FAKEPOD),
                "--host",
                ctx.ip,
                "--port",
                str(ctx.port),
                *extra_args,
                *per_pod,
            ],
            env={"WEBTERM_INSTANCE": ctx.uid},
        )

    return build


@dataclass(frozen=True, kw_only=True)
class KubeletConfig:
    mode: Literal["process", "fake"] = "process"
    """``process``: each pod runs a real process; ``fake``: no process, a pod is Ready
    right after it starts (thousands of pods are cheap)."""
    command: PodCommand | None = None
    """Factory for the container command (default: ``webterm pty``)."""
    node_name: str = "standin-node"
    start_delay: float = 0.0  # seconds Pending before the container starts (image pull, ...)
    probe_period: float = 0.05  # seconds between readiness probes until Ready (periodSeconds)
    ready_probe_period: float = 0.5  # seconds between probes once Ready
    probe_timeout: float = 2.0  # seconds (timeoutSeconds)
    failure_threshold: int = 3  # failed probes before a Ready pod turns unready
    restart_backoff: float = 0.1  # seconds before the first restart (kubelet: 10 s)
    restart_backoff_max: float = 2.0  # cap of the doubling back-off (kubelet: 5 min)
    ip_octet: int | None = None  # 127.<octet>.x.y for pod IPs; None: random per stand-in


class PodIPAllocator:
    """Unique loopback addresses 127.A.B.C (C in 1..254), never reused within one
    stand-in. A is random per stand-in so that stand-ins of concurrent test runs on
    one machine do not collide; an address whose port is already bound is skipped."""

    def __init__(self, octet: int | None = None) -> None:
        # Claim the block: a socket bound (not listening, no SO_REUSEADDR) to
        # 127.A.0.1:OCTET_CLAIM_PORT fails to bind in a second stand-in that picked the
        # same A, in this process or another one, so that one picks again.
        self._claim = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        candidates = [octet] if octet is not None else random.sample(range(16, 251), 235)
        for candidate in candidates:
            try:
                self._claim.bind((f"127.{candidate}.0.1", OCTET_CLAIM_PORT))
            except OSError:
                continue
            self.octet = candidate
            break
        else:
            self._claim.close()
            raise RuntimeError("no free 127.A.0.0/16 block for pod IPs")
        self._next = 254  # 127.A.0.x is kept for the node (127.A.0.1)

    def close(self) -> None:
        self._claim.close()

    @property
    def node_ip(self) -> str:
        return f"127.{self.octet}.0.1"

    def allocate(self, port: int) -> str:
        while True:
            n = self._next
            self._next += 1
            b, c = divmod(n, 254)
            if b > 255:
                raise RuntimeError("pod IP range exhausted")
            ip = f"127.{self.octet}.{b}.{c + 1}"
            if _bindable(ip, port):
                return ip


def _bindable(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


class PodRuntime:
    """The kubelet's record of one pod incarnation (one UID)."""

    def __init__(self, namespace: str, name: str, uid: str) -> None:
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.task_scope = trio.CancelScope()  # cancelled when the object vanished: kill now
        self.run_scope = trio.CancelScope()  # cancelled when deletion starts: terminate
        self.deleting = False
        self.grace_deadline = math.inf
        self.grace_scope: trio.CancelScope | None = None
        self.finished = False  # we removed the object ourselves
        self.process: trio.Process | None = None
        self.ip: str | None = None
        self.listening: str | None = None  # HOST:PORT the process said it listens on
        self.logs: deque[str] = deque(maxlen=LOG_LINES)
        self.exit_requested = trio.Event()  # fake mode: "the container exits"
        self.exit_signal = 0
        self.container_id = ""
        self.descendants: list[psutil.Process] = []
        self.probes = 0  # probes run so far (readiness, liveness, startup)

    def request_deletion(self, grace: float) -> None:
        deadline = trio.current_time() + grace
        if deadline < self.grace_deadline:
            self.grace_deadline = deadline
            if self.grace_scope is not None:
                self.grace_scope.deadline = deadline
        if not self.deleting:
            self.deleting = True
            self.run_scope.cancel()


def _set_condition(
    status: dict[str, Any], kind: str, value: bool, reason: str | None = None
) -> None:
    text = "True" if value else "False"
    conditions: list[dict[str, Any]] = status.setdefault("conditions", [])
    for cond in conditions:
        if cond.get("type") == kind:
            if cond.get("status") != text:
                cond["status"] = text
                cond["lastTransitionTime"] = timestamp()
            if reason:
                cond["reason"] = reason
            else:
                cond.pop("reason", None)
            return
    cond = {"type": kind, "status": text, "lastProbeTime": None, "lastTransitionTime": timestamp()}
    if reason:
        cond["reason"] = reason
    conditions.append(cond)


def _set_phase(pod: Obj, *, phase: str) -> None:
    pod["status"]["phase"] = phase


def resolve_env(pod: Obj, container: Obj) -> dict[str, str]:
    """The container's ``env`` with literal values and downward-API fieldRefs resolved
    (secretKeyRef/configMapKeyRef are not supported and are skipped)."""
    meta = pod["metadata"]
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    out: dict[str, str] = {}
    for var in container.get("env") or []:
        name = var.get("name")
        if not name:
            continue
        if "value" in var:
            out[name] = str(var["value"])
            continue
        path = ((var.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        if not path:
            continue
        simple = {
            "metadata.name": meta.get("name"),
            "metadata.namespace": meta.get("namespace"),
            "metadata.uid": meta.get("uid"),
            "spec.nodeName": spec.get("nodeName"),
            "spec.serviceAccountName": spec.get("serviceAccountName"),
            "status.podIP": status.get("podIP"),
            "status.hostIP": status.get("hostIP"),
            "status.podIPs": ",".join(p["ip"] for p in status.get("podIPs") or []),
        }
        if path in simple:
            out[name] = str(simple[path] or "")
        elif path.startswith(("metadata.labels['", "metadata.annotations['")):
            which, _, rest = path.partition("['")
            key = rest.rstrip("]").rstrip("'")
            source = meta.get("labels" if which.endswith("labels") else "annotations") or {}
            out[name] = str(source.get(key, ""))
    return out


class Kubelet:
    def __init__(
        self,
        store: Store,
        faults: Faults,
        config: KubeletConfig,
        *,
        public_keys: KeySet,
        realism: Realism | None = None,
    ) -> None:
        self.store = store
        self.faults = faults
        self.config = config
        self.realism = realism or Realism.instant()
        self.ips = PodIPAllocator(config.ip_octet)
        self.extra_args: list[str] = []
        self.extra_env: dict[str, str] = {}
        self.command: PodCommand = config.command or webterm_pty_command(
            public_keys, extra_args=lambda: self.extra_args, extra_env=lambda: self.extra_env
        )
        self.pods: dict[str, PodRuntime] = {}  # by UID
        self._http: httpx.AsyncClient | None = None
        faults.kill_hook = self.kill

    # ------------------------------------------------------------------ lookups

    def runtime(self, name: str, namespace: str = "") -> PodRuntime | None:
        best = None
        for rt in self.pods.values():
            if rt.name == name and (not namespace or rt.namespace == namespace) and not rt.finished:
                best = rt
        return best

    def logs(self, namespace: str, name: str) -> str | None:
        rt = self.runtime(name, namespace)
        return "".join(line + "\n" for line in rt.logs) if rt else None

    def kill(self, name: str, sig: int, namespace: str = "") -> bool:
        rt = self.runtime(name, namespace)
        if rt is None:
            return False
        if self.config.mode == "fake":
            if rt.ip is None:
                return False
            rt.exit_signal = sig
            rt.exit_requested.set()
            return True
        proc = rt.process
        if proc is None or proc.returncode is not None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        return True

    # ------------------------------------------------------------------ main loop

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Probes open a fresh connection each time, as the kubelet does (no keep-alive
        # pool to leak when everything is cancelled at once).
        http = httpx.AsyncClient(
            trust_env=False,
            timeout=None,  # each probe has its own deadline (timeoutSeconds)
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        self._http = http
        try:
            async with trio.open_nursery() as nursery:
                with self.store.subscribe(R.PODS) as (_, sub):
                    for pod in list(self.store.objects(R.PODS)):
                        self._observe(nursery, "ADDED", pod)
                    task_status.started()
                    async for change in sub.receive:
                        self._on_change(nursery, change)
        finally:
            with trio.CancelScope(shield=True):
                await http.aclose()
            self.ips.close()

    def _on_change(self, nursery: trio.Nursery, change: Change) -> None:
        if change.type == "DELETED":
            rt = self.pods.get(change.obj["metadata"]["uid"])
            if rt is not None and not rt.finished:
                rt.task_scope.cancel()  # force-deleted: no grace
            return
        self._observe(nursery, change.type, change.obj)

    def _observe(self, nursery: trio.Nursery, kind: str, pod: Obj) -> None:
        meta = pod["metadata"]
        rt = self.pods.get(meta["uid"])
        if rt is None:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") and meta.get(
                "deletionTimestamp"
            ):
                return
            rt = self.pods[meta["uid"]] = PodRuntime(meta["namespace"], meta["name"], meta["uid"])
            nursery.start_soon(self._pod_task, rt, name=f"kubelet:{meta['name']}")
        if meta.get("deletionTimestamp"):
            rt.request_deletion(float(meta.get("deletionGracePeriodSeconds") or 0))

    # ------------------------------------------------------------------ one pod

    async def _write(self, rt: PodRuntime, fn: Callable[[Obj], None]) -> Obj | None:
        """A status write; while the apiserver is down it waits (the container runs on)."""
        await self.faults.wait_api_up()
        return self.store.mutate(R.PODS, rt.namespace, rt.name, fn, uid=rt.uid)

    async def _pod_task(self, rt: PodRuntime) -> None:
        try:
            with rt.task_scope:
                async with trio.open_nursery() as nursery:
                    with rt.run_scope:
                        await self._run_pod(rt, nursery)
                    await self._terminate(rt)
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self._kill_hard(rt, graceful=not rt.finished)
            self.pods.pop(rt.uid, None)

    async def _run_pod(self, rt: PodRuntime, nursery: trio.Nursery) -> None:
        pod = await self._write(rt, self._bind)
        if pod is None:
            return
        delay = self.config.start_delay + self.realism.pod_start_delay()
        if delay > 0:
            await trio.sleep(delay)  # image pull, sandbox, container start
        while rt.name in self.faults.held_pending:
            await self.faults.wait_changed()
        rt.ip = self.ips.allocate(CONTAINER_PORT)

        def started(p: Obj) -> None:
            status = p.setdefault("status", {})
            status.update(
                {
                    "hostIP": self.ips.node_ip,
                    "hostIPs": [{"ip": self.ips.node_ip}],
                    "podIP": rt.ip,
                    "podIPs": [{"ip": rt.ip}],
                    "startTime": timestamp(),
                }
            )
            _set_condition(status, "PodReadyToStartContainers", True)
            _set_condition(status, "Initialized", True)
            _set_condition(status, "Ready", False, "ContainersNotReady")
            _set_condition(status, "ContainersReady", False, "ContainersNotReady")

        if await self._write(rt, started) is None:
            return
        restart_count = 0
        backoff = self.config.restart_backoff
        while True:
            began = trio.current_time()
            exit_code = await self._run_container(rt, nursery, restart_count)
            pod = self.store.find(R.PODS, rt.namespace, rt.name)
            if pod is None:
                return
            policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
            if policy == "Never" or (policy == "OnFailure" and exit_code == 0):
                final_phase = "Succeeded" if exit_code == 0 else "Failed"
                await self._write(rt, partial(_set_phase, phase=final_phase))
                await trio.sleep_forever()
            if trio.current_time() - began >= RESTART_RESET_AFTER:
                backoff = self.config.restart_backoff

            def waiting(p: Obj) -> None:
                for cs in p["status"].get("containerStatuses") or []:
                    if "terminated" in (cs.get("state") or {}):
                        cs["lastState"] = {"terminated": cs["state"]["terminated"]}
                    cs["state"] = {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": f"back-off restarting failed container {cs['name']}",
                        }
                    }

            await self._write(rt, waiting)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, self.config.restart_backoff_max)
            restart_count += 1

    def _bind(self, pod: Obj) -> None:
        pod.setdefault("spec", {})["nodeName"] = self.config.node_name
        _set_condition(pod.setdefault("status", {}), "PodScheduled", True)

    def _container_status(
        self,
        pod: Obj,
        restart_count: int,
        state: dict[str, Any],
        ready: bool,
        last: dict[str, Any] | None,
    ) -> list[dict[str, Any]]:
        out = []
        for c in (pod.get("spec") or {}).get("containers") or []:
            cs: dict[str, Any] = {
                "name": c.get("name"),
                "image": c.get("image"),
                "imageID": f"docker.io/library/{c.get('image')}@sha256:{'0' * 64}",
                "containerID": f"containerd://{self_id(pod, restart_count)}",
                "ready": ready,
                "started": "running" in state,
                "restartCount": restart_count,
                "state": state,
                "lastState": last or {},
            }
            out.append(cs)
        return out

    async def _run_container(
        self, rt: PodRuntime, nursery: trio.Nursery, restart_count: int
    ) -> int:
        """Start the container, probe it until it exits; the exit code."""
        pod = self.store.find(R.PODS, rt.namespace, rt.name)
        if pod is None or pod["metadata"]["uid"] != rt.uid:
            await trio.sleep_forever()
        assert pod is not None
        assert rt.ip is not None
        containers = (pod.get("spec") or {}).get("containers") or [{}]
        started_at = timestamp()
        last_state = None
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            last_state = cs.get("lastState") or None
            if "terminated" in (cs.get("state") or {}):
                last_state = {"terminated": cs["state"]["terminated"]}
            break
        if self.config.mode == "process":
            env = resolve_env(pod, containers[0])
            ctx = PodContext(
                name=rt.name,
                namespace=rt.namespace,
                uid=rt.uid,
                ip=rt.ip,
                port=CONTAINER_PORT,
                pod=pod,
                env=env,
            )
            command = self.command(ctx)
            full_env = {k: v for k, v in os.environ.items() if not k.startswith("WEBTERM_")}
            full_env.update(env)
            full_env.update(command.env)
            full_env["HOSTNAME"] = rt.name
            try:
                proc = await trio.lowlevel.open_process(
                    list(command.argv),
                    env=full_env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
            except OSError as exc:
                rt.logs.append(f"failed to start container: {exc}")
                waiting = {"waiting": {"reason": "RunContainerError", "message": str(exc)}}

                def failed(p: Obj) -> None:
                    p["status"]["containerStatuses"] = self._container_status(
                        p, restart_count, waiting, False, last_state
                    )

                await self._write(rt, failed)
                return 128
            rt.process = proc
            rt.container_id = secrets.token_hex(32)
            rt.exit_requested = trio.Event()
            assert proc.stdout is not None
            assert proc.stderr is not None
            nursery.start_soon(self._read_output, rt, proc.stdout, "stdout")
            nursery.start_soon(self._read_output, rt, proc.stderr, "stderr")
        else:
            rt.exit_requested = trio.Event()

        def running(p: Obj) -> None:
            status = p["status"]
            status["phase"] = "Running"
            status["containerStatuses"] = self._container_status(
                p, restart_count, {"running": {"startedAt": started_at}}, False, last_state
            )
            _set_condition(status, "Ready", False, "ContainersNotReady")
            _set_condition(status, "ContainersReady", False, "ContainersNotReady")

        await self._write(rt, running)
        async with trio.open_nursery() as inner:
            if self.realism.probes_from_spec:
                inner.start_soon(self._spec_probes, rt, pod, inner)
            else:
                inner.start_soon(self._probe_loop, rt, pod)
            if rt.process is not None:
                code = await rt.process.wait()
                exit_code = code if code >= 0 else 128 - code
            else:
                await rt.exit_requested.wait()
                exit_code = 128 + rt.exit_signal if rt.exit_signal else 0
            inner.cancel_scope.cancel()
        rt.process = None
        finished_at = timestamp()

        def terminated(p: Obj) -> None:
            status = p["status"]
            state = {
                "terminated": {
                    "exitCode": exit_code,
                    "reason": "Completed" if exit_code == 0 else "Error",
                    "startedAt": started_at,
                    "finishedAt": finished_at,
                    "containerID": f"containerd://{rt.container_id}",
                }
            }
            status["containerStatuses"] = self._container_status(
                p, restart_count, state, False, last_state
            )
            _set_condition(status, "Ready", False, "ContainersNotReady")
            _set_condition(status, "ContainersReady", False, "ContainersNotReady")

        await self._write(rt, terminated)
        return exit_code

    async def _read_output(self, rt: PodRuntime, stream: trio.abc.ReceiveStream, name: str) -> None:
        buf = b""
        plog = logging.getLogger(f"kubeapi.pod.{rt.name}")
        while True:
            try:
                data = await stream.receive_some(65536)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                data = b""
            if not data:
                if buf:
                    rt.logs.append(buf.decode(errors="replace"))
                return
            buf += data
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                rt.logs.append(line)
                with contextlib.suppress(ValueError):  # any other line
                    host, port = parse_listening_line(line)
                    rt.listening = f"{host}:{port}"
                plog.info("%s: %s", name, line)

    async def _probe_loop(self, rt: PodRuntime, pod: Obj) -> None:
        container = ((pod.get("spec") or {}).get("containers") or [{}])[0]
        probe = container.get("readinessProbe")
        delay = self.faults.readiness_delay.get(rt.name, 0.0)
        if delay > 0:
            await trio.sleep(delay)
        ready = False
        failures = 0
        threshold = int((probe or {}).get("failureThreshold") or self.config.failure_threshold)
        while True:
            ok = rt.name not in self.faults.never_ready and await self._probe(rt, container, probe)
            if ok:
                failures = 0
                if not ready:
                    ready = True
                    await self._set_ready(rt, True)
            else:
                failures += 1
                if ready and failures >= threshold:
                    ready = False
                    await self._set_ready(rt, False)
            period = self.config.ready_probe_period if ready else self.config.probe_period
            with trio.move_on_after(period):
                await self.faults.wait_changed()

    async def _spec_probes(self, rt: PodRuntime, pod: Obj, inner: trio.Nursery) -> None:
        """The kubelet's prober workers on the pod spec's own timing: the startupProbe
        first (readiness and liveness wait for it; failureThreshold failures kill the
        container), then readiness (successThreshold successes make the pod Ready,
        failureThreshold failures unready) and liveness (failureThreshold failures
        kill the container, which restarts per restartPolicy)."""
        container = ((pod.get("spec") or {}).get("containers") or [{}])[0]
        startup = container.get("startupProbe")
        readiness = container.get("readinessProbe")
        liveness = container.get("livenessProbe")
        grace = float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        if startup is not None and not await self._until(rt, container, startup, succeed=True):
            rt.logs.append("kubelet: startup probe failed, killing the container")
            await self._kill_container(rt, startup, grace)
            return
        if liveness is not None:
            inner.start_soon(self._liveness, rt, container, liveness, grace)
        delay = self.faults.readiness_delay.get(rt.name, 0.0)
        if delay > 0:
            await trio.sleep(delay)
        if readiness is None:
            await self._set_ready(rt, True)
            return
        await trio.sleep(_probe_setting(readiness, "initialDelaySeconds"))
        period = _probe_setting(readiness, "periodSeconds")
        successes = failures = 0
        ready = False
        while True:
            began = trio.current_time()
            ok = await self._probe(rt, container, readiness)
            ok = ok and rt.name not in self.faults.never_ready
            if ok:
                successes, failures = successes + 1, 0
                if not ready and successes >= _probe_setting(readiness, "successThreshold"):
                    ready = True
                    await self._set_ready(rt, True)
            else:
                successes, failures = 0, failures + 1
                if ready and failures >= _probe_setting(readiness, "failureThreshold"):
                    ready = False
                    await self._set_ready(rt, False)
            await self._next_probe(rt, began + period, steady=ok and ready)

    async def _until(self, rt: PodRuntime, container: Obj, probe: Obj, *, succeed: bool) -> bool:
        """Probe on ``probe``'s period until it succeeds (True) or fails failureThreshold
        times in a row (False)."""
        await trio.sleep(_probe_setting(probe, "initialDelaySeconds"))
        period = _probe_setting(probe, "periodSeconds")
        failures = 0
        while True:
            began = trio.current_time()
            if await self._probe(rt, container, probe) == succeed:
                return True
            failures += 1
            if failures >= _probe_setting(probe, "failureThreshold"):
                return False
            await trio.sleep_until(began + period)

    async def _liveness(self, rt: PodRuntime, container: Obj, probe: Obj, grace: float) -> None:
        await trio.sleep(_probe_setting(probe, "initialDelaySeconds"))
        period = _probe_setting(probe, "periodSeconds")
        failures = 0
        while True:
            began = trio.current_time()
            ok = await self._probe(rt, container, probe)
            if ok:
                failures = 0
            else:
                failures += 1
                if failures >= _probe_setting(probe, "failureThreshold"):
                    rt.logs.append("kubelet: liveness probe failed, killing the container")
                    await self._kill_container(rt, probe, grace)
                    return
            await self._next_probe(rt, began + period, steady=ok)

    async def _next_probe(self, rt: PodRuntime, when: float, *, steady: bool) -> None:
        """Sleep until the next probe. A fake pod's probe can only change its answer
        through a fault, so a passing one waits for a fault to change instead of
        polling (thousands of fake pods stay cheap)."""
        if (
            steady
            and self.config.mode == "fake"
            and rt.name not in self.faults.never_ready
            and rt.name not in self.faults.probe_latency
        ):
            await self.faults.wait_changed()
        await trio.sleep_until(when)

    async def _kill_container(self, rt: PodRuntime, probe: Obj, grace: float) -> None:
        """What a failed liveness/startup probe does: SIGTERM, the grace period (the
        probe's own terminationGracePeriodSeconds if set), SIGKILL; the container then
        exits and restarts per restartPolicy."""
        grace = float(probe.get("terminationGracePeriodSeconds", grace))
        await self._set_ready(rt, False)
        if self.config.mode == "fake":
            rt.exit_signal = signal.SIGKILL
            rt.exit_requested.set()
            return
        proc = rt.process
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        with trio.move_on_after(grace):
            await proc.wait()
        if proc.returncode is None:
            self._sigkill(rt, proc)

    async def _probe(self, rt: PodRuntime, container: Obj, probe: Obj | None) -> bool:
        if probe is None:
            return True
        rt.probes += 1
        timeout = (
            _probe_setting(probe, "timeoutSeconds")
            if self.realism.probes_from_spec
            else self.config.probe_timeout
        )
        with trio.move_on_after(timeout):
            latency = self.faults.probe_latency.get(rt.name, 0.0)
            if latency > 0:
                await trio.sleep(latency)  # a starved container answers late
            return await self._probe_once(rt, container, probe)
        return False  # timed out

    async def _probe_once(self, rt: PodRuntime, container: Obj, probe: Obj) -> bool:
        if self.config.mode == "fake":
            return True
        assert rt.ip is not None

        def port_of(spec: Any) -> int:
            if isinstance(spec, int):
                return spec
            for p in container.get("ports") or []:
                if p.get("name") == spec:
                    return int(p["containerPort"])
            try:
                return int(spec)
            except (TypeError, ValueError):
                return CONTAINER_PORT

        if "httpGet" in probe:
            get = probe["httpGet"]
            scheme = str(get.get("scheme", "HTTP")).lower()
            url = f"{scheme}://{rt.ip}:{port_of(get.get('port', CONTAINER_PORT))}{get.get('path', '/')}"
            assert self._http is not None
            try:
                response = await self._http.get(url)
            except httpx.HTTPError:
                return False
            return 200 <= response.status_code < 400
        if "tcpSocket" in probe:
            try:
                stream = await trio.open_tcp_stream(rt.ip, port_of(probe["tcpSocket"].get("port")))
            except OSError:
                return False
            await stream.aclose()
            return True
        return True  # exec/grpc probes: not simulated, they pass

    async def _set_ready(self, rt: PodRuntime, ready: bool) -> None:
        def fn(p: Obj) -> None:
            status = p["status"]
            if status.get("phase") != "Running":
                return
            reason = None if ready else "ContainersNotReady"
            _set_condition(status, "Ready", ready, reason)
            _set_condition(status, "ContainersReady", ready, reason)
            for cs in status.get("containerStatuses") or []:
                if "running" in (cs.get("state") or {}):
                    cs["ready"] = ready

        await self._write(rt, fn)

    # ------------------------------------------------------------------ endings

    async def _terminate(self, rt: PodRuntime) -> None:
        """Graceful stop after deletionTimestamp, then remove the object."""
        proc = rt.process
        exit_code = 0
        ignores_sigterm = rt.name in self.faults.sigterm_ignored
        if proc is not None and proc.returncode is None:
            self._snapshot_descendants(rt, proc)
            if not ignores_sigterm:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
            with trio.move_on_at(rt.grace_deadline) as rt.grace_scope:
                await proc.wait()
            rt.grace_scope = None
            if proc.returncode is None:
                self._sigkill(rt, proc)
            code = await proc.wait()
            exit_code = code if code >= 0 else 128 - code
        elif self.config.mode == "fake" and rt.ip is not None and ignores_sigterm:
            with trio.move_on_at(rt.grace_deadline) as rt.grace_scope:
                await trio.sleep_forever()
            rt.grace_scope = None
            exit_code = 128 + signal.SIGKILL
        rt.process = None
        pod = self.store.find(R.PODS, rt.namespace, rt.name)
        if pod is not None and pod["metadata"]["uid"] == rt.uid and rt.ip is not None:

            def fn(p: Obj) -> None:
                status = p["status"]
                for cs in status.get("containerStatuses") or []:
                    state = cs.get("state") or {}
                    if "terminated" not in state:
                        started = (state.get("running") or {}).get("startedAt")
                        cs["state"] = {
                            "terminated": {
                                "exitCode": exit_code,
                                "reason": "Completed" if exit_code == 0 else "Error",
                                "startedAt": started,
                                "finishedAt": timestamp(),
                            }
                        }
                    cs["ready"] = False
                    cs["started"] = False
                if status.get("phase") == "Running":
                    status["phase"] = "Succeeded" if exit_code == 0 else "Failed"
                _set_condition(status, "Ready", False, "PodCompleted")
                _set_condition(status, "ContainersReady", False, "PodCompleted")

            await self._write(rt, fn)
        await self.faults.wait_api_up()
        rt.finished = True
        self.store.remove(R.PODS, rt.namespace, rt.name, uid=rt.uid)

    def _snapshot_descendants(self, rt: PodRuntime, proc: trio.Process) -> None:
        with contextlib.suppress(psutil.Error):
            rt.descendants = psutil.Process(proc.pid).children(recursive=True)

    def _sigkill(self, rt: PodRuntime, proc: trio.Process) -> None:
        """Kill the container like its cgroup: the process group and every descendant."""
        self._snapshot_descendants(rt, proc)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        for child in rt.descendants:
            with contextlib.suppress(psutil.Error):
                child.kill()

    async def _kill_hard(self, rt: PodRuntime, *, graceful: bool) -> None:
        proc = rt.process
        if proc is not None and proc.returncode is None:
            self._snapshot_descendants(rt, proc)
            if graceful:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
                with trio.move_on_after(SHUTDOWN_GRACE):
                    await proc.wait()
            if proc.returncode is None:
                self._sigkill(rt, proc)
            with trio.move_on_after(SHUTDOWN_GRACE):
                await proc.wait()
        for child in rt.descendants:
            with contextlib.suppress(psutil.Error):
                if child.is_running():
                    child.kill()
        rt.process = None


PROBE_DEFAULTS: Final = {
    "initialDelaySeconds": 0,
    "periodSeconds": 10,
    "timeoutSeconds": 1,
    "successThreshold": 1,
    "failureThreshold": 3,
}
"""The apiserver's defaults for a Probe's fields (SetDefaults_Probe)."""


def _probe_setting(probe: Obj, key: str) -> float:
    value = probe.get(key)
    if value is None or (key != "initialDelaySeconds" and value < 1):
        return float(PROBE_DEFAULTS[key])
    return float(value)


def self_id(pod: Obj, restart_count: int) -> str:
    """A stable fake container ID per pod incarnation and restart."""
    import hashlib

    return hashlib.sha256(f"{pod['metadata']['uid']}/{restart_count}".encode()).hexdigest()


__all__ = [
    "ContainerCommand",
    "Kubelet",
    "KubeletConfig",
    "PodCommand",
    "PodContext",
    "fake_pod_command",
    "is_ready_pod",
    "webterm_pty_command",
]


def is_ready_pod(pod: Obj | None) -> bool:
    return condition(pod, "Ready") == "True"
