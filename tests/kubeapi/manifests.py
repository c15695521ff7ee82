"""The webterm Kubernetes objects as ARCHITECTURE.md describes them (namespace
``webterm``; StatefulSet ``terminal`` with label app.kubernetes.io/component=terminal
and container port 7681; headless Service ``terminal``; the manager's Role), built
as dicts for tests to create in the stand-in."""

from __future__ import annotations

from typing import Any, Final

TERMINAL_LABELS: Final = {
    "app.kubernetes.io/name": "webterm",
    "app.kubernetes.io/component": "terminal",
}
TERMINAL_PORT: Final = 7681

MANAGER_ROLE_RULES: Final[list[dict[str, list[str]]]] = [
    {
        "apiGroups": [""],
        "resources": ["pods"],
        "verbs": ["get", "list", "watch", "patch", "delete"],
    },
    {
        "apiGroups": ["apps"],
        "resources": ["statefulsets/scale"],
        "verbs": ["get", "patch", "update"],
    },
    {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "delete", "get", "list"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["get", "create", "update"],
    },
]
"""The manager's namespaced Role, as ARCHITECTURE.md lists it (pass as ``rbac=``)."""


def terminal_statefulset(
    *,
    name: str = "terminal",
    namespace: str = "webterm",
    replicas: int = 0,
    parallel: bool = True,
    grace_period: int = 2,
    env: dict[str, str] | None = None,
    readiness_probe: bool = True,
    image: str = "webterm:dev",
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "terminal",
        "image": image,
        "args": ["pty", "--port", str(TERMINAL_PORT)],
        "ports": [{"name": "terminal", "containerPort": TERMINAL_PORT}],
        "env": [
            {"name": "WEBTERM_INSTANCE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            *({"name": k, "value": v} for k, v in (env or {}).items()),
        ],
    }
    if readiness_probe:
        container["readinessProbe"] = {
            "httpGet": {"path": "/healthz", "port": TERMINAL_PORT},
            "periodSeconds": 1,
            "failureThreshold": 3,
        }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(TERMINAL_LABELS)},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "podManagementPolicy": "Parallel" if parallel else "OrderedReady",
            "selector": {"matchLabels": dict(TERMINAL_LABELS)},
            "template": {
                "metadata": {"labels": dict(TERMINAL_LABELS)},
                "spec": {
                    "terminationGracePeriodSeconds": grace_period,
                    "automountServiceAccountToken": False,
                    "containers": [container],
                },
            },
        },
    }


def terminal_service(*, name: str = "terminal", namespace: str = "webterm") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(TERMINAL_LABELS)},
        "spec": {
            "clusterIP": "None",
            "selector": dict(TERMINAL_LABELS),
            "ports": [{"name": "terminal", "port": TERMINAL_PORT, "targetPort": TERMINAL_PORT}],
        },
    }
