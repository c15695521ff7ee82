"""A Kubernetes API stand-in: a real HTTP server speaking Kubernetes JSON (pods,
services, statefulsets with /scale, list/watch with resourceVersions and bookmarks,
Status errors, RBAC), with a StatefulSet controller and a kubelet whose pods are real
processes on their own loopback addresses. See README.md for what is faithful.

Use :func:`run_kube_api` (or the ``kube_api`` pytest fixture in ``fixtures``)."""

from __future__ import annotations

from . import resources as resources
from .errors import ApiError as ApiError
from .faults import Faults as Faults
from .fixtures import KubeApi as KubeApi
from .fixtures import run_kube_api as run_kube_api
from .kubelet import ContainerCommand as ContainerCommand
from .kubelet import KubeletConfig as KubeletConfig
from .kubelet import PodContext as PodContext
from .kubelet import fake_pod_command as fake_pod_command
from .kubelet import webterm_pty_command as webterm_pty_command
from .manifests import MANAGER_ROLE_RULES as MANAGER_ROLE_RULES
from .manifests import terminal_service as terminal_service
from .manifests import terminal_statefulset as terminal_statefulset
from .realism import Realism as Realism
from .resources import LEASES as LEASES
from .resources import NAMESPACES as NAMESPACES
from .resources import NODES as NODES
from .resources import PODS as PODS
from .resources import SERVICES as SERVICES
from .resources import STATEFULSETS as STATEFULSETS
