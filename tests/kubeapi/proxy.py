"""kube-proxy for NodePort Services: each ``nodePort`` listens on the node's address
(``api.node_ip``, a loopback address unique to this stand-in) and forwards every TCP
connection to one Ready, non-terminating pod selected by the Service (its podIP and
``targetPort``, numeric or named). No Ready endpoint: the connection is closed, much
like kube-proxy's REJECT rule."""

from __future__ import annotations

import logging
import random
from functools import partial
from typing import Any, Final

import trio

from . import resources as R
from .controllers import is_ready
from .selection import LabelSelector, Requirement
from .store import Obj, Store

log = logging.getLogger("kubeapi.proxy")

COPY_BYTES: Final = 65536


class KubeProxy:
    def __init__(self, store: Store, node_ip: str) -> None:
        self.store = store
        self.node_ip = node_ip
        # nodePort -> (service uid, listener scope); bound: set once it accepts connections
        self._listeners: dict[int, tuple[str, trio.CancelScope]] = {}
        self._bound: dict[int, trio.Event] = {}
        self._changed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            with self.store.subscribe(R.SERVICES) as (_, sub):
                self._sync(nursery)
                task_status.started()
                async for _change in sub.receive:
                    self._sync(nursery)

    def listening_ports(self) -> list[int]:
        """NodePorts accepting connections now."""
        return sorted(p for p, e in self._bound.items() if e.is_set())

    async def wait_listening(self, node_port: int, listening: bool = True) -> None:
        """Until ``node_port`` accepts connections (or, with False, no longer does)."""
        while (node_port in self.listening_ports()) != listening:
            await self._changed.wait()

    def _touch(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _sync(self, nursery: trio.Nursery) -> None:
        wanted: dict[int, tuple[str, str, str, int]] = {}
        for svc in self.store.objects(R.SERVICES):
            spec = svc.get("spec") or {}
            if spec.get("type") not in ("NodePort", "LoadBalancer"):
                continue
            meta = svc["metadata"]
            for index, port in enumerate(spec.get("ports") or []):
                if port.get("nodePort"):
                    wanted[int(port["nodePort"])] = (
                        meta["uid"],
                        meta["namespace"],
                        meta["name"],
                        index,
                    )
        for node_port, (uid, scope) in list(self._listeners.items()):
            if node_port not in wanted or wanted[node_port][0] != uid:
                scope.cancel()
                del self._listeners[node_port]
        for node_port, (uid, namespace, name, index) in wanted.items():
            if node_port not in self._listeners:
                scope = trio.CancelScope()
                self._listeners[node_port] = (uid, scope)
                nursery.start_soon(self._listen, scope, node_port, namespace, name, index)

    async def _listen(
        self, scope: trio.CancelScope, node_port: int, namespace: str, name: str, index: int
    ) -> None:
        with scope:
            try:
                listeners = await trio.open_tcp_listeners(node_port, host=self.node_ip)
            except OSError as exc:
                log.warning(
                    "cannot listen on %s:%d for %s/%s: %s",
                    self.node_ip,
                    node_port,
                    namespace,
                    name,
                    exc,
                )
                return
            self._bound[node_port] = bound = trio.Event()
            bound.set()
            self._touch()
            try:
                async with trio.open_nursery() as handlers:
                    await trio.serve_listeners(
                        partial(self._forward, namespace, name, index),
                        listeners,
                        handler_nursery=handlers,
                    )
            finally:
                for listener in listeners:
                    listener.socket.close()  # synchronous: we may be cancelled here
                if self._bound.get(node_port) is bound:
                    del self._bound[node_port]
                self._touch()

    def _endpoint(self, namespace: str, name: str, index: int) -> tuple[str, int] | None:
        svc = self.store.find(R.SERVICES, namespace, name)
        if svc is None:
            return None
        spec = svc.get("spec") or {}
        ports = spec.get("ports") or []
        if index >= len(ports) or not spec.get("selector"):
            return None
        target: Any = ports[index].get("targetPort", ports[index].get("port"))
        selector = LabelSelector(
            tuple(Requirement(k, "=", (v,)) for k, v in spec["selector"].items())
        )
        candidates: list[tuple[str, int]] = []
        for pod in self.store.objects(R.PODS, namespace):
            if not selector.matches(pod["metadata"].get("labels")) or not is_ready(pod):
                continue
            if pod["metadata"].get("deletionTimestamp"):
                continue
            ip = (pod.get("status") or {}).get("podIP")
            port = _resolve_port(pod, target)
            if ip and port:
                candidates.append((ip, port))
        return random.choice(candidates) if candidates else None

    async def _forward(
        self, namespace: str, name: str, index: int, client: trio.SocketStream
    ) -> None:
        endpoint = self._endpoint(namespace, name, index)
        if endpoint is None:
            await client.aclose()
            return
        try:
            upstream = await trio.open_tcp_stream(*endpoint)
        except OSError:
            await client.aclose()
            return
        async with client, upstream, trio.open_nursery() as nursery:
            nursery.start_soon(_pump, client, upstream)
            nursery.start_soon(_pump, upstream, client)


async def _pump(source: trio.SocketStream, sink: trio.SocketStream) -> None:
    try:
        while data := await source.receive_some(COPY_BYTES):
            await sink.send_all(data)
        await sink.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        await trio.aclose_forcefully(sink)
        await trio.aclose_forcefully(source)


def _resolve_port(pod: Obj, target: Any) -> int | None:
    if isinstance(target, int):
        return target
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target:
                return int(port["containerPort"])
    try:
        return int(target)
    except (TypeError, ValueError):
        return None
