"""Controllers that run inside the stand-in's nursery, each driven by a store
subscription (never by polling): the StatefulSet controller, the garbage collector
(ownerReferences) and the namespace controller.

They write through the same store operations the HTTP API uses, so every action they
take shows up as ordinary watch events with fresh resourceVersions."""

from __future__ import annotations

import logging
import re
from typing import Any, Final

import trio

from . import resources as R
from .errors import ApiError
from .faults import Faults
from .realism import Realism
from .selection import from_label_selector_object
from .store import Change, DeleteOptions, Obj, Store, Subscription
from .strategies import revision_hash

log = logging.getLogger("kubeapi.controllers")

POD_NAME_LABEL: Final = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL: Final = "apps.kubernetes.io/pod-index"
REVISION_LABEL: Final = "controller-revision-hash"


def controller_ref(obj: Obj) -> dict[str, Any] | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def is_terminating(obj: Obj) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def condition(obj: Obj | None, kind: str) -> str | None:
    if obj is None:
        return None
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return str(cond.get("status"))
    return None


def is_ready(pod: Obj | None) -> bool:
    """Running and Ready, the StatefulSet controller's isRunningAndReady."""
    return (
        pod is not None
        and (pod.get("status") or {}).get("phase") == "Running"
        and condition(pod, "Ready") == "True"
    )


def _ordinal(sts_name: str, pod_name: str) -> int | None:
    m = re.fullmatch(re.escape(sts_name) + r"-(0|[1-9][0-9]*)", pod_name)
    return int(m.group(1)) if m else None


