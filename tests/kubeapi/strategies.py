"""Per-resource behaviour on writes, after the apiserver's registry "strategies"
(pkg/registry/core/pod/strategy.go and friends): defaults on create, which fields an
update may touch, validation, allocation of Service IPs and NodePorts, and how long a
graceful delete lasts. Pure functions over JSON dicts plus one small allocator; the
store calls them and owns everything else (resource versions, events)."""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from . import resources as R
from .errors import ApiError, bad_request, invalid
from .resources import ResourceType
from .selection import (
    dns1035_label_errors,
    dns1123_label_errors,
    dns1123_subdomain_errors,
    from_label_selector_object,
    validate_annotations,
    validate_labels,
)

Obj = dict[str, Any]
Cause = tuple[str, str, str]

NODE_PORT_RANGE: Final = range(30000, 32768)  # --service-node-port-range default 30000-32767
SERVICE_CIDR: Final = ipaddress.ip_network(
    "10.96.0.0/16"
)  # kubeadm's default --service-cluster-ip-range
FIRST_SERVICE_IP: Final = (
    10  # .1 is the `kubernetes` Service, a few more are customary (DNS .10 is taken next)
)
DEFAULT_TERMINATION_GRACE: Final = 30  # seconds, corev1 default terminationGracePeriodSeconds
POD_UPDATE_FORBIDDEN: Final = (
    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
    "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be "
    "set to 1 if it was previously negative)"
)
STS_UPDATE_FORBIDDEN: Final = (
    "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', "
    "'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
    "'minReadySeconds' are forbidden"
)


@dataclass
class Allocator:
    """Service cluster IPs and NodePorts in use (the apiserver's bitmap allocators)."""

    cluster_ips: set[str] = field(default_factory=set)
    node_ports: set[int] = field(default_factory=set)
    _next_ip: int = FIRST_SERVICE_IP
    _next_port: int = NODE_PORT_RANGE.start

    def allocate_ip(self) -> str:
        size = SERVICE_CIDR.num_addresses
        for _ in range(size):
            candidate = str(SERVICE_CIDR.network_address + self._next_ip)
            self._next_ip = self._next_ip + 1 if self._next_ip + 1 < size - 1 else 1
            if candidate not in self.cluster_ips:
                self.cluster_ips.add(candidate)
                return candidate
        raise ApiError(500, "InternalError", "Internal error occurred: range is full")

    def allocate_port(self) -> int:
        for _ in NODE_PORT_RANGE:
            candidate = self._next_port
            self._next_port += 1
            if self._next_port >= NODE_PORT_RANGE.stop:
                self._next_port = NODE_PORT_RANGE.start
            if candidate not in self.node_ports:
                self.node_ports.add(candidate)
                return candidate
        raise ApiError(500, "InternalError", "Internal error occurred: range is full")


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def name_of(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("name") or "")


# ---------------------------------------------------------------- validation helpers


def _validate_meta(rt: ResourceType, obj: Obj) -> list[Cause]:
    meta = obj["metadata"]
    causes: list[Cause] = []
    name = meta.get("name", "")
    if rt in (R.SERVICES,):
        errs = dns1035_label_errors(name)
    elif rt in (R.NAMESPACES,):
        errs = dns1123_label_errors(name)
    else:
        errs = dns1123_subdomain_errors(name)
    causes += [
        ("metadata.name", "FieldValueInvalid", f"Invalid value: {name!r}: {e}") for e in errs
    ]
    causes += validate_labels(meta.get("labels"))
    causes += validate_annotations(meta.get("annotations"))
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        for key in ("apiVersion", "kind", "name", "uid"):
            if not (isinstance(ref, Mapping) and ref.get(key)):
                causes.append(
                    (f"metadata.ownerReferences[{i}].{key}", "FieldValueRequired", "Required value")
                )
    finalizers = meta.get("finalizers") or []
    if not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers):
        causes.append(
            ("metadata.finalizers", "FieldValueInvalid", "Invalid value: must be a list of strings")
        )
    return causes


