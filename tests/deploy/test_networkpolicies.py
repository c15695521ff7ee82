"""The NetworkPolicies, evaluated: a small model of NetworkPolicy semantics (a pod selected
by a policy of a direction admits only what some rule of such a policy allows; traffic
flows when the source's egress and the destination's ingress both allow it) answers
who may talk to whom, for each overlay."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.rendered import (
    OVERLAYS,
    Obj,
    containers,
    env_of,
    find,
    render,
    render_custom,
)


@dataclass(frozen=True)
class Pod:
    labels: dict[str, str]
    namespace: str = "webterm"
    ip: str = "10.244.0.10"
    namespace_labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Address:
    ip: str


Endpoint = Pod | Address


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        raise AssertionError(f"model does not handle matchExpressions: {expression}")
    return True


def _peer_matches(peer: dict[str, Any], other: Endpoint, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        ip = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        network = ipaddress.ip_network(block["cidr"])
        if ip.version != network.version or ip not in network:
            return False
        return not any(
            ip in ipaddress.ip_network(e) for e in block.get("except", [])
            if ipaddress.ip_network(e).version == ip.version
        )  # fmt: skip
    if not isinstance(other, Pod):
        return False  # pod/namespace selectors match pods only
    if "namespaceSelector" in peer:
        labels = {"kubernetes.io/metadata.name": other.namespace, **other.namespace_labels}
        if not _selects(peer["namespaceSelector"], labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return _selects(peer.get("podSelector", {}), other.labels)


def _ports_match(ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    return any(
        p.get("protocol", "TCP") == protocol and p.get("port") in (None, port) for p in ports
    )


def _direction_allows(
    policies: list[Obj], pod: Pod, direction: str, other: Endpoint, port: int, protocol: str
) -> bool:
    kind = "Ingress" if direction == "ingress" else "Egress"
    peers_key = "from" if direction == "ingress" else "to"
    selecting = [
        p for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and _selects(p["spec"]["podSelector"], pod.labels)
        and kind in p["spec"].get("policyTypes", ["Ingress"])
    ]  # fmt: skip
    if not selecting:
        return True  # not isolated in this direction
    for policy in selecting:
        for rule in policy["spec"].get(direction, []):
            peers = rule.get(peers_key)
            peer_ok = not peers or any(
                _peer_matches(peer, other, policy["metadata"]["namespace"]) for peer in peers
            )
            if peer_ok and _ports_match(rule.get("ports"), port, protocol):
                return True
    return False


def allowed(
    policies: list[Obj], source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP"
) -> bool:
    egress = not isinstance(source, Pod) or _direction_allows(
        policies, source, "egress", destination, port, protocol
    )
    ingress = not isinstance(destination, Pod) or _direction_allows(
        policies, destination, "ingress", source, port, protocol
    )
    return egress and ingress


def webterm(component: str, ip: str) -> Pod:
    return Pod(
        {"app.kubernetes.io/name": "webterm", "app.kubernetes.io/component": component}, ip=ip
    )


WEBSERVER = webterm("webserver", "10.244.0.2")
MANAGER = webterm("manager", "10.244.0.3")
TERMINAL = webterm("terminal", "10.244.0.4")
OTHER_TERMINAL = webterm("terminal", "10.244.0.5")
DNS = Pod({"k8s-app": "kube-dns"}, namespace="kube-system", ip="10.244.0.9")
ELSEWHERE = Pod({"app": "database"}, namespace="prod", ip="10.244.1.7")
BROWSER = Address("203.0.113.7")
API_SERVICE = Address("10.96.0.1")
API_NODE = Address("172.18.0.2")
METADATA = Address("169.254.169.254")
NODELOCAL_DNS = Address("169.254.20.10")
LINK_LOCAL = Address("169.254.1.1")
NODE = Address("172.18.0.3")  # another node: NodePort traffic SNATed by kube-proxy
CLUSTER6 = Address("2600:1900:4000:a1::17")  # a pod's global IPv6 address
INTERNET = Address("93.184.215.14")
INTERNET6 = Address("2606:2800:21f:cb07:6820:80da:af6b:8b2c")

ENDPOINTS: dict[str, Endpoint] = {
    "browser": BROWSER,
    "webserver": WEBSERVER,
    "manager": MANAGER,
    "terminal": TERMINAL,
    "other-terminal": OTHER_TERMINAL,
    "dns": DNS,
    "other-namespace": ELSEWHERE,
    "api-service": API_SERVICE,
    "api-node": API_NODE,
    "metadata": METADATA,
    "nodelocal-dns": NODELOCAL_DNS,
    "link-local": LINK_LOCAL,
    "node": NODE,
    "cluster6": CLUSTER6,
    "internet": INTERNET,
    "internet6": INTERNET6,
}

# (source, destination, port, allowed)
MATRIX = [
    ("browser", "webserver", 8080, True),
    ("browser", "terminal", 7681, False),
    ("browser", "manager", 8081, False),
    ("webserver", "manager", 8081, True),
    ("webserver", "terminal", 7681, True),
    ("webserver", "internet", 443, False),
    ("manager", "api-service", 443, True),
    ("manager", "api-node", 6443, True),
    ("manager", "terminal", 7681, False),
    ("terminal", "manager", 8081, True),
    ("terminal", "dns", 53, True),
    ("terminal", "other-terminal", 7681, False),
    ("terminal", "webserver", 8080, False),
    ("terminal", "other-namespace", 5432, False),
    ("terminal", "api-service", 443, False),
    ("terminal", "api-node", 6443, False),
    ("terminal", "metadata", 80, False),
    ("terminal", "metadata", 53, True),  # GKE's metadata-server resolver
    ("terminal", "nodelocal-dns", 53, True),
    ("manager", "nodelocal-dns", 53, True),
    ("terminal", "nodelocal-dns", 8080, False),
    ("terminal", "link-local", 53, False),  # nothing else of 169.254.0.0/16
    ("terminal", "internet", 443, True),
    ("terminal", "internet6", 443, False),  # IPv6 needs the cluster's ranges: a component
    ("terminal", "cluster6", 443, False),
    ("browser", "terminal", 7681, False),
    ("node", "terminal", 7681, False),  # proxy mode: no NodePort reaches a terminal
    ("other-namespace", "terminal", 7681, False),
    ("other-namespace", "manager", 8081, False),
]


@pytest.fixture(scope="module", params=OVERLAYS)
def policies(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[Obj]:
    objects = render(request.param, tmp_path_factory.mktemp(request.param))
    return [obj for obj in objects if obj["kind"] == "NetworkPolicy"]


@pytest.mark.parametrize(
    ("source", "destination", "port", "expected"),
    MATRIX,
    ids=[f"{s}->{d}:{p}" for s, d, p, _ in MATRIX],
)
def test_who_may_talk_to_whom(
    policies: list[Obj], source: str, destination: str, port: int, expected: bool
) -> None:
    a, b = ENDPOINTS[source], ENDPOINTS[destination]
    assert allowed(policies, a, b, port) is expected
    if port == 53:
        assert allowed(policies, a, b, port, "UDP") is expected


def test_without_the_internet_component_terminals_reach_no_internet(policies: list[Obj]) -> None:
    kept = [p for p in policies if p["metadata"]["name"] != "terminal-internet"]
    assert len(kept) == len(policies) - 1
    assert not allowed(kept, TERMINAL, INTERNET, 443)
    assert allowed(kept, TERMINAL, MANAGER, 8081)


def test_the_model_denies_everything_under_default_deny_alone(policies: list[Obj]) -> None:
    """The matrix above can fail: with only the default-deny policy nothing flows."""
    deny = [p for p in policies if p["metadata"]["name"] == "default-deny"]
    assert deny
    assert deny[0]["spec"]["podSelector"] == {}
    assert not any(allowed(deny, ENDPOINTS[s], ENDPOINTS[d], p) for s, d, p, _ in MATRIX)


def _policies_of(objects: list[Obj]) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] == "NetworkPolicy"]


def test_nodeport_mode_admits_browsers_and_other_nodes_on_the_terminal_port_only(
    tmp_path: Path,
) -> None:
    """With the nodeport-mode component, NodePort traffic reaches the terminals whether
    it arrives at the pod's node (the browser's address) or at another one (SNATed to
    that node's address, externalTrafficPolicy: Cluster), on 7681 and nothing else."""
    objects = render_custom(
        tmp_path, components=["generated-secret", "terminal-internet", "nodeport-mode"]
    )
    policies = _policies_of(objects)
    for source in (BROWSER, NODE):
        assert allowed(policies, source, TERMINAL, 7681)
        assert not allowed(policies, source, TERMINAL, 22)
        assert not allowed(policies, source, MANAGER, 8081)
    for deployment in ("manager", "webserver"):
        env = env_of(containers(find(objects, "Deployment", deployment))[0])
        assert env["WEBTERM_ADDRESS_MODE"]["value"] == "nodeport"
        assert env["WEBTERM_PUBLIC_HOST"]["value"]


def test_ipv6_internet_excepts_the_clusters_own_ranges(tmp_path: Path) -> None:
    """The IPv6 component, given the cluster's ranges as its kustomization says, admits
    the IPv6 internet but not the cluster's global addresses, nor IPv4-mapped ones."""
    patch = {
        "target": {"kind": "NetworkPolicy", "name": "terminal-internet-ipv6"},
        "patch": (
            "- op: replace\n"
            "  path: /spec/egress/0/to/0/ipBlock/except/0\n"
            "  value: 2600:1900:4000:a1::/64\n"
        ),
    }
    objects = render_custom(
        tmp_path,
        components=["generated-secret", "terminal-internet", "terminal-internet-ipv6"],
        patches=[patch],
    )
    policies = _policies_of(objects)
    assert allowed(policies, TERMINAL, INTERNET6, 443)
    assert not allowed(policies, TERMINAL, CLUSTER6, 443)
    assert not allowed(policies, TERMINAL, Address("::ffff:10.0.0.1"), 443)
    assert not allowed(policies, TERMINAL, Address("fd00::1"), 443)
    assert allowed(policies, TERMINAL, INTERNET, 443)
