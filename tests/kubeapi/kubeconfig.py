"""kubeconfig files for the stand-in, the shape ``kubectl config view`` prints and
``kubernetes.config.load_kube_config`` reads."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Final

import yaml

CONTEXT: Final = "standin"
CLUSTER: Final = "standin"
USER: Final = "standin-manager"


def kubeconfig_document(
    server: str, token: str, *, namespace: str = "webterm", ca_pem: bytes | None = None
) -> dict[str, Any]:
    cluster: dict[str, Any] = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": CLUSTER, "cluster": cluster}],
        "users": [{"name": USER, "user": {"token": token}}],
        "contexts": [
            {"name": CONTEXT, "context": {"cluster": CLUSTER, "user": USER, "namespace": namespace}}
        ],
        "current-context": CONTEXT,
    }


def write_kubeconfig(
    path: Path, server: str, token: str, *, namespace: str = "webterm", ca_pem: bytes | None = None
) -> Path:
    doc = kubeconfig_document(server, token, namespace=namespace, ca_pem=ca_pem)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)
    return path


def write_incluster_files(
    directory: Path, host: str, port: int, token: str, ca_pem: bytes
) -> dict[str, Any]:
    """Files and environment for ``kubernetes.config.incluster_config.InClusterConfigLoader``
    (``token_filename``, ``cert_filename``, ``environ``): the in-cluster code path,
    which always speaks HTTPS, so only with ``tls=True``."""
    token_file = directory / "serviceaccount-token"
    ca_file = directory / "serviceaccount-ca.crt"
    token_file.write_text(token)
    ca_file.write_bytes(ca_pem)
    return {
        "token_filename": str(token_file),
        "cert_filename": str(ca_file),
        "environ": {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": str(port)},
    }
