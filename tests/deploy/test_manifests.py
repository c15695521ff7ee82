"""What an operator applies, checked without a cluster: both overlays render with
`kubectl kustomize`, validate against the Kubernetes schemas, meet the Pod Security
Standard `restricted`, grant the manager exactly the contract's RBAC, keep terminals off
the network except where they must go, and agree with the CLI and the backend code."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
from pathlib import Path

import click
import kubernetes_validate
import pytest

from tests.deploy.rendered import (
    GENERATED,
    OVERLAYS,
    ROOT,
    Obj,
    containers,
    env_of,
    find,
    pod_spec,
    render,
    render_custom,
    workloads,
)
from webterm.cli import main
from webterm.manager.kube.backend import COMPONENT_SELECTOR, TERMINAL_PORT
from webterm.protocol import SigningKey

KUBERNETES_VERSION = "1.31.0"

# ARCHITECTURE.md, "Kubernetes objects": the manager's Role, nothing more.
CONTRACT_RULES = {
    ("", "pods"): {"get", "list", "watch", "patch", "delete"},
    ("apps", "statefulsets/scale"): {"get", "patch", "update"},
    ("", "services"): {"create", "delete", "get", "list"},
    ("coordination.k8s.io", "leases"): {"get", "create", "update"},  # leader election
}
LEADER_LABEL = ("webterm.dev/leader", "true")
KUBELET_LOG_ROTATION = 50 * 2**20  # containerLogMaxSize 10Mi x containerLogMaxFiles 5
SAFE_VOLUMES = {"emptyDir", "secret", "configMap", "projected", "downwardAPI"}


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, list[Obj]]:
    name: str = request.param
    return name, render(name, tmp_path_factory.mktemp(name))


def test_every_object_validates_against_the_kubernetes_schema(
    overlay: tuple[str, list[Obj]],
) -> None:
    _, objects = overlay
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_catches_a_misspelt_field(overlay: tuple[str, list[Obj]]) -> None:
    """The validation above can fail: a typo in a pod spec is refused."""
    _, objects = overlay
    broken = copy.deepcopy(find(objects, "StatefulSet", "terminal"))
    broken["spec"]["template"]["spec"]["automountServiceAcountToken"] = False
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_namespace_enforces_the_restricted_pod_security_standard(
    overlay: tuple[str, list[Obj]],
) -> None:
    _, objects = overlay
    labels = find(objects, "Namespace", "webterm")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "webterm", obj["metadata"]


def test_every_pod_meets_the_restricted_standard_with_limits(
    overlay: tuple[str, list[Obj]],
) -> None:
    _, objects = overlay
    found = {w["metadata"]["name"] for w in workloads(objects)}
    assert found == {"webserver", "manager", "terminal"}
    for workload in workloads(objects):
        spec = pod_spec(workload)
        where = workload["metadata"]["name"]
        pod_context = spec.get("securityContext", {})
        assert pod_context.get("runAsNonRoot") is True, where
        assert pod_context.get("runAsUser", 0) != 0, where
        assert not any(spec.get(key) for key in ("hostNetwork", "hostPID", "hostIPC")), where
        for volume in spec.get("volumes", []):
            assert set(volume) - {"name"} <= SAFE_VOLUMES, (where, volume)
        for container in containers(workload):
            context = container["securityContext"]
            seccomp = context.get("seccompProfile") or pod_context.get("seccompProfile")
            assert seccomp == {"type": "RuntimeDefault"}, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert not context["capabilities"].get("add"), where
            assert not context.get("privileged"), where
            assert context["readOnlyRootFilesystem"] is True, where
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) >= {"cpu", "memory", "ephemeral-storage"}
            assert container["readinessProbe"]["httpGet"]["path"] in {"/healthz", "/readyz"}
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_rbac_is_namespaced_and_exactly_the_contract(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    kinds = {obj["kind"] for obj in objects}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    roles = [obj for obj in objects if obj["kind"] == "Role"]
    assert [role["metadata"]["name"] for role in roles] == ["manager"]
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in roles[0]["rules"]:
        assert not rule.get("resourceNames")
        assert "*" not in rule["verbs"]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == CONTRACT_RULES
    binding = find(objects, "RoleBinding", "manager")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "manager"
    }  # fmt: skip
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "manager", "namespace": "webterm"}
    ]


def test_only_the_manager_carries_an_api_token(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    for workload in workloads(objects):
        spec = pod_spec(workload)
        name = workload["metadata"]["name"]
        account = find(objects, "ServiceAccount", spec["serviceAccountName"])
        mounts = name == "manager"
        assert spec["automountServiceAccountToken"] is mounts, name
        assert account.get("automountServiceAccountToken", True) is mounts, name
        assert spec["serviceAccountName"] == name  # none uses `default`


def test_the_terminal_statefulset_is_what_the_backend_expects(
    overlay: tuple[str, list[Obj]],
) -> None:
    _, objects = overlay
    terminal = find(objects, "StatefulSet", "terminal")
    spec = terminal["spec"]
    assert spec["podManagementPolicy"] == "Parallel"
    assert "replicas" not in spec  # the manager owns it; re-applying must not scale down
    labels = spec["template"]["metadata"]["labels"]
    for term in COMPONENT_SELECTOR.split(","):
        key, value = term.split("=")
        assert labels[key] == value
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] <= 10
    assert pod["enableServiceLinks"] is False
    (container,) = pod["containers"]
    assert [p["containerPort"] for p in container["ports"]] == [TERMINAL_PORT]
    env = env_of(container)
    assert env["WEBTERM_INSTANCE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.uid"
    assert env["WEBTERM_KEYS_URL"]["value"] == "http://manager:8081/v1/keys"
    assert "WEBTERM_SECRET" not in env
    headless = find(objects, "Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"].items() <= labels.items()


def test_no_secret_reaches_a_terminal_pod(overlay: tuple[str, list[Obj]]) -> None:
    """A terminal holds public keys only: no Secret in its pod template, by any route
    (env valueFrom, envFrom, a secret or projected volume), and no service-account token."""
    _, objects = overlay
    pod = find(objects, "StatefulSet", "terminal")["spec"]["template"]["spec"]
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        for item in container.get("env", []):
            assert "secretKeyRef" not in item.get("valueFrom", {}), item["name"]
        for source in container.get("envFrom", []):
            assert "secretRef" not in source, source
    for volume in pod.get("volumes", []):
        assert "secret" not in volume, volume["name"]
        for projected in volume.get("projected", {}).get("sources", []):
            assert "secret" not in projected
            assert "serviceAccountToken" not in projected
    assert pod.get("automountServiceAccountToken") is False
    rendered = json.dumps(pod)
    assert "webterm-secret" not in rendered
    assert "webterm-manager" not in rendered


def test_the_signing_key_is_mounted_into_the_manager_only(
    overlay: tuple[str, list[Obj]],
) -> None:
    _, objects = overlay
    mounting: dict[str, set[str]] = {}
    for workload in workloads(objects):
        for volume in pod_spec(workload).get("volumes", []):
            if "secret" in volume:
                name = volume["secret"]["secretName"]
                mounting.setdefault(name, set()).add(workload["metadata"]["name"])
    assert mounting == {"webterm-manager": {"manager"}, "webterm-secret": {"manager", "webserver"}}
    manager_pod = pod_spec(find(objects, "Deployment", "manager"))
    (shared,) = [v for v in manager_pod["volumes"] if v.get("secret", {}).get("secretName") == (
        "webterm-secret"
    )]  # fmt: skip
    # of the webserver's Secret, the manager sees the credential only
    assert shared["secret"]["items"] == [{"key": "credential", "path": "credential"}]


def test_the_secret_is_generated_or_external_never_committed(
    overlay: tuple[str, list[Obj]],
) -> None:
    name, objects = overlay
    secrets_ = [obj for obj in objects if obj["kind"] == "Secret"]
    if name == "kind":
        by_name = {secret["metadata"]["name"]: secret for secret in secrets_}
        assert set(by_name) == {"webterm-secret", "webterm-manager"}
        assert set(by_name["webterm-secret"]["data"]) == {"secret", "credential"}
        assert set(by_name["webterm-manager"]["data"]) == {"signing-key.pem", "secret"}
        pem = base64.b64decode(by_name["webterm-manager"]["data"]["signing-key.pem"])
        assert SigningKey.from_pem(pem).kid  # a key the manager loads
    else:
        assert secrets_ == []  # production: created once by the operator (README)
    tracked = subprocess.run(
        ["git", "ls-files", "k8s"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked
    assert not [path for path in tracked if path.endswith(GENERATED)]
    for path in tracked:
        if path.endswith(".yaml"):
            assert "kind: Secret\n" not in (ROOT / path).read_text(), path


def _argv(
    objects: list[Obj], workload: Obj, entrypoint: list[str]
) -> tuple[str, dict[str, object]]:
    """Parse a container's entrypoint + args + env with the real CLI; (command, params)."""
    (container,) = pod_spec(workload)["containers"]
    argv = [*entrypoint, *container.get("args", [])]
    assert Path(argv[0]).name == "webterm"
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[item["name"]] = workload["metadata"]["namespace"]
        elif item["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[item["name"]] = "pod-from-the-downward-api"
        else:
            env[item["name"]] = "x" * 32  # uid, secret
    command_name, *rest = argv[1:]
    command = main.commands[command_name]  # type: ignore[attr-defined]
    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in __import__("os").environ if k.startswith("WEBTERM_")]:
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        context = command.make_context(command_name, rest)
    assert isinstance(command, click.Command)
    return command_name, context.params


