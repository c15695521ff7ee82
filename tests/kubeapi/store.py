"""The object store: etcd plus the apiserver's registry, in memory.

Theory of operation
-------------------
One global resourceVersion counter (like etcd's revision) is bumped by every write
of any object. Every write goes through :meth:`Store._commit`, which stores the new
object, appends a :class:`Change` to a bounded history window, hands the change to
every :class:`Subscription` (watch streams, controllers) without blocking, and wakes
in-process waiters. Writes are synchronous methods: trio runs one task at a time, so
a write is atomic with respect to every watcher and list, and a watch that
subscribes "at revision N" can never miss or duplicate a change.

Stored objects are never mutated once committed (writers deep-copy first); readers
that are not the HTTP layer get deep copies from the public facade in ``api.py``.

History older than the window is *compacted*: a watch or an exact-revision list
from before ``compacted_rv`` gets 410 Expired, as from a real apiserver whose watch
cache / etcd has moved on."""

from __future__ import annotations

import base64
import binascii
import copy
import json
import math
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import trio

from . import resources as R
from . import strategies as S
from .errors import (
    STALE_OBJECT,
    ApiError,
    already_exists,
    bad_request,
    conflict,
    expired,
    forbidden,
    invalid,
    not_found,
    too_large_resource_version,
)
from .patch import apply_patch
from .resources import ResourceType
from .selection import FieldSelector, LabelSelector

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace or "", name)
EventType = Literal["ADDED", "MODIFIED", "DELETED"]

HISTORY_LIMIT: Final = 10_000  # changes kept for watch replay (the real watch cache keeps ~75 s)
FIRST_RESOURCE_VERSION: Final = 1000  # RVs below this never existed: watching from them is 410
GENERATE_NAME_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"  # utilrand.String's alphabet
GENERATE_NAME_SUFFIX: Final = 5


