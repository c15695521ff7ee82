"""Render the kustomize overlays the way an operator does (`kubectl kustomize`), from a
copy of k8s/ with a throwaway generated secret, and small helpers to read the objects."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ("kind", "production")

Obj = dict[str, Any]


def kubectl_kustomize(path: Path) -> list[Obj]:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is needed to render the manifests: put it on PATH")
    out = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return [obj for obj in yaml.safe_load_all(out.stdout) if obj]


GENERATED = ("secret.txt", "credential.txt", "manager-secret.txt", "signing-key.pem")
"""The generated-secret component's inputs (git-ignored)."""


def write_generated(directory: Path) -> None:
    """Fresh inputs for the generated-secret component (what ``nox -s kind`` writes)."""
    from webterm.protocol import SigningKey

    for name in ("secret.txt", "credential.txt", "manager-secret.txt"):
        (directory / name).write_text(secrets.token_hex(32) + "\n")
    (directory / "signing-key.pem").write_bytes(SigningKey.generate().to_pem())


def render(overlay: str, tmp: Path) -> list[Obj]:
    tree = tmp / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns(*GENERATED))
    write_generated(tree / "components" / "generated-secret")
    return kubectl_kustomize(tree / "overlays" / overlay)


def render_custom(
    tmp: Path,
    *,
    components: list[str],
    patches: list[Obj] | None = None,
    resources: tuple[str, ...] = ("../../base",),
) -> list[Obj]:
    """An overlay of our own over a copy of k8s/ (as an operator composes one): base plus
    the named components (k8s/components/<name>) and kustomize ``patches``."""
    tree = tmp / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns(*GENERATED))
    write_generated(tree / "components" / "generated-secret")
    overlay = tree / "overlays" / "custom"
    overlay.mkdir()
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": "webterm",
        "resources": list(resources),
        "components": [f"../../components/{name}" for name in components],
        "patches": patches or [],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return kubectl_kustomize(overlay)


def find(objects: list[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def workloads(objects: list[Obj]) -> Iterator[Obj]:
    yield from (o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet"))


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Obj) -> list[Obj]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: Obj) -> dict[str, Obj]:
    return {item["name"]: item for item in container.get("env", [])}