def _validate_containers(spec: Mapping[str, Any], path: str) -> list[Cause]:
    causes: list[Cause] = []
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return [(f"{path}.containers", "FieldValueRequired", "Required value")]
    seen: set[str] = set()
    for i, c in enumerate(containers):
        if not isinstance(c, Mapping):
            causes.append(
                (f"{path}.containers[{i}]", "FieldValueInvalid", "Invalid value: must be an object")
            )
            continue
        cname = c.get("name")
        if not cname:
            causes.append((f"{path}.containers[{i}].name", "FieldValueRequired", "Required value"))
        elif cname in seen:
            causes.append(
                (
                    f"{path}.containers[{i}].name",
                    "FieldValueDuplicate",
                    f"Duplicate value: {cname!r}",
                )
            )
        else:
            seen.add(cname)
        if not c.get("image"):
            causes.append((f"{path}.containers[{i}].image", "FieldValueRequired", "Required value"))
        for j, port in enumerate(c.get("ports") or []):
            number = port.get("containerPort") if isinstance(port, Mapping) else None
            if not isinstance(number, int) or not 0 < number < 65536:
                causes.append(
                    (
                        f"{path}.containers[{i}].ports[{j}].containerPort",
                        "FieldValueInvalid",
                        f"Invalid value: {number!r}: must be between 1 and 65535, inclusive",
                    )
                )
    return causes


def _pod_spec_defaults(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", DEFAULT_TERMINATION_GRACE)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    for c in spec.get("containers") or []:
        if not isinstance(c, dict):
            continue
        image = str(c.get("image", ""))
        tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else "latest"
        c.setdefault("imagePullPolicy", "Always" if tag == "latest" else "IfNotPresent")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("resources", {})
        for port in c.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")


# ---------------------------------------------------------------- create


def prepare_create(rt: ResourceType, obj: Obj) -> None:
    """Defaults and server-owned fields, before validation (mutates ``obj``)."""
    meta = obj["metadata"]
    for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"):
        meta.pop(key, None)
    if rt is R.PODS:
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            _pod_spec_defaults(spec)
            spec.setdefault("serviceAccountName", "default")
            spec.setdefault("serviceAccount", spec["serviceAccountName"])
            spec.setdefault("priority", 0)
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    elif rt is R.SERVICES:
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
            if spec["type"] in ("NodePort", "LoadBalancer"):
                spec.setdefault("externalTrafficPolicy", "Cluster")
            for port in spec.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")
                    if "port" in port:
                        port.setdefault("targetPort", port["port"])
        obj["status"] = {"loadBalancer": {}}
    elif rt is R.STATEFULSETS:
        meta["generation"] = 1
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            spec.setdefault("replicas", 1)
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault(
                "updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
            )
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault(
                "persistentVolumeClaimRetentionPolicy",
                {"whenDeleted": "Retain", "whenScaled": "Retain"},
            )
            template = spec.get("template")
            if isinstance(template, dict) and isinstance(template.get("spec"), dict):
                _pod_spec_defaults(template["spec"])
                template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        obj["status"] = {"replicas": 0, "availableReplicas": 0}
    elif rt is R.NAMESPACES:
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta.get("name", "")
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}


def validate(rt: ResourceType, obj: Obj, old: Obj | None) -> None:
    causes = _validate_meta(rt, obj)
    spec = obj.get("spec")
    if rt is R.PODS:
        if not isinstance(spec, Mapping):
            causes.append(("spec", "FieldValueRequired", "Required value"))
        else:
            causes += _validate_containers(spec, "spec")
            if spec.get("restartPolicy") not in ("Always", "OnFailure", "Never"):
                causes.append(
                    (
                        "spec.restartPolicy",
                        "FieldValueNotSupported",
                        f"Unsupported value: {spec.get('restartPolicy')!r}",
                    )
                )
        if old is not None and isinstance(spec, Mapping):
            causes += _pod_update_causes(spec, old["spec"])
    elif rt is R.SERVICES:
        causes += _validate_service(obj, old)
    elif rt is R.STATEFULSETS:
        causes += _validate_statefulset(obj, old)
    elif rt is R.LEASES:
        causes += _validate_lease(obj)
    if causes:
        raise invalid(rt, name_of(obj), causes)


