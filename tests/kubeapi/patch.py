"""The three patch formats the apiserver accepts (server-side apply is not served).

- ``application/merge-patch+json`` — RFC 7386: maps merge, ``null`` deletes, lists replace.
- ``application/strategic-merge-patch+json`` — like merge patch, except lists whose
  Go type carries a ``patchMergeKey`` merge element-wise by that key (containers by
  ``name``, conditions by ``type``, ownerReferences by ``uid`` ...), ``finalizers``
  merge as a set, and the ``$patch: delete|replace`` directives work on list elements
  and maps. Enough for labels, annotations, conditions and the other fields we use.
- ``application/json-patch+json`` — RFC 6902 with RFC 6901 pointers.

Pure functions on JSON values; they never mutate their inputs."""

from __future__ import annotations

import copy
from typing import Any, Final

from .errors import ApiError, bad_request

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"
PATCH_TYPES: Final = (MERGE, STRATEGIC, JSON_PATCH)

# patchMergeKey of list fields in the Kubernetes Go types we serve (by field name).
MERGE_KEYS: Final[dict[str, str]] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "ownerReferences": "uid",
    "imagePullSecrets": "name",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "addresses": "type",
}
SET_LISTS: Final = frozenset({"finalizers"})


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _ports_key(items: list[Any]) -> str:
    for item in items:
        if isinstance(item, dict) and "containerPort" in item:
            return "containerPort"
    return "port"


def _strategic_list(field: str, target: Any, patch: list[Any]) -> list[Any]:
    if field in SET_LISTS:
        base = list(target) if isinstance(target, list) else []
        for item in patch:
            if item not in base:
                base.append(copy.deepcopy(item))
        return base
    key = MERGE_KEYS.get(field)
    if field == "ports":
        key = _ports_key(patch + (target if isinstance(target, list) else []))
    if key is None:
        return [strategic_merge_patch(None, p) for p in patch]
    # a {"$patch": "replace"} element replaces the whole list with the others
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [
            strategic_merge_patch(None, p)
            for p in patch
            if not (isinstance(p, dict) and p.get("$patch") == "replace")
        ]
    result = [copy.deepcopy(t) for t in target] if isinstance(target, list) else []
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise bad_request(f"map: {item!r} does not contain declared merge key: {key}")
        idx = next(
            (i for i, t in enumerate(result) if isinstance(t, dict) and t.get(key) == item[key]),
            None,
        )
        if item.get("$patch") == "delete":
            if idx is not None:
                del result[idx]
            continue
        if idx is None:
            result.append(strategic_merge_patch(None, item))
        else:
            result[idx] = strategic_merge_patch(result[idx], item)
    return result


def strategic_merge_patch(target: Any, patch: Any, field: str = "") -> Any:
    if isinstance(patch, list):
        return _strategic_list(field, target, patch)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: strategic_merge_patch(None, v, k) for k, v in patch.items() if k != "$patch"}
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue  # $retainKeys, $setElementOrder/...: ordering hints we do not need
        if value is None:
            result.pop(key, None)
            continue
        merged = strategic_merge_patch(result.get(key), value, key)
        if merged is None and isinstance(value, dict) and value.get("$patch") == "delete":
            result.pop(key, None)
        else:
            result[key] = merged
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"JSON pointer must start with '/': {path!r}")
    return [_unescape(t) for t in path[1:].split("/")]


def _invalid_patch(message: str) -> ApiError:
    return ApiError(422, "Invalid", message)


def _walk(doc: Any, tokens: list[str]) -> Any:
    cur = doc
    for tok in tokens:
        if isinstance(cur, dict):
            if tok not in cur:
                raise _invalid_patch(f"jsonpatch: path not found: {tok!r}")
            cur = cur[tok]
        elif isinstance(cur, list):
            try:
                cur = cur[int(tok)]
            except (ValueError, IndexError):
                raise _invalid_patch(f"jsonpatch: invalid index {tok!r}") from None
        else:
            raise _invalid_patch(f"jsonpatch: cannot descend into {tok!r}")
    return cur


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _walk(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            try:
                idx = int(last)
            except ValueError:
                raise _invalid_patch(f"jsonpatch: invalid index {last!r}") from None
            if not 0 <= idx <= len(parent):
                raise _invalid_patch(f"jsonpatch: index out of range: {idx}")
            parent.insert(idx, value)
    else:
        raise _invalid_patch("jsonpatch: add into a scalar")
    return doc


def _remove(doc: Any, tokens: list[str]) -> tuple[Any, Any]:
    if not tokens:
        raise _invalid_patch("jsonpatch: cannot remove the whole document")
    parent = _walk(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _invalid_patch(f"jsonpatch: remove of missing key {last!r}")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        try:
            return doc, parent.pop(int(last))
        except (ValueError, IndexError):
            raise _invalid_patch(f"jsonpatch: invalid index {last!r}") from None
    raise _invalid_patch("jsonpatch: remove from a scalar")


def json_patch(target: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise bad_request("json patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"invalid json patch operation: {op!r}")
        kind = op["op"]
        tokens = _pointer(op["path"])
        if kind == "add":
            doc = _add(doc, tokens, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc, _ = _remove(doc, tokens)
        elif kind == "replace":
            _walk(doc, tokens)  # must exist
            if tokens:
                doc, _ = _remove(doc, tokens)
            doc = _add(doc, tokens, copy.deepcopy(op.get("value")))
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            if kind == "move":
                doc, value = _remove(doc, source)
            else:
                value = copy.deepcopy(_walk(doc, source))
            doc = _add(doc, tokens, value)
        elif kind == "test":
            if _walk(doc, tokens) != op.get("value"):
                raise _invalid_patch(
                    f"the server rejected our request due to an error in our request: testing value {op['path']} failed"
                )
        else:
            raise bad_request(f"unexpected json patch operation {kind!r}")
    return doc


def apply_patch(content_type: str, target: Any, patch: Any) -> Any:
    if content_type == MERGE:
        return merge_patch(target, patch)
    if content_type == STRATEGIC:
        return strategic_merge_patch(target, patch)
    if content_type == JSON_PATCH:
        return json_patch(target, patch)
    raise AssertionError(content_type)  # the HTTP layer answers 415 before we get here
