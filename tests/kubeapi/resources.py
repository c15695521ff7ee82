"""The resource types the stand-in serves, and their discovery documents.

Data, not code: each :class:`ResourceType` says where it lives in the URL space and
what it is called; behaviour per type lives in ``strategies.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final


@dataclass(frozen=True, slots=True)
class ResourceType:
    group: str  # "" is the core ("legacy") group served under /api
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = (
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def qualified(self) -> str:
        """How apiserver messages name the resource: ``pods``, ``statefulsets.apps``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def singular(self) -> str:
        return self.kind.lower()

    def __repr__(self) -> str:
        return f"<{self.qualified}>"


PODS: Final = ResourceType("", "v1", "pods", "Pod", True, ("status", "log"), short_names=("po",))
SERVICES: Final = ResourceType(
    "", "v1", "services", "Service", True, ("status",), short_names=("svc",)
)
NAMESPACES: Final = ResourceType(
    "",
    "v1",
    "namespaces",
    "Namespace",
    False,
    ("status",),
    verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    short_names=("ns",),
)
NODES: Final = ResourceType("", "v1", "nodes", "Node", False, ("status",), short_names=("no",))
STATEFULSETS: Final = ResourceType(
    "apps", "v1", "statefulsets", "StatefulSet", True, ("status", "scale"), short_names=("sts",)
)

LEASES: Final = ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True)

ALL: Final[tuple[ResourceType, ...]] = (PODS, SERVICES, NAMESPACES, NODES, STATEFULSETS, LEASES)
BY_PATH: Final[dict[tuple[str, str, str], ResourceType]] = {
    (rt.group, rt.version, rt.plural): rt for rt in ALL
}
BY_KIND: Final[dict[str, ResourceType]] = {rt.kind: rt for rt in ALL}

SERVER_VERSION: Final = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-standin",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def _resource_entries(rt: ResourceType) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = [
        {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs),
            **({"shortNames": list(rt.short_names)} if rt.short_names else {}),
        }
    ]
    for sub in rt.subresources:
        if sub == "scale":
            entries.append(
                {
                    "name": f"{rt.plural}/scale",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "group": "autoscaling",
                    "version": "v1",
                    "kind": "Scale",
                    "verbs": ["get", "patch", "update"],
                }
            )
        elif sub == "log":
            entries.append(
                {
                    "name": f"{rt.plural}/log",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": ["get"],
                }
            )
        else:
            entries.append(
                {
                    "name": f"{rt.plural}/{sub}",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    return entries


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    types = [rt for rt in ALL if rt.group == group and rt.version == version]
    if not types:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": [entry for rt in types for entry in _resource_entries(rt)],
    }


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group(name: str) -> dict[str, Any]:
    versions = sorted({rt.version for rt in ALL if rt.group == name})
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def api_group(name: str) -> dict[str, Any] | None:
    if not any(rt.group == name for rt in ALL) or not name:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name)}


def api_group_list() -> dict[str, Any]:
    names = sorted({rt.group for rt in ALL if rt.group})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(n) for n in names]}
