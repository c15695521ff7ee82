"""The HTTP face of the stand-in: routing, authentication, RBAC, the verbs, watch.

Requests arrive from :mod:`httpserver` as plain :class:`Request` objects; answers are
Kubernetes JSON. Every error is a ``Status``. A watch is a chunked stream of
newline-delimited ``{"type", "object"}`` events, as the apiserver's JSON watch
encoding (``Transfer-Encoding: chunked``, ``Content-Type: application/json``)."""

from __future__ import annotations

import json
import logging
import math
import random
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from . import resources as R
from .errors import (
    ApiError,
    bad_request,
    expired,
    forbidden,
    internal_error,
    method_not_allowed,
    route_not_found,
    too_large_resource_version,
    too_many_requests,
    unauthorized,
    unsupported_media_type,
)
from .faults import Faults, WatchHandle
from .httpserver import Request, Response, StreamResponse, StreamWriter, abort_connection
from .patch import APPLY, PATCH_TYPES
from .realism import BOOKMARK_BEFORE_TIMEOUT
from .resources import ResourceType
from .selection import FieldSelector, LabelSelector, parse_field_selector, parse_label_selector
from .store import Change, DeleteOptions, Obj, Store, parse_resource_version

log = logging.getLogger("kubeapi.server")

TOO_LARGE_RV_WAIT: Final = 3.0  # seconds the apiserver waits for its cache to catch up before 504
WATCH_BUFFER: Final = 10_000  # events queued per watch before the watcher is dropped as too slow
INITIAL_EVENTS_END: Final = "k8s.io/initial-events-end"
REQUEST_LOG: Final = 20_000  # requests remembered for assertions
CONCURRENT_WRITE: Final = "kubeapi.test/concurrent-write"
PUBLIC_PATHS: Final = frozenset({"/healthz", "/livez", "/readyz", "/version"})

PolicyRule = Mapping[str, Sequence[str]]


@dataclass(frozen=True, slots=True)
class Route:
    rt: ResourceType
    namespace: str | None  # None: all namespaces (or a cluster-scoped type)
    name: str | None
    subresource: str | None
    legacy_watch: bool = False


@dataclass(frozen=True, slots=True)
class RequestRecord:
    method: str
    verb: str  # Kubernetes verb, or "" for non-resource requests
    path: str
    query: dict[str, str]
    status: int
    user: str


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "t", "yes", "y")


def parse_route(path: str) -> Route | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    legacy_watch = bool(rest) and rest[0] == "watch"
    if legacy_watch:
        rest = rest[1:]
    if not rest:
        return None
    if rest[0] == "namespaces" and len(rest) >= 3 and (group, version, rest[2]) in R.BY_PATH:
        rt = R.BY_PATH[(group, version, rest[2])]
        if not rt.namespaced or len(rest) > 5:
            return None
        name = rest[3] if len(rest) > 3 else None
        sub = rest[4] if len(rest) > 4 else None
        return Route(rt, rest[1], name, sub, legacy_watch)
    rt_key = (group, version, rest[0])
    if rt_key not in R.BY_PATH or len(rest) > 3:
        return None
    rt = R.BY_PATH[rt_key]
    name = rest[1] if len(rest) > 1 else None
    if rt.namespaced and name is not None:
        return None  # /api/v1/pods/x is not a thing
    sub = rest[2] if len(rest) > 2 else None
    return Route(rt, None, name, sub, legacy_watch)


def _verb(method: str, route: Route, query: Mapping[str, list[str]]) -> str:
    watch = route.legacy_watch or _truthy((query.get("watch") or [""])[-1])
    if method == "GET":
        if watch:
            return "watch"
        return "list" if route.name is None else "get"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "deletecollection" if route.name is None else "delete"
    return method.lower()


def _rule_allows(rule: PolicyRule, verb: str, group: str, resource: str, name: str | None) -> bool:
    def has(key: str, value: str) -> bool:
        values = rule.get(key) or ()
        return "*" in values or value in values

    if not (has("verbs", verb) and has("apiGroups", group) and has("resources", resource)):
        return False
    names = rule.get("resourceNames") or ()
    return not names or (name is not None and name in names)


