"""Leader election with a ``coordination.k8s.io/v1`` Lease, as client-go's
``leaderelection`` package does it.

Every candidate reads the Lease every ``retry_period``. A Lease held by another
identity counts as expired once the candidate has seen the *same* record (same
resourceVersion) for ``lease_duration`` by its *own* clock (client-go's
``observedTime``: no trust in another machine's ``renewTime``, so clock skew between
nodes does not matter). The candidate then takes it with an update carrying the
resourceVersion it read, so of two candidates racing only one wins (the other gets 409);
a missing Lease is created (AlreadyExists for the loser). The leader renews every
``retry_period``; if it cannot renew for ``renew_deadline`` it raises
:class:`LeadershipLost` — it must stop writing at once, since another candidate may
take over ``lease_duration`` after its last renewal. ``renew_deadline <
lease_duration`` leaves that margin. On a clean shutdown the leader releases the Lease
(empty holder), so a follower takes over within ``retry_period`` instead of
``lease_duration``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import trio

from webterm.manager.kube.client import Conflict, KubeClient, KubeError, NotFound
from webterm.manager.kube.workqueue import retry_until_done

log = logging.getLogger("webterm.manager.kube.leader")

LEADER_LABEL: Final = "webterm.dev/leader"
"""The leader's own pod carries ``webterm.dev/leader=true``; the manager Service
selects it, so requests reach the leader (see :func:`label_leader`)."""

JITTER: Final = 1.2
"""client-go's JitterFactor: acquisition attempts are spread by up to 20%."""


class LeadershipLost(Exception):
    """The lease could not be renewed within the renew deadline: stop acting."""


@dataclass(frozen=True, kw_only=True)
class LeaderConfig:
    lease_name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


def default_identity() -> str:
    """``<hostname>_<random>``, as client-go's examples build it: unique per process,
    so a restarted container never mistakes its predecessor's lease for its own."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:12]}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """One candidate. :meth:`run` returns (``task_status.started()``) once leading and
    then renews until cancelled (releasing the lease) or until renewal fails
    (:class:`LeadershipLost`)."""

    def __init__(self, client: KubeClient, config: LeaderConfig) -> None:
        self.client = client
        self.config = config
        self.leading = False
        self.transitions = 0
        self._observed_version = ""
        self._observed_at = 0.0  # trio clock: when the lease record last changed
        self._lease: dict[str, Any] | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        config = self.config
        while not await self.try_acquire_or_renew():  # noqa: ASYNC110 (polling is the protocol)
            await trio.sleep(config.retry_period * random.uniform(1.0, JITTER))
        log.info("%s became the leader (lease %s)", config.identity, config.lease_name)
        self.leading = True
        try:
            task_status.started()
            await self._renew_forever()
        finally:
            self.leading = False
            with trio.CancelScope(shield=True), trio.move_on_after(config.retry_period):
                await self.release()

    async def _renew_forever(self) -> None:
        config = self.config
        last_renew = trio.current_time()
        while True:
            await trio.sleep(config.retry_period)
            renewed = False
            with trio.move_on_at(last_renew + config.renew_deadline):
                while not (renewed := await self.try_acquire_or_renew()):  # noqa: ASYNC110
                    await trio.sleep(config.retry_period)
            if not renewed:
                log.error("%s could not renew lease %s", config.identity, config.lease_name)
                raise LeadershipLost(f"lease {config.lease_name} not renewed in time")
            last_renew = trio.current_time()

    async def try_acquire_or_renew(self) -> bool:
        """One attempt (client-go's ``tryAcquireOrRenew``): True if we hold the lease
        after it. Never raises for API errors: a failed attempt is just False."""
        config, now = self.config, _now()
        try:
            lease = await self.client.get_lease(config.lease_name)
        except NotFound:
            spec = {
                "holderIdentity": config.identity,
                "leaseDurationSeconds": max(1, round(config.lease_duration)),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            }
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": config.lease_name},
                "spec": spec,
            }
            try:
                self._lease = await self.client.create_lease(body)
            except KubeError as exc:  # Conflict: another candidate created it first
                log.debug("creating lease %s failed: %s", config.lease_name, exc)
                return False
            self._observe(self._lease)
            return True
        except KubeError as exc:
            log.info("reading lease %s failed: %s", config.lease_name, exc)
            return False
        self._observe(lease)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if holder and holder != config.identity:
            duration = float(str(spec.get("leaseDurationSeconds") or config.lease_duration))
            if trio.current_time() < self._observed_at + duration:
                return False  # held, and renewed within its duration (by our clock)
        new_spec = dict(spec)
        new_spec.update(
            holderIdentity=config.identity,
            leaseDurationSeconds=max(1, round(config.lease_duration)),
            renewTime=now,
        )
        if holder != config.identity:
            new_spec["acquireTime"] = now
            new_spec["leaseTransitions"] = int(str(spec.get("leaseTransitions") or 0)) + 1
        body = {**lease, "spec": new_spec}  # metadata.resourceVersion: the precondition
        try:
            self._lease = await self.client.update_lease(body)
        except Conflict:
            return False  # someone else wrote it since we read it
        except KubeError as exc:
            log.info("updating lease %s failed: %s", config.lease_name, exc)
            return False
        self._observe(self._lease)
        self.transitions = int(new_spec.get("leaseTransitions") or 0)
        return True

    def _observe(self, lease: dict[str, Any]) -> None:
        version = str(lease.get("metadata", {}).get("resourceVersion", ""))
        if version != self._observed_version:
            self._observed_version = version
            self._observed_at = trio.current_time()

    async def release(self) -> None:
        """Give the lease up (empty holder, 1 s duration) if we still hold it."""
        lease = self._lease
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != (
            self.config.identity
        ):
            return
        spec = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1}
        try:
            await self.client.update_lease({**lease, "spec": spec})
            log.info("%s released lease %s", self.config.identity, self.config.lease_name)
        except KubeError as exc:
            log.info("releasing lease %s failed: %s", self.config.lease_name, exc)
        self._lease = None


# --- the leader's label on its pod -------------------------------------------------------


async def label_leader(client: KubeClient, pod_name: str) -> None:
    """Our pod labelled leader, and no other pod so labelled (a leader's desired state,
    converged by its reconcile loop on every resync)."""
    raw = await client.get_pod(pod_name)
    if (raw.metadata.labels or {}).get(LEADER_LABEL) != "true":
        patch = {"metadata": {"resourceVersion": raw.metadata.resourceVersion,
                              "labels": {LEADER_LABEL: "true"}}}  # fmt: skip
        await client.patch_pod(pod_name, patch)
    others = await client.list_pods(f"{LEADER_LABEL}=true")
    for other in others.items or ():
        if other.metadata.name != pod_name:
            await unlabel(client, other.metadata.name, other.metadata.uid)


async def unlabel(client: KubeClient, name: str, uid: str) -> None:
    patch = {"metadata": {"uid": uid, "labels": {LEADER_LABEL: None}}}
    with contextlib.suppress(NotFound, Conflict):
        await client.patch_pod(name, patch)


async def unlabel_standby(client: KubeClient, pod_name: str, following: Callable[[], bool]) -> None:
    """A standby's pod is no leader (a restarted container keeps its pod's labels);
    retried until done, unless it has taken the lease meanwhile (``following()``)."""
    try:
        raw = await retry_until_done(client.get_pod, pod_name)
    except NotFound:
        log.warning("--pod-name %s: no such pod", pod_name)
        return
    if (raw.metadata.labels or {}).get(LEADER_LABEL) is not None and following():
        await retry_until_done(unlabel, client, raw.metadata.name, raw.metadata.uid)