def _validate_lease(obj: Obj) -> list[Cause]:
    """pkg/apis/coordination/validation: durations positive, transitions not negative."""
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    if not isinstance(spec, Mapping):
        return [("spec", "FieldValueInvalid", "Invalid value: must be an object")]
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and (not isinstance(duration, int) or duration <= 0):
        causes.append(
            (
                "spec.leaseDurationSeconds",
                "FieldValueInvalid",
                f"Invalid value: {duration!r}: must be greater than 0",
            )
        )
    transitions = spec.get("leaseTransitions")
    if transitions is not None and (not isinstance(transitions, int) or transitions < 0):
        causes.append(
            (
                "spec.leaseTransitions",
                "FieldValueInvalid",
                f"Invalid value: {transitions!r}: must be greater than or equal to 0",
            )
        )
    return causes


def allows_unconditional_update(rt: ResourceType) -> bool:
    """Whether a PUT without metadata.resourceVersion is accepted (the registry
    strategy's AllowUnconditionalUpdate): not for Leases, whose every update must
    name the version it read, so that two candidates can never both win."""
    return rt is not R.LEASES


def _pod_update_causes(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[Cause]:
    def mutable_stripped(spec: Mapping[str, Any]) -> Obj:
        s = copy.deepcopy(dict(spec))
        for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
            s.pop(key, None)
        for key in ("containers", "initContainers"):
            for c in s.get(key) or []:
                if isinstance(c, dict):
                    c.pop("image", None)
        return s

    if mutable_stripped(new) != mutable_stripped(old):
        return [("spec", "FieldValueForbidden", POD_UPDATE_FORBIDDEN)]
    return []


def _validate_service(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return [("spec", "FieldValueRequired", "Required value")]
    causes: list[Cause] = []
    stype = spec.get("type")
    if stype not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        causes.append(("spec.type", "FieldValueNotSupported", f"Unsupported value: {stype!r}"))
    headless = spec.get("clusterIP") == "None"
    if headless and stype in ("NodePort", "LoadBalancer"):
        causes.append(
            (
                "spec.clusterIPs[0]",
                "FieldValueInvalid",
                "Invalid value: \"None\": may not be set to 'None' for NodePort services",
            )
        )
    ports = spec.get("ports") or []
    if not ports and not headless and stype != "ExternalName":
        causes.append(("spec.ports", "FieldValueRequired", "Required value"))
    names = set()
    for i, port in enumerate(ports):
        if not isinstance(port, Mapping):
            causes.append(
                (f"spec.ports[{i}]", "FieldValueInvalid", "Invalid value: must be an object")
            )
            continue
        number = port.get("port")
        if not isinstance(number, int) or not 0 < number < 65536:
            causes.append(
                (
                    f"spec.ports[{i}].port",
                    "FieldValueInvalid",
                    f"Invalid value: {number!r}: must be between 1 and 65535, inclusive",
                )
            )
        if len(ports) > 1 and not port.get("name"):
            causes.append((f"spec.ports[{i}].name", "FieldValueRequired", "Required value"))
        if port.get("name") in names:
            causes.append(
                (
                    f"spec.ports[{i}].name",
                    "FieldValueDuplicate",
                    f"Duplicate value: {port.get('name')!r}",
                )
            )
        names.add(port.get("name"))
        node_port = port.get("nodePort")
        if node_port not in (None, 0):
            if stype not in ("NodePort", "LoadBalancer"):
                causes.append(
                    (
                        f"spec.ports[{i}].nodePort",
                        "FieldValueForbidden",
                        "Forbidden: may not be used when `type` is 'ClusterIP'",
                    )
                )
            elif not isinstance(node_port, int) or node_port not in NODE_PORT_RANGE:
                causes.append(
                    (
                        f"spec.ports[{i}].nodePort",
                        "FieldValueInvalid",
                        f"Invalid value: {node_port!r}: provided port is not in the valid range. The range of valid ports is 30000-32767",
                    )
                )
    if old is not None:
        old_ip = old["spec"].get("clusterIP")
        new_ip = spec.get("clusterIP")
        if new_ip not in (None, "", old_ip):
            causes.append(
                (
                    "spec.clusterIPs[0]",
                    "FieldValueInvalid",
                    f"Invalid value: {new_ip!r}: may not change once set",
                )
            )
    selector = spec.get("selector")
    if selector is not None:
        causes += validate_labels(selector, "spec.selector")
    return causes


def _validate_statefulset(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return [("spec", "FieldValueRequired", "Required value")]
    causes: list[Cause] = []
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        causes.append(
            (
                "spec.replicas",
                "FieldValueInvalid",
                f"Invalid value: {replicas!r}: must be greater than or equal to 0",
            )
        )
    if spec.get("podManagementPolicy") not in ("OrderedReady", "Parallel"):
        causes.append(
            (
                "spec.podManagementPolicy",
                "FieldValueNotSupported",
                f"Unsupported value: {spec.get('podManagementPolicy')!r}",
            )
        )
    selector = spec.get("selector")
    template = spec.get("template")
    if not isinstance(selector, Mapping) or not (
        selector.get("matchLabels") or selector.get("matchExpressions")
    ):
        causes.append(
            (
                "spec.selector",
                "FieldValueInvalid",
                "Invalid value: empty selector is invalid for statefulset",
            )
        )
    if not isinstance(template, Mapping) or not isinstance(template.get("spec"), Mapping):
        causes.append(("spec.template", "FieldValueRequired", "Required value"))
    else:
        tmeta = template.get("metadata") or {}
        labels = tmeta.get("labels") or {}
        causes += validate_labels(labels, "spec.template.metadata.labels")
        if isinstance(selector, Mapping):
            try:
                matches = from_label_selector_object(selector).matches(labels)
            except ApiError:
                matches = False
            if not matches:
                causes.append(
                    (
                        "spec.template.metadata.labels",
                        "FieldValueInvalid",
                        f"Invalid value: {json.dumps(labels)}: `selector` does not match template `labels`",
                    )
                )
        tspec = template["spec"]
        causes += _validate_containers(tspec, "spec.template.spec")
        if tspec.get("restartPolicy", "Always") != "Always":
            causes.append(
                (
                    "spec.template.spec.restartPolicy",
                    "FieldValueNotSupported",
                    f'Unsupported value: {tspec.get("restartPolicy")!r}: supported values: "Always"',
                )
            )
    if old is not None:
        frozen = (
            "replicas",
            "ordinals",
            "template",
            "updateStrategy",
            "persistentVolumeClaimRetentionPolicy",
            "minReadySeconds",
        )

        def strip(s: Mapping[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in s.items() if k not in frozen}

        if strip(spec) != strip(old["spec"]):
            causes.append(("spec", "FieldValueForbidden", STS_UPDATE_FORBIDDEN))
    return causes


# ---------------------------------------------------------------- allocation


def _wants_node_ports(spec: Mapping[str, Any]) -> bool:
    return spec.get("type") in ("NodePort", "LoadBalancer")


def allocate(rt: ResourceType, obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    """Assign cluster IP and NodePorts (mutates ``obj``); all-or-nothing on failure."""
    if rt is not R.SERVICES:
        return
    spec = obj["spec"]
    name = name_of(obj)
    old_spec = old["spec"] if old else {}
    old_ports = {p.get("nodePort") for p in old_spec.get("ports") or [] if p.get("nodePort")}
    requested = [p.get("nodePort") for p in spec.get("ports") or [] if p.get("nodePort")]
    if _wants_node_ports(spec):
        causes: list[Cause] = []
        seen: set[int] = set()
        for i, port in enumerate(spec.get("ports") or []):
            n = port.get("nodePort")
            if n and ((n in alloc.node_ports and n not in old_ports) or n in seen):
                causes.append(
                    (
                        f"spec.ports[{i}].nodePort",
                        "FieldValueInvalid",
                        f"Invalid value: {n}: provided port is already allocated",
                    )
                )
            if n:
                seen.add(n)
        if causes:
            raise invalid(rt, name, causes)
    ip = spec.get("clusterIP")
    if old is None and spec.get("type") != "ExternalName":
        if ip and ip != "None":
            try:
                in_range = ipaddress.ip_address(ip) in SERVICE_CIDR
            except ValueError:
                in_range = False
            if not in_range:
                raise invalid(
                    rt,
                    name,
                    [
                        (
                            "spec.clusterIPs[0]",
                            "FieldValueInvalid",
                            f"Invalid value: {ip!r}: provided IP is not in the valid range. The range of valid IPs is {SERVICE_CIDR}",
                        )
                    ],
                )
            if ip in alloc.cluster_ips:
                raise invalid(
                    rt,
                    name,
                    [
                        (
                            "spec.clusterIPs[0]",
                            "FieldValueInvalid",
                            f"Invalid value: {ip!r}: provided IP is already allocated",
                        )
                    ],
                )
            alloc.cluster_ips.add(ip)
        elif not ip:
            ip = alloc.allocate_ip()
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]
    elif old is not None:
        spec["clusterIP"] = old_spec.get("clusterIP")
        if "clusterIPs" in old_spec:
            spec["clusterIPs"] = old_spec["clusterIPs"]
    keep: set[int] = set()
    if _wants_node_ports(spec):
        for port in spec.get("ports") or []:
            n = port.get("nodePort")
            if n:
                alloc.node_ports.add(n)
            else:
                n = port["nodePort"] = alloc.allocate_port()
            keep.add(n)
    else:
        for port in spec.get("ports") or []:
            port.pop("nodePort", None)
    for n in old_ports - keep:
        alloc.node_ports.discard(n)
    del requested


def release(rt: ResourceType, obj: Obj, alloc: Allocator) -> None:
    if rt is not R.SERVICES:
        return
    spec = obj.get("spec") or {}
    alloc.cluster_ips.discard(spec.get("clusterIP", ""))
    for port in spec.get("ports") or []:
        alloc.node_ports.discard(port.get("nodePort"))


# ---------------------------------------------------------------- update


IMMUTABLE_META: Final = (
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generateName",
)


def prepare_update(rt: ResourceType, new: Obj, old: Obj, subresource: str | None) -> Obj:
    """The object to store for an update of ``old`` with client body ``new``."""
    if subresource == "status":
        result = copy.deepcopy(old)
        if "status" in new:
            result["status"] = copy.deepcopy(new["status"])
        else:
            result.pop("status", None)
        return result
    result = copy.deepcopy(new)
    result["kind"] = rt.kind
    result["apiVersion"] = rt.api_version
    meta = result.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    for key in IMMUTABLE_META:
        if key in old["metadata"]:
            meta[key] = old["metadata"][key]
        else:
            meta.pop(key, None)
    meta.pop("managedFields", None)
    if "status" in old or "status" in result:
        if "status" in old:
            result["status"] = copy.deepcopy(old["status"])
        else:
            result.pop("status", None)
    if rt is R.NAMESPACES:
        result["spec"] = copy.deepcopy(old.get("spec", {}))
    if rt is R.STATEFULSETS and result.get("spec") != old.get("spec"):
        meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
    if old["metadata"].get("deletionTimestamp"):
        new_finalizers = set(meta.get("finalizers") or [])
        if new_finalizers - set(old["metadata"].get("finalizers") or []):
            raise invalid(
                rt,
                name_of(old),
                [
                    (
                        "metadata.finalizers",
                        "FieldValueForbidden",
                        "Forbidden: no new finalizers can be added if the object is being deleted",
                    )
                ],
            )
    return result


# ---------------------------------------------------------------- delete


def graceful_period(rt: ResourceType, obj: Obj, requested: int | None) -> int:
    """Seconds a delete of ``obj`` lingers (0: at once), as CheckGracefulDelete."""
    if rt is not R.PODS:
        return 0
    spec = obj.get("spec") or {}
    period = (
        requested
        if requested is not None
        else int(spec.get("terminationGracePeriodSeconds", 0) or 0)
    )
    if not spec.get("nodeName"):
        period = 0  # never scheduled: nobody to stop
    if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        period = 0
    return max(period, 0) if period >= 0 else 1


# ---------------------------------------------------------------- scale


def to_scale(sts: Obj) -> Obj:
    meta = sts["metadata"]
    selector = (sts.get("spec") or {}).get("selector")
    try:
        selector_text = str(from_label_selector_object(selector)) if selector else ""
    except ApiError:
        selector_text = ""
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": (sts.get("spec") or {}).get("replicas", 0)},
        "status": {
            "replicas": (sts.get("status") or {}).get("replicas", 0),
            "selector": selector_text,
        },
    }


def revision_hash(sts: Obj) -> str:
    """``controller-revision-hash`` label value: stable for one pod template."""
    template = json.dumps((sts.get("spec") or {}).get("template"), sort_keys=True)
    return f"{name_of(sts)}-{hashlib.sha256(template.encode()).hexdigest()[:10]}"