def _port_of(service: Obj) -> tuple[str, int]:
    (port,) = service["spec"]["ports"]
    return service["metadata"]["name"], port["port"]


def test_the_commands_in_the_manifests_parse_and_name_the_real_objects(
    overlay: tuple[str, list[Obj]],
) -> None:
    from tests.deploy.test_containerfiles import entrypoint

    _, objects = overlay
    manager_service = find(objects, "Service", "manager")
    manager_url = "http://{}:{}".format(*_port_of(manager_service))

    name, params = _argv(objects, find(objects, "Deployment", "manager"), entrypoint("webterm"))
    assert name == "manager"
    assert params["backend"] == "kubernetes"
    assert params["namespace"] == "webterm"
    assert find(objects, "StatefulSet", str(params["statefulset"]))
    assert params["port"] == manager_service["spec"]["ports"][0]["port"]
    assert params["host"] == "0.0.0.0"
    assert params["spares"] <= params["max_terminals"]  # type: ignore[operator]
    # the manager Service selects the leader's label: only an electing manager that
    # knows its own pod sets it
    assert params["leader_elect"] is True
    assert params["pod_name"] == "pod-from-the-downward-api"

    name, params = _argv(objects, find(objects, "Deployment", "webserver"), entrypoint("webterm"))
    assert name == "webserver"
    assert params["manager_url"] == manager_url
    assert params["port"] == 8080
    assert params["host"] == "0.0.0.0"
    assert params["address_mode"] == "proxy"

    name, params = _argv(objects, find(objects, "StatefulSet", "terminal"), entrypoint("terminal"))
    assert name == "pty"
    assert params["port"] == TERMINAL_PORT
    assert params["name"] is None  # the hostname: the pod's name
    terminal_env = env_of(pod_spec(find(objects, "StatefulSet", "terminal"))["containers"][0])
    assert terminal_env["WEBTERM_MANAGER_URL"]["value"] == manager_url

    files = {
        ("manager", "--secret-file"): ("webterm-manager", "secret"),
        ("manager", "--signing-key-file"): ("webterm-manager", "signing-key.pem"),
        ("manager", "--webserver-credential-file"): ("webterm-secret", "credential"),
        ("webserver", "--secret-file"): ("webterm-secret", "secret"),
        ("webserver", "--manager-credential-file"): ("webterm-secret", "credential"),
    }
    for (deployment, flag), (secret_name, key) in files.items():
        spec = pod_spec(find(objects, "Deployment", deployment))
        (container,) = spec["containers"]
        path = next(a.split("=", 1)[1] for a in container["args"] if a.startswith(flag + "="))
        mount = next(m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == secret_name, flag
        assert path.endswith("/" + key), flag
        assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsGroup"]


def test_images_are_local_on_kind_and_pinned_in_production(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    images = {c["image"] for w in workloads(objects) for c in containers(w)}
    if name == "kind":
        assert images == {"webterm:dev", "webterm-terminal:dev"}
        assert all(
            c.get("imagePullPolicy", "IfNotPresent") != "Always"
            for w in workloads(objects)
            for c in containers(w)
        )
    else:
        for image in images:
            repository, _, tag = image.rpartition(":")
            assert "@sha256:" in image or (tag and tag != "latest" and "/" not in tag), image
            assert repository.startswith("ghcr.io/"), image


def test_production_has_tls_ingress_and_two_webservers(tmp_path: Path) -> None:
    objects = render("production", tmp_path)
    ingress = find(objects, "Ingress", "webserver")
    (tls,) = ingress["spec"]["tls"]
    assert tls["secretName"]
    assert tls["hosts"] == [ingress["spec"]["rules"][0]["host"]]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert find(objects, "Service", backend["name"])
    assert find(objects, "Deployment", "webserver")["spec"]["replicas"] == 2
    assert find(objects, "PodDisruptionBudget", "webserver")["spec"]["minAvailable"] == 1


def test_the_kind_page_port_is_mapped_to_the_host(tmp_path: Path) -> None:
    import yaml

    from tests.kind.run import KIND_CONFIG, URL

    objects = render("kind", tmp_path)
    service = find(objects, "Service", "webserver")
    assert service["spec"]["type"] == "NodePort"
    config = yaml.safe_load(KIND_CONFIG.read_text())
    (mapping,) = config["nodes"][0]["extraPortMappings"]
    assert mapping["containerPort"] == service["spec"]["ports"][0]["nodePort"]
    assert URL.endswith(f":{mapping['hostPort']}")


def quantity(text: str) -> int:
    """Bytes of a Kubernetes quantity (the binary and decimal suffixes used here)."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


def test_ephemeral_storage_limits_hold_the_emptydirs_and_the_logs(
    overlay: tuple[str, list[Obj]],
) -> None:
    """A pod is evicted when its emptyDirs plus its containers' logs and writable layers
    exceed the containers' ephemeral-storage limits: the limits must hold every disk
    emptyDir at its sizeLimit plus the kubelet's log rotation (50Mi by default)."""
    _, objects = overlay
    for workload in workloads(objects):
        spec = pod_spec(workload)
        disks = sum(
            quantity(v["emptyDir"].get("sizeLimit", "0"))
            for v in spec.get("volumes", [])
            if "emptyDir" in v and v["emptyDir"].get("medium") != "Memory"
        )
        limit = sum(
            quantity(c["resources"]["limits"]["ephemeral-storage"]) for c in spec["containers"]
        )
        logs = KUBELET_LOG_ROTATION * len(spec["containers"])
        assert limit >= disks + logs, (workload["metadata"]["name"], limit, disks + logs)


def test_the_terminal_probes_survive_a_busy_user_and_a_slow_start(
    overlay: tuple[str, list[Obj]],
) -> None:
    _, objects = overlay
    (container,) = pod_spec(find(objects, "StatefulSet", "terminal"))["containers"]
    readiness, liveness = container["readinessProbe"], container["livenessProbe"]
    startup = container["startupProbe"]
    assert readiness.get("timeoutSeconds", 1) >= 5  # a saturated CPU answers late
    assert liveness.get("timeoutSeconds", 1) >= 5
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120  # pull + start
    assert startup["httpGet"] == readiness["httpGet"]


def test_the_process_limit_is_not_a_per_terminal_limit_shared_by_a_node(
    overlay: tuple[str, list[Obj]], tmp_path: Path
) -> None:
    """RLIMIT_NPROC counts per host uid. Without user namespaces every terminal on a node
    shares uid 1000, so the limit is a node-wide backstop far above one terminal's need
    (the per-terminal limit is the kubelet's podPidsLimit); with hostUsers: false each
    pod has its own uids and the limit is per terminal."""
    _, objects = overlay

    def limit_and_userns(objs: list[Obj]) -> tuple[int, bool]:
        spec = pod_spec(find(objs, "StatefulSet", "terminal"))
        env = env_of(spec["containers"][0])
        return int(env["WEBTERM_MAX_PROCESSES"]["value"]), spec.get("hostUsers", True) is False

    limit, own_uids = limit_and_userns(objects)
    assert not own_uids
    assert limit >= 4096
    limit, own_uids = limit_and_userns(
        render_custom(tmp_path, components=["generated-secret", "user-namespaces"])
    )
    assert own_uids
    assert limit <= 1024


def test_the_manager_service_reaches_the_leader_only(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    service = find(objects, "Service", "manager")
    deployment = find(objects, "Deployment", "manager")
    selector = service["spec"]["selector"]
    key, value = LEADER_LABEL
    assert selector[key] == value
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert key not in template_labels  # the elected manager sets it on its own pod
    assert {k: v for k, v in selector.items() if k != key}.items() <= template_labels.items()
    if name == "production":
        assert deployment["spec"]["replicas"] == 2
        assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"


def test_the_trusted_proxy_is_a_settings_value_of_the_production_overlay(
    tmp_path: Path,
) -> None:
    objects = render("production", tmp_path)
    env = env_of(containers(find(objects, "Deployment", "webserver"))[0])
    ref = env["WEBTERM_TRUSTED_PROXY"]["valueFrom"]["configMapKeyRef"]
    (settings,) = [o for o in objects if o["kind"] == "ConfigMap"]
    assert ref["name"] == settings["metadata"]["name"]
    assert settings["metadata"]["name"].startswith("webterm-settings-")  # hashed: rolls on edit
    assert settings["data"][ref["key"]] == "10.0.0.0/8"
    origin = env["WEBTERM_ALLOWED_ORIGIN"]["valueFrom"]["configMapKeyRef"]
    assert settings["data"][origin["key"]].startswith("https://")
