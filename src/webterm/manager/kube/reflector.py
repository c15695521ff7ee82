"""List+watch of the terminal pods, in three layers as client-go and kopf do it.

* :func:`reflect` never ends: it lists, then watches from the list's resourceVersion,
  and on a 410 (expired resourceVersion) lists again. A dropped stream resumes from
  the last resourceVersion seen (bookmarks included) after a jittered backoff.
* :meth:`KubeClient.watch_pods` is one watch request.
* :class:`~webterm.manager.kube.pods.PodInfo` is the compact record kept per pod: a
  few fields, not the pod.

Each watch asks for a random ``timeoutSeconds`` between 5 and 10 minutes (client-go's
spread, so a fleet of managers does not renew in lockstep); the server ending a watch
on time is routine and is resumed at once; one ending at once with nothing in it is not,
and is backed off like an error.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import trio

from webterm.manager.kube.client import Gone, KubeClient, KubeError
from webterm.manager.kube.pods import ALLOCATED_ANNOTATION, OWNER_ANNOTATION, PodInfo

__all__ = ["ALLOCATED_ANNOTATION", "OWNER_ANNOTATION", "STATE_LABEL", "PodInfo", "reflect"]

log = logging.getLogger("webterm.manager.kube")

STATE_LABEL: Final = "webterm.dev/state"

WATCH_TIMEOUT_RANGE: Final = (300, 600)
BACKOFF_START: Final = 0.8
BACKOFF_MAX: Final = 30.0
"""client-go's numbers: 800 ms doubling to 30 s, so a broken API server sees a trickle,
not a stampede, from every manager; reset once a watch has been healthy a while."""
HEALTHY_AFTER: Final = 120.0
SHORT_WATCH: Final = 1.0
"""A watch that ends cleanly sooner than this with no event is treated as an error and
backed off (client-go does the same): a server or proxy that ends every watch at once
would otherwise be hammered in a tight loop."""


OnListed = Callable[[dict[str, PodInfo]], Awaitable[None]]
OnEvent = Callable[[str, PodInfo], None]
"""Called for each event, synchronously: a watch delivers tens of thousands a second."""


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
        version = listed.metadata.resourceVersion
        pods = {p.name: p for p in map(PodInfo.from_pod, listed.items or ())}
        del listed
        await on_listed(pods)
        if not started:
            started = True
            task_status.started()
        try:
            while True:
                healthy_since = trio.current_time()
                stats.watches += 1
                events_before = stats.events
                try:
                    async for batch in client.watch_pods(
                        selector, version, random.randint(*WATCH_TIMEOUT_RANGE)
                    ):
                        for kind, pod in batch:
                            if pod.metadata.resourceVersion:
                                version = pod.metadata.resourceVersion
                            if kind == "BOOKMARK":
                                continue
                            stats.events += 1
                            on_event(kind, PodInfo.from_pod(pod))
                    lasted = trio.current_time() - healthy_since
                    if lasted >= SHORT_WATCH or stats.events > events_before:
                        if lasted > HEALTHY_AFTER:
                            backoff = BACKOFF_START
                        continue  # ended on time (or after events): resume at once
                    why = f"a very short watch: {lasted:.2f} s, no events"
                except Gone:
                    raise
                except KubeError as exc:
                    if trio.current_time() - healthy_since > HEALTHY_AFTER:
                        backoff = BACKOFF_START
                    why = str(exc)
                stats.watch_errors += 1
                log.info("watch ended (%s); resuming from %s in %.1f s", why, version, backoff)
                await trio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, BACKOFF_MAX)
        except Gone:
            log.info("resourceVersion %s expired: listing again", version)