def _json(status: int, body: Any, extra: Iterable[tuple[str, str]] = ()) -> Response:
    return Response(
        status,
        [
            ("content-type", "application/json"),
            ("cache-control", "no-cache, private"),
            ("audit-id", str(uuid.uuid4())),
            *extra,
        ],
        json.dumps(body, separators=(",", ":")).encode(),
    )


def error_response(err: ApiError) -> Response:
    extra = [("retry-after", str(err.retry_after))] if err.retry_after is not None else []
    return _json(err.code, err.status(), extra)


def _list_item(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


def _stamp(obj: Obj, rv: int) -> Obj:
    """``obj`` with metadata.resourceVersion replaced (a shallow, safe copy)."""
    return {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(rv)}}


def convert_change(
    change: Change, labels: LabelSelector, fields: FieldSelector
) -> tuple[str, Obj] | None:
    """What one watcher sees of a change, as the watch cache's cacheWatcher does: an
    object that starts matching arrives as ADDED, one that stops matching as DELETED
    (with its previous content and the change's resourceVersion)."""

    def passes(obj: Obj | None) -> bool:
        return (
            obj is not None
            and labels.matches(obj["metadata"].get("labels"))
            and fields.matches(obj)
        )

    cur = change.type != "DELETED" and passes(change.obj)
    old = passes(change.prev)
    if change.type == "DELETED":
        return ("DELETED", change.obj) if old else None
    if cur and old:
        return "MODIFIED", change.obj
    if cur:
        return "ADDED", change.obj
    if old:
        assert change.prev is not None
        return "DELETED", _stamp(change.prev, change.rv)
    return None