def timestamp(moment: datetime | None = None) -> str:
    """RFC 3339 in UTC with second precision, like metav1.Time."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_of(obj: Obj) -> Key:
    meta = obj["metadata"]
    return (meta.get("namespace", ""), meta["name"])


@dataclass(frozen=True, slots=True)
class Change:
    """One committed write: what a watch event is made from."""

    rv: int
    type: EventType
    rt: ResourceType
    obj: Obj  # the new state; for DELETED the last state, stamped with the delete's RV
    prev: Obj | None  # the state before (None for ADDED)
    at: float = 0.0  # monotonic time of the commit (for the watch cache's window)

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"].get("namespace", ""))

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


@dataclass(frozen=True, slots=True)
class DeleteOptions:
    grace_period: int | None = None
    uid: str | None = None  # preconditions.uid
    resource_version: str | None = None  # preconditions.resourceVersion
    propagation: str | None = None  # Orphan | Background | Foreground (treated as Background)


class Subscription:
    """A stream of :class:`Change` for one resource type (or all), optionally one
    namespace. Bounded subscriptions are closed when their reader falls behind (the
    apiserver drops unresponsive watchers too); the reader then sees EndOfChannel and
    ``overflowed`` is set."""

    def __init__(self, rt: ResourceType | None, namespace: str | None, buffer: float) -> None:
        self.rt = rt
        self.namespace = namespace
        self.send, self.receive = trio.open_memory_channel[Change](buffer)
        self.overflowed = False

    def wants(self, change: Change) -> bool:
        return (self.rt is None or self.rt is change.rt) and (
            self.namespace is None or self.namespace == change.namespace
        )


@dataclass
class ListResult:
    items: list[Obj]
    resource_version: int
    continue_token: str | None = None
    remaining: int | None = None


@dataclass
class Store:
    history_limit: int = HISTORY_LIMIT
    watch_window: float = math.inf
    """Seconds of history kept (the watch cache's ~75 s); older changes are compacted."""
    alloc: S.Allocator = field(default_factory=S.Allocator)

    def __post_init__(self) -> None:
        self._objects: dict[ResourceType, dict[Key, Obj]] = {rt: {} for rt in R.ALL}
        self._rv = FIRST_RESOURCE_VERSION
        self.compacted_rv = FIRST_RESOURCE_VERSION
        self._history: deque[Change] = deque()
        self._subs: set[Subscription] = set()
        self._dependents: dict[str, set[tuple[ResourceType, Key]]] = {}
        self._key_events: dict[tuple[ResourceType, Key], trio.Event] = {}
        self._any_change = trio.Event()

    # ------------------------------------------------------------------ reads

    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self._objects[rt].get((namespace if rt.namespaced else "", name))
        if obj is None:
            raise not_found(rt, name)
        return obj

    def find(self, rt: ResourceType, namespace: str, name: str) -> Obj | None:
        return self._objects[rt].get((namespace if rt.namespaced else "", name))

    def objects(self, rt: ResourceType, namespace: str | None = None) -> Iterator[Obj]:
        for (ns, _), obj in self._objects[rt].items():
            if namespace is None or ns == namespace:
                yield obj

    def dependents(self, uid: str) -> list[tuple[ResourceType, Key]]:
        return sorted(self._dependents.get(uid, ()), key=lambda d: (d[0].plural, d[1]))

    def _trim(self) -> None:
        """Compact changes older than the watch window (checked whenever history is read
        or written, so an idle store expires as surely as a busy one)."""
        if math.isinf(self.watch_window):
            return
        horizon = time.monotonic() - self.watch_window
        while self._history and self._history[0].at < horizon:
            self.compacted_rv = self._history.popleft().rv
        if not self._history:
            self.compacted_rv = self._rv

    def oldest_valid_rv(self) -> int:
        """Resource versions below this answer 410 (history compacted or aged out)."""
        self._trim()
        return self.compacted_rv

    def _snapshot(self, rt: ResourceType, at_rv: int) -> dict[Key, Obj]:
        """The objects of ``rt`` as they were at ``at_rv`` (undoing newer history)."""
        self._trim()
        if at_rv < self.compacted_rv:
            raise expired(f"too old resource version: {at_rv} ({self.compacted_rv})")
        state = dict(self._objects[rt])
        for change in reversed(self._history):
            if change.rv <= at_rv:
                break
            if change.rt is not rt:
                continue
            key = key_of(change.obj)
            if change.type == "ADDED":
                state.pop(key, None)
            else:
                assert change.prev is not None
                state[key] = change.prev
        return state

    def list_objects(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
        resource_version: str | None = None,
        match: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ListResult:
        """A list with the apiserver's resourceVersion/resourceVersionMatch/limit/
        continue semantics (see "Resource versions" in the API concepts docs)."""
        labels = labels or LabelSelector()
        fields = fields or FieldSelector()
        if match is not None and match not in ("Exact", "NotOlderThan"):
            raise _list_options_invalid(
                f'resourceVersionMatch: Unsupported value: "{match}": supported values: "Exact", "NotOlderThan"'
            )
        if match and not resource_version:
            raise _list_options_invalid(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"
            )
        if continue_token and resource_version not in (None, ""):
            raise _list_options_invalid(
                "resourceVersion: Forbidden: specifying resource version is not allowed when using continue"
            )
        start_after: Key | None = None
        requested = parse_resource_version(resource_version) if resource_version else None
        if match == "Exact" and requested == 0:
            raise _list_options_invalid(
                'resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"'
            )
        if requested is not None and requested > self._rv:
            raise too_large_resource_version(requested, self._rv)
        if continue_token:
            at_rv, start_after = _decode_continue(continue_token)
            self._trim()
            if at_rv < self.compacted_rv:
                raise expired(
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter."
                )
            state = self._snapshot(rt, at_rv)
        elif match == "Exact":
            assert requested is not None
            at_rv = requested
            state = self._snapshot(rt, at_rv)
        else:
            at_rv = self._rv
            state = self._objects[rt]
        if resource_version == "0" and match is None:
            limit = None  # served from the watch cache, which ignores limit for RV=0
        name = fields.exact_name()
        keys = sorted(state) if name is None else sorted(k for k in state if k[1] == name)
        if start_after is not None:
            keys = [k for k in keys if k > start_after]
        items: list[Obj] = []
        token = None
        remaining = None
        for i, key in enumerate(keys):
            if namespace is not None and rt.namespaced and key[0] != namespace:
                continue
            obj = state[key]
            if not labels.matches(obj["metadata"].get("labels")) or not fields.matches(obj):
                continue
            if limit is not None and limit > 0 and len(items) >= limit:
                token = _encode_continue(at_rv, key_of(items[-1]))
                if labels.empty and fields.empty:
                    remaining = sum(
                        1
                        for k in keys[i:]
                        if namespace is None or not rt.namespaced or k[0] == namespace
                    )
                break
            items.append(obj)
        return ListResult(items, at_rv, token, remaining)

    # ------------------------------------------------------------------ writes

    def _check_namespace(self, rt: ResourceType, namespace: str, name: str) -> None:
        if not rt.namespaced:
            return
        ns = self.find(R.NAMESPACES, "", namespace)
        if ns is None:
            raise not_found(R.NAMESPACES, namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise forbidden(
                f'{rt.qualified} "{name}" is forbidden: unable to create new content in namespace '
                f"{namespace} because it is being terminated",
                details={
                    "name": name,
                    "kind": rt.plural,
                    "causes": [
                        {
                            "reason": "NamespaceTerminating",
                            "message": f"namespace {namespace} is being terminated",
                            "field": "metadata.namespace",
                        }
                    ],
                },
            )

    def create(self, rt: ResourceType, namespace: str, body: Any) -> Obj:
        obj = _check_body(rt, body)
        meta = obj["metadata"]
        ns = namespace if rt.namespaced else ""
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", ns):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise invalid(
                    rt,
                    "",
                    [
                        (
                            "metadata.name",
                            "FieldValueRequired",
                            "Required value: name or generateName is required",
                        )
                    ],
                )
            meta["name"] = prefix + "".join(
                secrets.choice(GENERATE_NAME_ALPHABET) for _ in range(GENERATE_NAME_SUFFIX)
            )
        name = meta["name"]
        self._check_namespace(rt, ns, name)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = timestamp()
        meta.pop("resourceVersion", None)
        S.prepare_create(rt, obj)
        S.validate(rt, obj, None)
        if (ns, name) in self._objects[rt]:
            raise already_exists(rt, name)
        S.allocate(rt, obj, None, self.alloc)
        return self._commit(rt, "ADDED", obj, None)

    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
    ) -> Obj:
        """PUT: replace the object (or its status / scale)."""
        old = self.get(rt, namespace, name)
        if subresource == "scale":
            return self._write_scale(rt, old, body)
        new = _check_body(rt, body)
        if not S.allows_unconditional_update(rt) and not new["metadata"].get("resourceVersion"):
            raise invalid(
                rt,
                name,
                [
                    (
                        "metadata.resourceVersion",
                        "FieldValueInvalid",
                        "Invalid value: 0x0: must be specified for an update",
                    )
                ],
            )
        return self._write(rt, old, new, subresource)

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        patch: Any,
        *,
        subresource: str | None = None,
    ) -> Obj:
        old = self.get(rt, namespace, name)
        if subresource == "scale":
            return self._write_scale(rt, old, apply_patch(content_type, S.to_scale(old), patch))
        new = apply_patch(content_type, old, patch)
        if not isinstance(new, dict):
            raise bad_request("the patch did not produce an object")
        return self._write(rt, old, new, subresource)

    def _write(self, rt: ResourceType, old: Obj, new: Obj, subresource: str | None) -> Obj:
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            meta = new["metadata"] = {}
        name = old["metadata"]["name"]
        if meta.get("name") not in (None, name):
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        if rt.namespaced and meta.get("namespace") not in (None, "", old["metadata"]["namespace"]):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        _check_preconditions(rt, old, meta.get("uid"), meta.get("resourceVersion"))
        result = S.prepare_update(rt, new, old, subresource)
        result["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if result == old:
            return old  # a no-op write changes nothing, not even the resourceVersion
        if subresource is None:
            S.validate(rt, result, old)
            S.allocate(rt, result, old, self.alloc)
        rmeta = result["metadata"]
        if (
            rmeta.get("deletionTimestamp")
            and not rmeta.get("finalizers")
            and not rmeta.get("deletionGracePeriodSeconds")
        ):
            return self._remove(rt, old, last=result)
        return self._commit(rt, "MODIFIED", result, old)

    def _write_scale(self, rt: ResourceType, old: Obj, scale: Any) -> Obj:
        if rt is not R.STATEFULSETS:
            raise not_found(rt, old["metadata"]["name"])
        if not isinstance(scale, dict):
            raise bad_request("Scale must be an object")
        meta = scale.get("metadata") or {}
        _check_preconditions(rt, old, meta.get("uid"), meta.get("resourceVersion"))
        replicas = (scale.get("spec") or {}).get("replicas", 0)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(
                422,
                "Invalid",
                f'Scale.autoscaling "{old["metadata"]["name"]}" is invalid: spec.replicas: Invalid value: {replicas!r}: must be greater than or equal to 0',
                details={
                    "name": old["metadata"]["name"],
                    "group": "autoscaling",
                    "kind": "Scale",
                    "causes": [
                        {
                            "reason": "FieldValueInvalid",
                            "message": f"Invalid value: {replicas!r}: must be greater than or equal to 0",
                            "field": "spec.replicas",
                        }
                    ],
                },
            )
        if old["spec"].get("replicas") == replicas:
            return S.to_scale(old)
        new = copy.deepcopy(old)
        new["spec"]["replicas"] = replicas
        new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        return S.to_scale(self._commit(rt, "MODIFIED", new, old))

    def mutate(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        fn: Callable[[Obj], None],
        *,
        uid: str | None = None,
    ) -> Obj | None:
        """In-process read-modify-write for controllers (no validation, no strategy):
        ``fn`` edits a deep copy. Returns the stored object, or None if the object is
        gone or is another incarnation than ``uid``."""
        old = self.find(rt, namespace, name)
        if old is None or (uid is not None and old["metadata"]["uid"] != uid):
            return None
        new = copy.deepcopy(old)
        fn(new)
        if new == old:
            return old
        return self._commit(rt, "MODIFIED", new, old)

    def delete(
        self, rt: ResourceType, namespace: str, name: str, options: DeleteOptions | None = None
    ) -> tuple[Obj, bool]:
        """Returns (object, removed now?). A pod with a grace period, an object with
        finalizers or a namespace stays, marked with a deletionTimestamp."""
        options = options or DeleteOptions()
        old = self.get(rt, namespace, name)
        meta = old["metadata"]
        _check_preconditions(rt, old, options.uid, options.resource_version, precondition=True)
        if options.propagation == "Orphan":
            self._orphan(meta["uid"])
        if meta.get("deletionTimestamp"):
            # Already terminating: a shorter grace period moves the deadline (0 forces).
            if rt is R.PODS and options.grace_period is not None:
                current = int(meta.get("deletionGracePeriodSeconds") or 0)
                if options.grace_period == 0 and not meta.get("finalizers"):
                    return self._remove(rt, old), True
                if options.grace_period < current:
                    return self._mark_deleting(rt, old, options.grace_period), False
            return old, False
        if rt is R.NAMESPACES:
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = timestamp()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["status"] = {"phase": "Terminating"}
            return self._commit(rt, "MODIFIED", new, old), False
        grace = S.graceful_period(rt, old, options.grace_period)
        if grace > 0 or meta.get("finalizers"):
            return self._mark_deleting(rt, old, grace), False
        return self._remove(rt, old), True

    def _mark_deleting(self, rt: ResourceType, old: Obj, grace: int) -> Obj:
        new = copy.deepcopy(old)
        new["metadata"]["deletionTimestamp"] = timestamp(
            datetime.now(UTC) + timedelta(seconds=grace)
        )
        new["metadata"]["deletionGracePeriodSeconds"] = grace
        return self._commit(rt, "MODIFIED", new, old)

    def remove(
        self, rt: ResourceType, namespace: str, name: str, *, uid: str | None = None
    ) -> Obj | None:
        """In-process final removal (the kubelet after a pod's containers stopped, the
        namespace controller): DELETED now. Objects with finalizers only lose their
        grace period and stay until the finalizers are gone."""
        old = self.find(rt, namespace, name)
        if old is None or (uid is not None and old["metadata"]["uid"] != uid):
            return None
        last = copy.deepcopy(old)
        if last["metadata"].get("deletionTimestamp"):
            last["metadata"]["deletionGracePeriodSeconds"] = 0  # the kubelet's final delete
        if old["metadata"].get("finalizers"):
            last["metadata"].setdefault("deletionTimestamp", timestamp())
            last["metadata"]["deletionGracePeriodSeconds"] = 0
            return self._commit(rt, "MODIFIED", last, old) if last != old else old
        return self._remove(rt, old, last=last)

    def _remove(self, rt: ResourceType, old: Obj, *, last: Obj | None = None) -> Obj:
        S.release(rt, old, self.alloc)
        return self._commit(rt, "DELETED", copy.deepcopy(last if last is not None else old), old)

    def _orphan(self, owner_uid: str) -> None:
        for rt, (ns, name) in self.dependents(owner_uid):

            def strip(obj: Obj) -> None:
                refs = [
                    r
                    for r in obj["metadata"].get("ownerReferences") or []
                    if r.get("uid") != owner_uid
                ]
                if refs:
                    obj["metadata"]["ownerReferences"] = refs
                else:
                    obj["metadata"].pop("ownerReferences", None)

            self.mutate(rt, ns, name, strip)

    def compact(self) -> int:
        """Forget all history: every resourceVersion before now answers 410."""
        self.compacted_rv = self._rv
        self._history.clear()
        return self.compacted_rv

    # ------------------------------------------------------------------ commit

    def _commit(self, rt: ResourceType, kind: EventType, obj: Obj, prev: Obj | None) -> Obj:
        self._trim()
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        key = key_of(obj)
        table = self._objects[rt]
        if kind == "DELETED":
            del table[key]
        else:
            table[key] = obj
        self._index_owners(rt, key, prev, None if kind == "DELETED" else obj)
        change = Change(self._rv, kind, rt, obj, prev, time.monotonic())
        self._history.append(change)
        while len(self._history) > self.history_limit:
            self.compacted_rv = self._history.popleft().rv
        for sub in list(self._subs):
            if not sub.wants(change):
                continue
            try:
                sub.send.send_nowait(change)
            except trio.WouldBlock:
                sub.overflowed = True
                sub.send.close()
                self._subs.discard(sub)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subs.discard(sub)
        event = self._key_events.pop((rt, key), None)
        if event is not None:
            event.set()
        self._any_change.set()
        self._any_change = trio.Event()
        return obj

    def _index_owners(self, rt: ResourceType, key: Key, old: Obj | None, new: Obj | None) -> None:
        def uids(obj: Obj | None) -> set[str]:
            if obj is None:
                return set()
            return {r.get("uid", "") for r in obj["metadata"].get("ownerReferences") or []}

        before, after = uids(old), uids(new)
        for uid in before - after:
            deps = self._dependents.get(uid)
            if deps is not None:
                deps.discard((rt, key))
                if not deps:
                    del self._dependents[uid]
        for uid in after - before:
            self._dependents.setdefault(uid, set()).add((rt, key))

    # ------------------------------------------------------------------ watching

    @contextmanager
    def subscribe(
        self,
        rt: ResourceType | None,
        namespace: str | None = None,
        *,
        since: int | None = None,
        buffer: float = math.inf,
    ) -> Iterator[tuple[list[Change], Subscription]]:
        """Changes after ``since`` already committed (the backlog), and a subscription
        to every later one, taken atomically. ``since`` older than the history window
        raises 410 Expired."""
        backlog: list[Change] = []
        if since is not None:
            self._trim()
            if since < self.compacted_rv:
                raise expired(f"too old resource version: {since} ({self.compacted_rv})")
            for change in reversed(self._history):
                if change.rv <= since:
                    break
                if (rt is None or change.rt is rt) and (
                    namespace is None or change.namespace == namespace
                ):
                    backlog.append(change)
            backlog.reverse()
        sub = Subscription(rt, namespace, buffer)
        self._subs.add(sub)
        try:
            yield backlog, sub
        finally:
            self._subs.discard(sub)
            sub.send.close()
            sub.receive.close()

    async def wait_for(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        predicate: Callable[[Obj | None], bool],
    ) -> Obj | None:
        """Block until ``predicate(object or None)`` holds; return that state."""
        key = (namespace if rt.namespaced else "", name)
        while True:
            obj = self._objects[rt].get(key)
            if predicate(obj):
                return obj
            event = self._key_events.get((rt, key))
            if event is None:
                event = self._key_events[(rt, key)] = trio.Event()
            await event.wait()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Block until ``predicate()`` (re-checked after every write) holds."""
        while not predicate():
            await self._any_change.wait()


def parse_resource_version(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f'invalid resource version "{text}"') from None
    if value < 0:
        raise bad_request(f'invalid resource version "{text}"')
    return value


def _list_options_invalid(message: str) -> ApiError:
    return ApiError(
        422,
        "Invalid",
        f'ListOptions.meta.k8s.io "" is invalid: {message}',
        details={"group": "meta.k8s.io", "kind": "ListOptions"},
    )


def _encode_continue(rv: int, after: Key) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": "/".join(after) + "\x00"})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, Key]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        rv = int(data["rv"])
        ns, _, name = str(data["start"]).rstrip("\x00").rpartition("/")
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
        ) from None
    return rv, (ns, name)


def _check_body(rt: ResourceType, body: Any) -> Obj:
    if not isinstance(body, dict):
        raise bad_request(f"the body of the request was not a valid {rt.kind} object")
    obj = copy.deepcopy(body)
    kind = obj.get("kind")
    api_version = obj.get("apiVersion")
    if kind not in (None, "", rt.kind):
        raise bad_request(
            f'{kind} in version "{api_version}" cannot be handled as a {rt.kind}: the kind does not match'
        )
    if api_version not in (None, "", rt.api_version):
        raise bad_request(
            f"the API version in the data ({api_version}) does not match the expected API version ({rt.api_version})"
        )
    obj["kind"] = rt.kind
    obj["apiVersion"] = rt.api_version
    meta = obj.get("metadata")
    if meta is None:
        meta = obj["metadata"] = {}
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    return obj


def _check_preconditions(
    rt: ResourceType, old: Obj, uid: Any, resource_version: Any, *, precondition: bool = False
) -> None:
    meta = old["metadata"]
    name = meta["name"]
    if uid and uid != meta["uid"]:
        raise conflict(
            rt,
            name,
            f"Precondition failed: UID in precondition: {uid}, UID in object meta: {meta['uid']}",
        )
    if resource_version and str(resource_version) != meta["resourceVersion"]:
        if precondition:
            raise conflict(
                rt,
                name,
                f"Precondition failed: ResourceVersion in precondition: {resource_version}, ResourceVersion in object meta: {meta['resourceVersion']}",
            )
        raise conflict(rt, name, STALE_OBJECT)