class StatefulSetController:
    """Keeps pods ``<name>-0..N-1`` for each StatefulSet (pkg/controller/statefulset):
    OrderedReady creates one ordinal at a time and waits for it to be Running and
    Ready, deletes from the highest ordinal down one at a time; Parallel does both
    all at once. A pod that is gone is recreated under the same name (a new UID);
    a pod that ended (Succeeded/Failed) is deleted so that it gets recreated."""

    def __init__(
        self, store: Store, realism: Realism | None = None, faults: Faults | None = None
    ) -> None:
        self.store = store
        self.realism = realism or Realism.instant()
        self.faults = faults or Faults(store=store)
        self.syncs = 0
        self._idle = False
        self._idle_changed = trio.Event()
        self._sub: Subscription | None = None
        # (namespace, statefulset) -> ordinal -> pod: kept from the watch, like an
        # informer's indexer, so a reconcile never scans every pod.
        self._pods: dict[tuple[str, str], dict[int, Obj]] = {}

    def _index(self, pod: Obj, deleted: bool) -> tuple[str, str] | None:
        ref = controller_ref(pod)
        if not ref or ref.get("kind") != "StatefulSet":
            return None
        key = (pod["metadata"]["namespace"], str(ref.get("name")))
        ordinal = _ordinal(key[1], pod["metadata"]["name"])
        if ordinal is None:
            return key
        table = self._pods.setdefault(key, {})
        if deleted:
            if ordinal in table and table[ordinal]["metadata"]["uid"] == pod["metadata"]["uid"]:
                del table[ordinal]
        else:
            table[ordinal] = pod
        return key

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self.store.subscribe(None) as (_, sub):
            self._sub = sub
            for pod in self.store.objects(R.PODS):
                self._index(pod, deleted=False)
            dirty = {
                (o["metadata"]["namespace"], o["metadata"]["name"])
                for o in self.store.objects(R.STATEFULSETS)
            }
            task_status.started()
            while True:
                for key in sorted(dirty):
                    try:
                        self.reconcile(*key)
                    except (
                        ApiError
                    ) as err:  # e.g. a name taken by a foreign pod; retried on the next change
                        log.warning("statefulset %s/%s: %s", key[0], key[1], err.message)
                dirty.clear()
                self._set_idle(True)
                change = await sub.receive.receive()
                self._set_idle(False)
                # like a controller's work queue behind an informer: act a while later,
                # on everything that changed meanwhile
                await trio.sleep(self.realism.controller_sync_delay(self.faults.controller_delay))
                while self.faults.controller_paused or self.faults.api_down:
                    await self.faults.wait_changed()
                self.syncs += 1
                while True:
                    self._mark(dirty, change)
                    try:
                        change = sub.receive.receive_nowait()
                    except trio.WouldBlock:
                        break

    def _set_idle(self, idle: bool) -> None:
        self._idle = idle
        self._idle_changed.set()
        self._idle_changed = trio.Event()

    async def wait_idle(self) -> None:
        """Until the controller has acted on every change so far and waits for more:
        for a test that checks the controller did *not* do something."""
        while not (
            self._idle
            and self._sub is not None
            and self._sub.receive.statistics().current_buffer_used == 0
        ):
            await self._idle_changed.wait()

    def _mark(self, dirty: set[tuple[str, str]], change: Change) -> None:
        if change.rt is R.STATEFULSETS:
            dirty.add((change.namespace, change.name))
        elif change.rt is R.PODS:
            if change.prev is not None and change.type != "DELETED":
                old_key = self._index(change.prev, deleted=True)
                if old_key is not None:
                    dirty.add(old_key)
            key = self._index(change.obj, deleted=change.type == "DELETED")
            if key is not None:
                dirty.add(key)

    def reconcile(self, namespace: str, name: str) -> None:
        store = self.store
        sts = store.find(R.STATEFULSETS, namespace, name)
        if sts is None or is_terminating(sts):
            return
        uid = sts["metadata"]["uid"]
        spec = sts["spec"]
        selector = from_label_selector_object(spec.get("selector"))
        replicas = int(spec.get("replicas", 0))
        pods = {
            ordinal: pod
            for ordinal, pod in self._pods.get((namespace, name), {}).items()
            if (controller_ref(pod) or {}).get("uid") == uid
        }
        for ordinal in range(replicas):  # adopt orphans that match (ControllerRefManager)
            if ordinal in pods:
                continue
            pod = store.find(R.PODS, namespace, f"{name}-{ordinal}")
            if (
                pod is not None
                and controller_ref(pod) is None
                and not is_terminating(pod)
                and selector.matches(pod["metadata"].get("labels"))
            ):
                adopted = store.mutate(
                    R.PODS,
                    namespace,
                    f"{name}-{ordinal}",
                    lambda p: (
                        p["metadata"].setdefault("ownerReferences", []).append(self._owner_ref(sts))
                    ),
                )
                if adopted is not None:
                    pods[ordinal] = adopted
        parallel = spec.get("podManagementPolicy") == "Parallel"
        revision = revision_hash(sts)

        for ordinal, pod in list(pods.items()):
            if not is_terminating(pod) and (pod.get("status") or {}).get("phase") in (
                "Succeeded",
                "Failed",
            ):
                pods[ordinal], _ = store.delete(
                    R.PODS, namespace, pod["metadata"]["name"], DeleteOptions()
                )
        if parallel:
            for ordinal in range(replicas):
                if ordinal not in pods:
                    pods[ordinal] = self._create_pod(sts, ordinal, revision)
            for ordinal in sorted(pods, reverse=True):
                if ordinal >= replicas and not is_terminating(pods[ordinal]):
                    pods[ordinal] = self._delete(pods[ordinal])
        else:
            for ordinal in range(replicas):
                if ordinal not in pods:
                    pods[ordinal] = self._create_pod(sts, ordinal, revision)
                    break
                if is_terminating(pods[ordinal]) or not is_ready(pods[ordinal]):
                    break
            else:
                condemned = sorted((o for o in pods if o >= replicas), reverse=True)
                if condemned and not any(is_terminating(pods[o]) for o in condemned):
                    pods[condemned[0]] = self._delete(pods[condemned[0]])
        self._update_status(sts, pods, revision)

    def _owner_ref(self, sts: Obj) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "name": sts["metadata"]["name"],
            "uid": sts["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def _create_pod(self, sts: Obj, ordinal: int, revision: str) -> Obj:
        import copy

        meta = sts["metadata"]
        template = sts["spec"]["template"]
        tmeta = template.get("metadata") or {}
        pod_name = f"{meta['name']}-{ordinal}"
        labels = dict(tmeta.get("labels") or {})
        labels.update(
            {POD_NAME_LABEL: pod_name, REVISION_LABEL: revision, POD_INDEX_LABEL: str(ordinal)}
        )
        spec = copy.deepcopy(template["spec"])
        spec["hostname"] = pod_name
        if sts["spec"].get("serviceName"):
            spec["subdomain"] = sts["spec"]["serviceName"]
        pod: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "namespace": meta["namespace"],
                "labels": labels,
                "ownerReferences": [self._owner_ref(sts)],
            },
            "spec": spec,
        }
        if tmeta.get("annotations"):
            pod["metadata"]["annotations"] = dict(tmeta["annotations"])
        return self.store.create(R.PODS, meta["namespace"], pod)

    def _delete(self, pod: Obj) -> Obj:
        meta = pod["metadata"]
        obj, _ = self.store.delete(
            R.PODS, meta["namespace"], meta["name"], DeleteOptions(uid=meta["uid"])
        )
        return obj

    def _update_status(self, sts: Obj, pods: dict[int, Obj], revision: str) -> None:
        live = [
            p
            for p in pods.values()
            if self.store.find(R.PODS, p["metadata"]["namespace"], p["metadata"]["name"]) is p
        ]
        ready = current = 0
        for p in live:
            ready += is_ready(p)
            current += (p["metadata"].get("labels") or {}).get(REVISION_LABEL) == revision
        status: dict[str, Any] = {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": len(live),
            "readyReplicas": ready,
            "currentReplicas": current,
            "updatedReplicas": current,
            "availableReplicas": ready,
            "currentRevision": revision,
            "updateRevision": revision,
            "collisionCount": 0,
        }
        for key in ("readyReplicas", "currentReplicas", "updatedReplicas"):
            if not status[key]:
                del status[key]  # omitempty in apps/v1 StatefulSetStatus

        def write(obj: Obj) -> None:
            obj["status"] = status

        self.store.mutate(
            R.STATEFULSETS,
            sts["metadata"]["namespace"],
            sts["metadata"]["name"],
            write,
            uid=sts["metadata"]["uid"],
        )