@dataclass
class ApiServer:
    store: Store
    faults: Faults
    tokens: Mapping[str, str]  # bearer token -> user name
    rbac: Mapping[str, tuple[str, Sequence[PolicyRule]]] = field(default_factory=dict)
    """user -> (namespace of its Role, rules). Users not listed may do anything."""
    bookmark_interval: float = 1.0
    default_watch_timeout: float | None = None
    server_address: str = "127.0.0.1"
    pod_logs: Callable[[str, str], str | None] | None = None
    too_large_wait: float = TOO_LARGE_RV_WAIT

    def __post_init__(self) -> None:
        self.requests: deque[RequestRecord] = deque(maxlen=REQUEST_LOG)
        self.internal_errors: list[BaseException] = []

    # ------------------------------------------------------------------ entry

    async def handle(self, req: Request) -> Response | StreamResponse:
        user = ""
        verb = ""
        query = {k: v[-1] for k, v in req.query.items()}
        try:
            if self.faults.outage_mode == "503":
                raise ApiError(
                    503,
                    "ServiceUnavailable",
                    "the server is currently unable to handle the request",
                    retry_after=self.faults.outage_retry_after,
                )
            if self.faults.latency > 0:
                await trio.sleep(self.faults.latency)
            user = self._authenticate(req)
            route = parse_route(req.path)
            if route is not None:
                verb = _verb(req.method, route, req.query)
            fault = self.faults.take_request_fault(verb or req.method.lower(), req.path)
            if fault is not None:
                raise self._fault_error(fault.status, fault.message, fault.retry_after)
            if route is None:
                response: Response | StreamResponse = self._non_resource(req)
            else:
                self._authorize(user, verb, route)
                response = await self._resource(req, route, verb)
        except ApiError as err:
            response = error_response(err)
        except (
            Exception
        ) as exc:  # a bug in the stand-in: report it as the apiserver would, and remember it
            log.exception("stand-in failed on %s %s", req.method, req.path)
            self.internal_errors.append(exc)
            response = error_response(internal_error(f"{type(exc).__name__}: {exc}"))
        self.requests.append(
            RequestRecord(req.method, verb, req.path, query, response.status, user)
        )
        return response

    def _fault_error(self, status: int, message: str, retry_after: int | None) -> ApiError:
        if status == 429:
            return too_many_requests(retry_after or 1)
        if status == 500:
            err = internal_error(message)
            err.retry_after = retry_after
            return err
        reasons = {
            409: "Conflict",
            410: "Expired",
            503: "ServiceUnavailable",
            504: "Timeout",
            401: "Unauthorized",
            403: "Forbidden",
            404: "NotFound",
        }
        return ApiError(
            status, reasons.get(status, "InternalError"), message, retry_after=retry_after
        )

    def _authenticate(self, req: Request) -> str:
        header = req.headers.get("authorization")
        if header is None:
            if req.path in PUBLIC_PATHS:
                return "system:anonymous"
            raise unauthorized()
        scheme, _, token = header.partition(" ")
        user = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise unauthorized()
        return user

    def _authorize(self, user: str, verb: str, route: Route) -> None:
        if user not in self.rbac:
            return
        role_ns, rules = self.rbac[user]
        rt = route.rt
        resource = rt.plural + (f"/{route.subresource}" if route.subresource else "")
        name = route.name
        if route.legacy_watch and name is not None:
            name = None  # watching one object by name is authorized as a watch of the collection by resourceName upstream; keep it simple
        allowed = (
            rt.namespaced
            and route.namespace == role_ns
            and any(_rule_allows(rule, verb, rt.group, resource, name) for rule in rules)
        )
        if allowed:
            return
        who = f'{rt.qualified} "{route.name}"' if route.name else rt.qualified
        where = (
            f' in the namespace "{route.namespace}"' if route.namespace else " at the cluster scope"
        )
        raise forbidden(
            f'{who} is forbidden: User "{user}" cannot {verb} resource "{resource}" in API group "{rt.group}"{where}',
            details={
                "name": route.name or "",
                **({"group": rt.group} if rt.group else {}),
                "kind": rt.plural,
            },
        )

    # ------------------------------------------------------------------ discovery

    def _non_resource(self, req: Request) -> Response:
        if req.method != "GET":
            raise method_not_allowed(req.method)
        path = req.path.rstrip("/") or "/"
        if path in ("/healthz", "/livez", "/readyz"):
            return Response(200, [("content-type", "text/plain; charset=utf-8")], b"ok")
        if path == "/version":
            return _json(200, R.SERVER_VERSION)
        if path == "/api":
            return _json(200, R.api_versions(self.server_address))
        if path == "/apis":
            return _json(200, R.api_group_list())
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) == 2:
            doc = R.resource_list("", parts[1])
        elif parts[0] == "apis" and len(parts) == 2:
            doc = R.api_group(parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            doc = R.resource_list(parts[1], parts[2])
        else:
            doc = None
        if doc is None:
            raise route_not_found()
        return _json(200, doc)

    # ------------------------------------------------------------------ resources

    async def _resource(self, req: Request, route: Route, verb: str) -> Response | StreamResponse:
        rt = route.rt
        if route.subresource is not None and route.subresource not in rt.subresources:
            raise route_not_found()
        if route.legacy_watch and verb != "watch":
            raise method_not_allowed(req.method)
        ns = route.namespace or ""
        if req.param("dryRun"):
            raise bad_request("dryRun is not supported by the Kubernetes API stand-in")
        if verb == "watch":
            return await self._watch(req, route)
        if verb == "list":
            if route.subresource is not None:
                raise route_not_found()
            return self._list(req, route)
        if verb == "deletecollection":
            if route.namespace is None and rt.namespaced:
                raise method_not_allowed(req.method)
            return self._delete_collection(req, route)
        if verb == "create":
            if route.name is not None:
                raise method_not_allowed(req.method)
            if rt.namespaced and route.namespace is None:
                raise method_not_allowed(req.method)
            return _json(201, self.store.create(rt, ns, self._body(req)))
        assert route.name is not None
        name = route.name
        if verb == "get":
            if route.subresource == "log":
                return self._log(route)
            obj = self.store.get(rt, ns, name)
            if route.subresource == "scale":
                from .strategies import to_scale

                return _json(200, to_scale(obj))
            return _json(200, obj)
        if route.subresource == "log":
            raise method_not_allowed(req.method)
        if verb in ("update", "patch", "delete"):
            self._maybe_race(req, rt, ns, name, verb)
        if verb == "update":
            return _json(
                200, self.store.update(rt, ns, name, self._body(req), subresource=route.subresource)
            )
        if verb == "patch":
            content_type = req.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type == APPLY or content_type not in PATCH_TYPES:
                raise unsupported_media_type(content_type)
            patched = self.store.patch(
                rt, ns, name, content_type, self._body(req), subresource=route.subresource
            )
            return _json(200, patched)
        if verb == "delete":
            if route.subresource is not None:
                raise method_not_allowed(req.method)
            obj, removed = self.store.delete(rt, ns, name, self._delete_options(req))
            if removed and rt is not R.PODS:
                return _json(200, _success(rt, obj))
            return _json(200, obj)
        raise method_not_allowed(req.method)

    def _maybe_race(self, req: Request, rt: ResourceType, ns: str, name: str, verb: str) -> None:
        """Another writer gets in first (faults.race_writes / write_race_probability)."""
        if not self.faults.take_write_race(verb, req.path, random.random()):
            return
        if self.store.find(rt, ns, name) is None:
            return

        def bump(obj: Obj) -> None:
            annotations = obj["metadata"].setdefault("annotations", {})
            annotations[CONCURRENT_WRITE] = str(int(annotations.get(CONCURRENT_WRITE, "0")) + 1)

        self.store.mutate(rt, ns, name, bump)

    def _body(self, req: Request) -> Any:
        if not req.body:
            raise bad_request("the body of the request was empty")
        try:
            return json.loads(req.body)
        except ValueError as exc:
            raise bad_request(f"the body of the request could not be decoded: {exc}") from None

    def _delete_options(self, req: Request) -> DeleteOptions:
        grace: int | None = None
        propagation = req.param("propagationPolicy")
        if req.param("gracePeriodSeconds") not in (None, ""):
            try:
                grace = int(req.param("gracePeriodSeconds") or "")
            except ValueError:
                raise bad_request("gracePeriodSeconds must be an integer") from None
        if _truthy(req.param("orphanDependents")):
            propagation = "Orphan"
        uid = rv = None
        if req.body.strip():
            body = self._body(req)
            if not isinstance(body, dict):
                raise bad_request("DeleteOptions must be an object")
            if body.get("gracePeriodSeconds") is not None:
                grace = int(body["gracePeriodSeconds"])
            pre = body.get("preconditions") or {}
            uid, rv = pre.get("uid"), pre.get("resourceVersion")
            propagation = body.get("propagationPolicy") or propagation
            if body.get("orphanDependents") is True:
                propagation = "Orphan"
        if propagation not in (None, "Orphan", "Background", "Foreground"):
            raise bad_request(f"propagationPolicy: Unsupported value: {propagation!r}")
        return DeleteOptions(
            grace_period=grace, uid=uid, resource_version=rv, propagation=propagation
        )

    def _selectors(
        self, req: Request, rt: ResourceType, name: str | None = None
    ) -> tuple[LabelSelector, FieldSelector]:
        labels = parse_label_selector(req.param("labelSelector"))
        text = req.param("fieldSelector") or ""
        if name is not None:
            text = f"metadata.name={name}" + (f",{text}" if text else "")
        return labels, parse_field_selector(text, rt.kind)

    def _list(self, req: Request, route: Route) -> Response:
        rt = route.rt
        labels, fields = self._selectors(req, rt)
        limit_text = req.param("limit")
        try:
            limit = int(limit_text) if limit_text else None
        except ValueError:
            raise bad_request(f"limit: invalid value {limit_text!r}") from None
        result = self.store.list_objects(
            rt,
            route.namespace if rt.namespaced else None,
            labels=labels,
            fields=fields,
            resource_version=req.param("resourceVersion"),
            match=req.param("resourceVersionMatch"),
            limit=limit,
            continue_token=req.param("continue") or None,
        )
        meta: Obj = {"resourceVersion": str(result.resource_version)}
        if result.continue_token:
            meta["continue"] = result.continue_token
        if result.remaining is not None:
            meta["remainingItemCount"] = result.remaining
        return _json(
            200,
            {
                "kind": rt.list_kind,
                "apiVersion": rt.api_version,
                "metadata": meta,
                "items": [_list_item(o) for o in result.items],
            },
        )

    def _delete_collection(self, req: Request, route: Route) -> Response:
        rt = route.rt
        labels, fields = self._selectors(req, rt)
        options = self._delete_options(req)
        result = self.store.list_objects(
            rt, route.namespace if rt.namespaced else None, labels=labels, fields=fields
        )
        deleted = []
        for obj in result.items:
            meta = obj["metadata"]
            try:
                out, _ = self.store.delete(rt, meta.get("namespace", ""), meta["name"], options)
            except ApiError as err:
                if err.code == 404:
                    continue
                raise
            deleted.append(_list_item(out))
        return _json(
            200,
            {
                "kind": rt.list_kind,
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(self.store.resource_version)},
                "items": deleted,
            },
        )

    def _log(self, route: Route) -> Response:
        assert route.name is not None
        self.store.get(route.rt, route.namespace or "", route.name)
        text = self.pod_logs(route.namespace or "", route.name) if self.pod_logs else None
        return Response(200, [("content-type", "text/plain")], (text or "").encode())

    # ------------------------------------------------------------------ watch

    async def _watch(self, req: Request, route: Route) -> Response | StreamResponse:
        rt = route.rt
        labels, fields = self._selectors(req, rt, route.name if route.legacy_watch else None)
        namespace = route.namespace if rt.namespaced else None
        rv_text = req.param("resourceVersion") or ""
        requested = parse_resource_version(rv_text) if rv_text else 0
        bookmarks = _truthy(req.param("allowWatchBookmarks"))
        initial_events = _truthy(req.param("sendInitialEvents"))
        if req.param("sendInitialEvents") is not None:
            if req.param("resourceVersionMatch") != "NotOlderThan":
                raise ApiError(
                    422,
                    "Invalid",
                    'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan',
                )
            if initial_events and not bookmarks:
                raise ApiError(
                    422,
                    "Invalid",
                    'ListOptions.meta.k8s.io "" is invalid: allowWatchBookmarks: Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true',
                )
        elif req.param("resourceVersionMatch"):
            raise ApiError(
                422,
                "Invalid",
                'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided',
            )
        timeout_text = req.param("timeoutSeconds")
        timeout = self.default_watch_timeout
        if timeout_text:
            try:
                timeout = float(int(timeout_text))
            except ValueError:
                raise bad_request(f"timeoutSeconds: invalid value {timeout_text!r}") from None
        replay = requested > 0 and not initial_events
        if (
            replay
            and requested < self.store.oldest_valid_rv()
            and self.faults.watch_expired_mode == "http"
        ):
            raise expired(f"too old resource version: {requested} ({self.store.compacted_rv})")

        async def produce(writer: StreamWriter) -> None:
            handle = WatchHandle(req.path)
            self.faults.add_watch(handle)
            deadline = trio.current_time() + (timeout if timeout is not None else math.inf)
            try:
                with handle.scope:
                    with trio.move_on_at(deadline):
                        await self._stream_events(
                            writer,
                            handle,
                            rt,
                            namespace,
                            labels,
                            fields,
                            requested,
                            replay,
                            initial_events,
                            bookmarks,
                            deadline,
                        )
                if handle.stalled:
                    await trio.sleep_forever()  # half-open: no byte, no end, until the client goes
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise  # the client went away (a reset while we wrote): not our failure
            except Exception as exc:
                log.exception("watch stream failed")
                self.internal_errors.append(exc)
                abort_connection()
            finally:
                self.faults.remove_watch(handle)
            if handle.abort:
                abort_connection()

        return StreamResponse(
            200,
            [
                ("content-type", "application/json"),
                ("cache-control", "no-cache, private"),
                ("audit-id", str(uuid.uuid4())),
            ],
            produce,
        )

    async def _stream_events(
        self,
        writer: StreamWriter,
        handle: WatchHandle,
        rt: ResourceType,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        requested: int,
        replay: bool,
        initial_events: bool,
        bookmarks: bool,
        deadline: float,
    ) -> None:
        async def emit(kind: str, obj: Obj) -> bool:
            """Send one event; False when the stream must end (drop-every fault)."""
            await writer.send(
                json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"
            )
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                handle.events_sent += 1
                every = self.faults.drop_watches_every
                if every is not None and handle.events_sent >= every:
                    handle.abort = self.faults.drop_watches_abort
                    handle.dropped = True
                    return False
            return True

        def bookmark(rv: int, annotations: dict[str, str] | None = None) -> Obj:
            meta: Obj = {"resourceVersion": str(rv)}
            if annotations:
                meta["annotations"] = annotations
            return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}

        if self.faults.end_watches_at_once:
            return
        if requested > self.store.resource_version:
            with trio.move_on_after(self.too_large_wait):
                await self.store.wait_until(lambda: self.store.resource_version >= requested)
            if requested > self.store.resource_version:
                await emit(
                    "ERROR",
                    too_large_resource_version(requested, self.store.resource_version).status(),
                )
                return
        stack = ExitStack()
        try:
            backlog, sub = stack.enter_context(
                self.store.subscribe(
                    rt, namespace, since=requested if replay else None, buffer=WATCH_BUFFER
                )
            )
        except ApiError as err:
            await emit("ERROR", err.status())
            return
        with stack:
            start_rv = self.store.resource_version
            initial = (
                []
                if replay
                else self.store.list_objects(rt, namespace, labels=labels, fields=fields).items
            )
            # --- nothing above awaited: the snapshot and the subscription are one instant
            for obj in initial:
                if not await emit("ADDED", obj):
                    return
            if initial_events:
                await emit("BOOKMARK", bookmark(start_rv, {INITIAL_EVENTS_END: "true"}))
            for change in backlog:
                seen = convert_change(change, labels, fields)
                if seen is not None and not await emit(*seen):
                    return

            def bookmark_time() -> float:
                """The apiserver's cacheWatcher.nextBookmarkTime: every interval, and
                once shortly before the watch's own timeout."""
                if not bookmarks:
                    return math.inf
                now = trio.current_time()
                at = now + self.bookmark_interval
                before_end = deadline - BOOKMARK_BEFORE_TIMEOUT
                return before_end if now < before_end < at else at

            next_bookmark = bookmark_time()
            while True:
                change_or_none: Change | None = None
                with trio.move_on_at(next_bookmark):
                    try:
                        change_or_none = await sub.receive.receive()
                    except trio.EndOfChannel:
                        return  # dropped as too slow (overflowed): the client re-watches
                if change_or_none is not None:
                    seen = convert_change(change_or_none, labels, fields)
                    if seen is not None and not await emit(*seen):
                        return
                    continue
                # Bookmark: first flush everything already committed, then (with no
                # checkpoint in between) read the current revision.
                while True:
                    try:
                        pending = sub.receive.receive_nowait()
                    except trio.WouldBlock:
                        break
                    except trio.EndOfChannel:
                        return
                    seen = convert_change(pending, labels, fields)
                    if seen is not None and not await emit(*seen):
                        return
                await emit("BOOKMARK", bookmark(self.store.resource_version))
                next_bookmark = bookmark_time()


def _success(rt: ResourceType, obj: Obj) -> Obj:
    details: Obj = {"name": obj["metadata"]["name"]}
    if rt.group:
        details["group"] = rt.group
    details["kind"] = rt.plural
    details["uid"] = obj["metadata"]["uid"]
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


__all__ = [
    "ApiServer",
    "RequestRecord",
    "Route",
    "convert_change",
    "error_response",
    "parse_route",
]
