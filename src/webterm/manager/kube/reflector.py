"""List+watch of the terminal pods, in three layers as client-go and kopf do it.

* :func:`reflect` never ends: it lists, then watches from the list's resourceVersion,
  and on a 410 (expired resourceVersion) lists again. A dropped stream resumes from
  the last resourceVersion seen (bookmarks included) after a jittered backoff.
* :meth:`KubeClient.watch_pods` is one watch request.
* :class:`PodInfo` is the compact record kept per pod: a few fields, not the pod.

Each watch asks for a random ``timeoutSeconds`` between 5 and 10 minutes (client-go's
spread, so a fleet of managers does not renew in lockstep); the server ending a watch
on time is routine and is resumed at once.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import trio

from webterm.manager.kube.client import Gone, KubeClient, KubeError

log = logging.getLogger("webterm.manager.kube")

OWNER_ANNOTATION: Final = "webterm.dev/client"
ALLOCATED_ANNOTATION: Final = "webterm.dev/allocated-at"
STATE_LABEL: Final = "webterm.dev/state"

WATCH_TIMEOUT_RANGE: Final = (300, 600)
BACKOFF_START: Final = 0.8
BACKOFF_MAX: Final = 30.0
"""client-go's numbers: 800 ms doubling to 30 s, so a broken API server sees a trickle,
not a stampede, from every manager; reset once a watch has been healthy a while."""
HEALTHY_AFTER: Final = 120.0


@dataclass(frozen=True, slots=True)
class PodInfo:
    name: str
    uid: str
    ip: str
    ready: bool
    deleting: bool
    owner: str | None
    allocated_at: float
    resource_version: str

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> PodInfo:
        meta = obj.get("metadata") or {}
        status = obj.get("status") or {}
        annotations = meta.get("annotations") or {}
        ready = status.get("phase") == "Running" and any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or ()
        )
        allocated = annotations.get(ALLOCATED_ANNOTATION)
        try:
            allocated_at = datetime.fromisoformat(allocated).timestamp() if allocated else 0.0
        except ValueError:
            allocated_at = 0.0
        return cls(
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            ip=str(status.get("podIP") or ""),
            ready=ready,
            deleting=meta.get("deletionTimestamp") is not None,
            owner=annotations.get(OWNER_ANNOTATION) or None,
            allocated_at=allocated_at,
            resource_version=str(meta.get("resourceVersion", "")),
        )

    @property
    def usable(self) -> bool:
        """Ready to be handed out: Running, Ready, not terminating, with an address."""
        return self.ready and not self.deleting and bool(self.ip)


OnListed = Callable[[dict[str, PodInfo]], Awaitable[None]]
OnEvent = Callable[[str, PodInfo], Awaitable[None]]


@dataclass
class ReflectorStats:
    lists: int = 0
    watches: int = 0
    watch_errors: int = 0
    events: int = 0


async def reflect(
    client: KubeClient,
    selector: str,
    on_listed: OnListed,
    on_event: OnEvent,
    *,
    stats: ReflectorStats | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep ``on_listed``/``on_event`` told about every pod matching ``selector``,
    until cancelled. ``task_status.started()`` after the first successful list."""
    stats = stats or ReflectorStats()
    started = False
    backoff = BACKOFF_START
    while True:
        try:
            listed = await client.list_pods(selector)
        except KubeError as exc:
            log.warning("listing pods failed: %s; retrying in %.1f s", exc, backoff)
            await trio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, BACKOFF_MAX)
            continue
        stats.lists += 1
        version = str(listed.get("metadata", {}).get("resourceVersion", ""))
        pods = {p.name: p for p in map(PodInfo.from_obj, listed.get("items") or ())}
        await on_listed(pods)
        if not started:
            started = True
            task_status.started()
        try:
            while True:
                healthy_since = trio.current_time()
                stats.watches += 1
                try:
                    async for kind, obj in client.watch_pods(
                        selector, version, random.randint(*WATCH_TIMEOUT_RANGE)
                    ):
                        rv = (obj.get("metadata") or {}).get("resourceVersion")
                        if rv:
                            version = str(rv)
                        if kind == "BOOKMARK":
                            continue
                        stats.events += 1
                        await on_event(kind, PodInfo.from_obj(obj))
                    if trio.current_time() - healthy_since > HEALTHY_AFTER:
                        backoff = BACKOFF_START
                except Gone:
                    raise
                except KubeError as exc:
                    stats.watch_errors += 1
                    log.info("watch ended (%s); resuming from %s in %.1f s", exc, version, backoff)
                    await trio.sleep(backoff * random.uniform(0.8, 1.2))
                    backoff = min(backoff * 2, BACKOFF_MAX)
        except Gone:
            log.info("resourceVersion %s expired: listing again", version)