class GarbageCollector:
    """Deletes dependents whose every owner is gone (background propagation).
    ``propagationPolicy: Orphan`` is handled by the store at delete time;
    ``Foreground`` is treated as background."""

    def __init__(self, store: Store, faults: Faults | None = None) -> None:
        self.store = store
        self.faults = faults or Faults(store=store)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self.store.subscribe(None) as (_, sub):
            task_status.started()
            async for change in sub.receive:
                await self.faults.wait_api_up()
                if change.type == "DELETED":
                    self._collect(str(change.obj["metadata"].get("uid", "")))

    def _owner_exists(self, namespace: str, ref: dict[str, Any]) -> bool:
        rt = R.BY_KIND.get(str(ref.get("kind")))
        if rt is None:
            return False
        owner = self.store.find(rt, namespace, str(ref.get("name")))
        return owner is not None and owner["metadata"]["uid"] == ref.get("uid")

    def _collect(self, uid: str) -> None:
        for rt, (namespace, name) in self.store.dependents(uid):
            obj = self.store.find(rt, namespace, name)
            if obj is None or is_terminating(obj):
                continue
            refs = obj["metadata"].get("ownerReferences") or []
            if any(self._owner_exists(namespace, r) for r in refs):
                continue
            try:
                self.store.delete(rt, namespace, name, DeleteOptions(uid=obj["metadata"]["uid"]))
            except ApiError as err:
                log.debug("gc of %s %s/%s: %s", rt.plural, namespace, name, err.message)


class NamespaceController:
    """A namespace being deleted: delete everything in it, then the namespace."""

    def __init__(self, store: Store, faults: Faults | None = None) -> None:
        self.store = store
        self.faults = faults or Faults(store=store)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self.store.subscribe(None) as (_, sub):
            task_status.started()
            self._sweep()
            async for _change in sub.receive:
                await self.faults.wait_api_up()
                self._sweep()

    def _sweep(self) -> None:
        for ns in list(self.store.objects(R.NAMESPACES)):
            if not is_terminating(ns):
                continue
            name = ns["metadata"]["name"]
            remaining = 0
            for rt in R.ALL:
                if not rt.namespaced:
                    continue
                for obj in list(self.store.objects(rt, name)):
                    remaining += 1
                    if not is_terminating(obj):
                        self.store.delete(rt, name, obj["metadata"]["name"], DeleteOptions())
            if not remaining:
                self.store.remove(R.NAMESPACES, "", name)
