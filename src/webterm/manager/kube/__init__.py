"""The Kubernetes backend: list+watch of terminal pods, StatefulSet scaling, ownership
on the pods, NodePort addressing. See ``backend.py``."""

from webterm.manager.kube.backend import KubernetesBackend, create_backend

__all__ = ["KubernetesBackend", "create_backend"]
