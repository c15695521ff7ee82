"""Label and field selectors, parsed and matched like k8s.io/apimachinery/pkg/labels
and pkg/fields, plus the label/annotation validation the apiserver applies on writes.

Grammar (labels.Parse):  ``req (',' req)*`` where ``req`` is ``key``, ``!key``,
``key=v``, ``key==v``, ``key!=v``, ``key in (a,b)``, ``key notin (a,b)``,
``key>n``, ``key<n``.  Everything is pure: no I/O, no clock."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from .errors import ApiError, bad_request

_NAME_RE: Final = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_VALUE_RE: Final = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS1123_SUBDOMAIN_RE: Final = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DNS1123_LABEL_RE: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL_RE: Final = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_LABEL_VALUE: Final = 63  # validation.LabelValueMaxLength
MAX_NAME_PART: Final = 63  # qualified name part, like a DNS label
MAX_PREFIX: Final = 253  # DNS-1123 subdomain
MAX_ANNOTATIONS_BYTES: Final = 256 * 1024  # apimachinery TotalAnnotationSizeLimitB


def dns1123_subdomain_errors(value: str) -> list[str]:
    errs = []
    if len(value) > MAX_PREFIX:
        errs.append(f"must be no more than {MAX_PREFIX} characters")
    if not _DNS1123_SUBDOMAIN_RE.match(value):
        errs.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character"
        )
    return errs


def dns1123_label_errors(value: str) -> list[str]:
    errs = []
    if len(value) > MAX_NAME_PART:
        errs.append(f"must be no more than {MAX_NAME_PART} characters")
    if not _DNS1123_LABEL_RE.match(value):
        errs.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
            "'-', and must start and end with an alphanumeric character"
        )
    return errs


def dns1035_label_errors(value: str) -> list[str]:
    errs = []
    if len(value) > MAX_NAME_PART:
        errs.append(f"must be no more than {MAX_NAME_PART} characters")
    if not _DNS1035_LABEL_RE.match(value):
        errs.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
            "start with an alphabetic character, and end with an alphanumeric character"
        )
    return errs


def qualified_name_errors(key: str) -> list[str]:
    """A label or annotation key: ``[prefix/]name``."""
    prefix, sep, name = key.rpartition("/")
    errs = []
    if sep and not prefix:
        errs.append("prefix part must be non-empty")
    elif sep:
        errs.extend(f"prefix part {e}" for e in dns1123_subdomain_errors(prefix))
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > MAX_NAME_PART:
        errs.append(f"name part must be no more than {MAX_NAME_PART} characters")
    elif not _NAME_RE.match(name):
        errs.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character"
        )
    return errs


def label_value_errors(value: str) -> list[str]:
    errs = []
    if len(value) > MAX_LABEL_VALUE:
        errs.append(f"must be no more than {MAX_LABEL_VALUE} characters")
    if not _VALUE_RE.match(value):
        errs.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', "
            "'_' or '.', and must start and end with an alphanumeric character"
        )
    return errs


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case "!":
                return not present
            case "gt" | "lt":
                if not present:
                    return False
                try:
                    have = int(value or "")
                except ValueError:
                    return False
                want = int(self.values[0])
                return have > want if self.op == "gt" else have < want
        raise AssertionError(self.op)  # pragma: no cover - ops are closed at parse time


@dataclass(frozen=True, slots=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False  # a nil selector in a LabelSelector object: matches nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements and not self.nothing

    def __str__(self) -> str:
        parts = []
        for r in self.requirements:
            if r.op == "=":
                parts.append(f"{r.key}={r.values[0]}")
            elif r.op == "!=":
                parts.append(f"{r.key}!={r.values[0]}")
            elif r.op in ("in", "notin"):
                parts.append(f"{r.key} {r.op} ({','.join(sorted(r.values))})")
            elif r.op == "exists":
                parts.append(r.key)
            elif r.op == "!":
                parts.append(f"!{r.key}")
            else:
                parts.append(f"{r.key}{'>' if r.op == 'gt' else '<'}{r.values[0]}")
        return ",".join(parts)


_TOKEN_RE: Final = re.compile(r"\s*(!=|==|=|!|\(|\)|,|>|<|[^\s!=(),<>]+)")


def _tokens(text: str) -> list[str]:
    out = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN_RE.match(text, pos)
        if not m:  # pragma: no cover - the pattern accepts any non-space character
            raise bad_request(f"unable to parse requirement: {text!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def _check_key(key: str) -> None:
    errs = qualified_name_errors(key)
    if errs:
        raise bad_request(
            f"unable to parse requirement: key: Invalid value: {key!r}: {'; '.join(errs)}"
        )


def _check_value(value: str) -> None:
    errs = label_value_errors(value)
    if errs:
        raise bad_request(
            f"unable to parse requirement: values[0]: Invalid value: {value!r}: {'; '.join(errs)}"
        )


def parse_label_selector(text: str | None) -> LabelSelector:
    """The ``labelSelector`` query parameter; raises 400 BadRequest like the apiserver."""
    if not text or not text.strip():
        return LabelSelector()
    toks = _tokens(text)
    reqs: list[Requirement] = []
    i = 0

    def need(pos: int) -> str:
        if pos >= len(toks):
            raise bad_request(f"unable to parse requirement: found '', expected more in {text!r}")
        return toks[pos]

    while i < len(toks):
        tok = need(i)
        if tok == "!":
            key = need(i + 1)
            _check_key(key)
            reqs.append(Requirement(key, "!"))
            i += 2
        else:
            key = tok
            _check_key(key)
            nxt = toks[i + 1] if i + 1 < len(toks) else ","
            if nxt == ",":
                reqs.append(Requirement(key, "exists"))
                i += 1
            elif nxt in ("=", "==", "!="):
                value = toks[i + 2] if i + 2 < len(toks) and toks[i + 2] != "," else ""
                _check_value(value)
                reqs.append(Requirement(key, "!=" if nxt == "!=" else "=", (value,)))
                i += 3 if value else 2
            elif nxt in ("in", "notin"):
                if need(i + 2) != "(":
                    raise bad_request(
                        f"unable to parse requirement: found {toks[i + 2]!r}, expected: '('"
                    )
                values = []
                j = i + 3
                while need(j) != ")":
                    if toks[j] != ",":
                        _check_value(toks[j])
                        values.append(toks[j])
                    j += 1
                reqs.append(Requirement(key, nxt, tuple(values)))
                i = j + 1
            elif nxt in (">", "<"):
                value = need(i + 2)
                try:
                    int(value)
                except ValueError:
                    raise bad_request(
                        f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer: {value!r}"
                    ) from None
                reqs.append(Requirement(key, "gt" if nxt == ">" else "lt", (value,)))
                i += 3
            else:
                raise bad_request(
                    f"unable to parse requirement: found {nxt!r}, expected: ',', '=', '!=', 'in', 'notin'"
                )
        if i < len(toks):
            if toks[i] != ",":
                raise bad_request(f"unable to parse requirement: found {toks[i]!r}, expected: ','")
            i += 1
            if i >= len(toks):
                raise bad_request(
                    f"unable to parse requirement: found '', expected: identifier in {text!r}"
                )
    return LabelSelector(tuple(reqs))


def from_label_selector_object(sel: Mapping[str, Any] | None) -> LabelSelector:
    """A ``metav1.LabelSelector`` (matchLabels + matchExpressions). ``None`` matches
    nothing and ``{}`` matches everything, as in metav1.LabelSelectorAsSelector."""
    if sel is None:
        return LabelSelector(nothing=True)
    reqs = [Requirement(k, "=", (v,)) for k, v in sorted((sel.get("matchLabels") or {}).items())]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in sel.get("matchExpressions") or []:
        op = ops.get(expr.get("operator", ""))
        if op is None:
            raise bad_request(f"{expr.get('operator')!r} is not a valid label selector operator")
        reqs.append(Requirement(expr["key"], op, tuple(expr.get("values") or ())))
    return LabelSelector(tuple(reqs))


def _get_path(obj: Mapping[str, Any], path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


# fields.Selector support per resource, like each registry's GetAttrs/field label conversion.
COMMON_FIELDS: Final = ("metadata.name", "metadata.namespace")
FIELDS_BY_KIND: Final[dict[str, tuple[str, ...]]] = {
    "Pod": (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "Service": ("spec.clusterIP", "spec.type"),
    "Namespace": ("status.phase",),
    "StatefulSet": ("status.successful",),
    "Node": ("spec.unschedulable",),
}


@dataclass(frozen=True, slots=True)
class FieldSelector:
    requirements: tuple[tuple[str, bool, str], ...] = ()  # (field, equal?, value)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for field, equal, value in self.requirements:
            have = _get_path(obj, field)
            if isinstance(have, bool):
                have = "true" if have else "false"
            have = "" if have is None else str(have)
            if (have == value) != equal:
                return False
        return True

    @property
    def empty(self) -> bool:
        return not self.requirements

    def exact_name(self) -> str | None:
        for field, equal, value in self.requirements:
            if field == "metadata.name" and equal:
                return value
        return None


def parse_field_selector(text: str | None, kind: str) -> FieldSelector:
    if not text or not text.strip():
        return FieldSelector()
    allowed = COMMON_FIELDS + FIELDS_BY_KIND.get(kind, ())
    reqs = []
    for part in text.split(","):
        part = part.strip()
        op = next((o for o in ("!=", "==", "=") if o in part), None)
        if op is None:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field, _, value = part.partition(op)
        equal = op != "!="
        field = field.strip()
        if field not in allowed:
            raise bad_request(f"field label not supported: {field}")
        reqs.append((field, equal, value.strip()))
    return FieldSelector(tuple(reqs))


def validate_labels(labels: Any, field: str = "metadata.labels") -> list[tuple[str, str, str]]:
    """Causes (field, reason, message) for invalid label keys/values."""
    causes: list[tuple[str, str, str]] = []
    if labels is None:
        return causes
    if not isinstance(labels, Mapping):
        return [(field, "FieldValueTypeInvalid", "Invalid value: must be a map of strings")]
    for key, value in labels.items():
        for err in qualified_name_errors(key):
            causes.append((field, "FieldValueInvalid", f"Invalid value: {key!r}: {err}"))
        if not isinstance(value, str):
            causes.append(
                (f"{field}[{key}]", "FieldValueTypeInvalid", "Invalid value: must be a string")
            )
            continue
        for err in label_value_errors(value):
            causes.append((field, "FieldValueInvalid", f"Invalid value: {value!r}: {err}"))
    return causes


def validate_annotations(annotations: Any) -> list[tuple[str, str, str]]:
    field = "metadata.annotations"
    causes: list[tuple[str, str, str]] = []
    if annotations is None:
        return causes
    if not isinstance(annotations, Mapping):
        return [(field, "FieldValueTypeInvalid", "Invalid value: must be a map of strings")]
    total = 0
    for key, value in annotations.items():
        for err in qualified_name_errors(key):
            causes.append((field, "FieldValueInvalid", f"Invalid value: {key!r}: {err}"))
        if not isinstance(value, str):
            causes.append(
                (f"{field}[{key}]", "FieldValueTypeInvalid", "Invalid value: must be a string")
            )
            continue
        total += len(key) + len(value)
    if total > MAX_ANNOTATIONS_BYTES:
        causes.append(
            (
                field,
                "FieldValueTooLong",
                f"Too long: must have at most {MAX_ANNOTATIONS_BYTES} bytes",
            )
        )
    return causes


__all__ = [
    "ApiError",
    "FieldSelector",
    "LabelSelector",
    "Requirement",
    "from_label_selector_object",
    "parse_field_selector",
    "parse_label_selector",
]
