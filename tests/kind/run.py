"""`nox -s kind`: webterm on a real (kind) cluster on the developer's machine.

Creates or reuses the kind cluster `webterm`, builds both images, loads them into kind,
applies k8s/overlays/kind, waits for the rollout, runs the end-to-end tests against the
page on http://127.0.0.1:8080 and prints that URL. Needs Docker (a running engine), kind
and kubectl; says so, and how to get them, when one is missing.

    python -m tests.kind.run            # everything
    python -m tests.kind.run --no-tests # deploy only
    python -m tests.kind.run --plan     # print the commands, run nothing
    python -m tests.kind.run --down     # delete the cluster
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.deploy.rendered import write_generated

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = "webterm"
CONTEXT = f"kind-{CLUSTER}"
OVERLAY = ROOT / "k8s" / "overlays" / "kind"
KIND_CONFIG = OVERLAY / "kind-config.yaml"
SECRET_DIR = ROOT / "k8s" / "components" / "generated-secret"
URL = "http://127.0.0.1:8080"
IMAGES = {
    "webterm:dev": ROOT / "containers" / "webterm.Containerfile",
    "webterm-terminal:dev": ROOT / "containers" / "terminal.Containerfile",
}
HOW_TO_GET = {
    "docker": "Docker Engine or Docker Desktop: https://docs.docker.com/get-docker/",
    "kind": "kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation",
    "kubectl": "kubectl: https://kubernetes.io/docs/tasks/tools/",
}


def missing_prerequisites() -> list[str]:
    """What stops this machine from running the kind session, in words a person can act on."""
    problems = [
        f"`{tool}` is not on PATH — install {how}"
        for tool, how in HOW_TO_GET.items()
        if shutil.which(tool) is None
    ]
    if shutil.which("docker") is not None:
        try:
            info = subprocess.run(
                ["docker", "info", "--format", "{{.ServerVersion}}"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            if info.returncode != 0:
                problems.append(
                    "`docker info` failed: the Docker engine is not running or not reachable "
                    f"({info.stderr.strip().splitlines()[-1] if info.stderr.strip() else 'no output'})"
                )
        except subprocess.TimeoutExpired:
            problems.append("`docker info` did not answer in 30 s: is the Docker engine running?")
    return problems


def kubectl(*args: str) -> list[str]:
    return ["kubectl", "--context", CONTEXT, "--namespace", "webterm", *args]


NODE_CONTAINER = f"{CLUSTER}-control-plane"
PAGE_NODE_PORT = 30080  # kind-config.yaml's extraPortMappings containerPort
IMAGE_ARCHIVE = Path("/tmp") / f"{CLUSTER}-images.tar"


def uses_containerd_image_store() -> bool:
    """Whether Docker keeps images in containerd's store (Docker Desktop's default, and
    `"features": {"containerd-snapshotter": true}`): there `kind load docker-image`
    fails (kind#3795), and `docker save` + `kind load image-archive` works."""
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{json .DriverStatus}}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "io.containerd.snapshotter" in info.stdout


def load_commands(*, containerd_store: bool) -> list[list[str]]:
    if not containerd_store:
        return [["kind", "load", "docker-image", "--name", CLUSTER, *IMAGES]]
    return [
        ["docker", "save", "--output", str(IMAGE_ARCHIVE), *IMAGES],
        ["kind", "load", "image-archive", "--name", CLUSTER, str(IMAGE_ARCHIVE)],
    ]


def port_mapping_problem() -> str | None:
    """Why the existing cluster cannot serve the page on URL, or None. A cluster made
    without kind-config.yaml has no host port for the webserver's NodePort, and kind
    cannot add one to a running cluster."""
    try:
        mapped = subprocess.run(
            ["docker", "port", NODE_CONTAINER, f"{PAGE_NODE_PORT}/tcp"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"could not ask Docker for the ports of {NODE_CONTAINER}: {exc}"
    host_port = URL.rsplit(":", 1)[1]
    if mapped.returncode == 0 and any(
        line.strip().endswith(f":{host_port}") for line in mapped.stdout.splitlines()
    ):
        return None
    return (
        f"the existing kind cluster `{CLUSTER}` was created without the port mapping of "
        f"{KIND_CONFIG.relative_to(ROOT)} (host 127.0.0.1:{host_port} -> NodePort "
        f"{PAGE_NODE_PORT}), and a running cluster cannot get one. Delete it and let this "
        f"session create it again: `nox -s kind -- --down`, then `nox -s kind`."
    )


def plan(cluster_exists: bool, *, containerd_store: bool = False) -> list[list[str]]:
    """The commands of a deployment, in order."""
    commands: list[list[str]] = []
    if not cluster_exists:
        commands.append(
            [
                "kind",
                "create",
                "cluster",
                "--name",
                CLUSTER,
                "--config",
                str(KIND_CONFIG),
                "--wait",
                "180s",
            ]
        )
    for tag, containerfile in IMAGES.items():
        commands.append(["docker", "build", "--file", str(containerfile), "--tag", tag, str(ROOT)])
    commands.extend(load_commands(containerd_store=containerd_store))
    commands.append(["kubectl", "--context", CONTEXT, "apply", "--kustomize", str(OVERLAY)])
    # same tags, new images: restart what runs the old ones (terminals update OnDelete)
    commands.append(kubectl("rollout", "restart", "deployment/manager", "deployment/webserver"))
    commands.append(kubectl("delete", "pod", "-l", "app.kubernetes.io/component=terminal"))
    for deployment in ("manager", "webserver"):
        commands.append(kubectl("rollout", "status", f"deployment/{deployment}", "--timeout=300s"))
    return commands


def cluster_exists() -> bool:
    clusters = subprocess.run(
        ["kind", "get", "clusters"], capture_output=True, text=True, check=True
    ).stdout.split()
    return CLUSTER in clusters


def wait_for_page(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url}/readyz did not answer 200 within {timeout:.0f} s")
        time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nox -s kind --", description=__doc__.split("\n")[0])
    parser.add_argument("--plan", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--no-tests", action="store_true", help="deploy, skip the e2e tests")
    parser.add_argument("--down", action="store_true", help="delete the kind cluster")
    parser.add_argument(
        "--containerd-store",
        action="store_true",
        help="with --plan: the plan for Docker's containerd image store (detected otherwise)",
    )
    args = parser.parse_args(argv)

    if args.plan:
        for command in plan(cluster_exists=False, containerd_store=args.containerd_store):
            print(" ".join(command))
        return 0
    problems = missing_prerequisites()
    if problems:
        print("nox -s kind needs Docker, kind and kubectl on this machine:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        print(
            "Without them, `nox` (the CI suite) still checks the manifests and images offline.",
            file=sys.stderr,
        )
        return 2
    if args.down:
        subprocess.run(["kind", "delete", "cluster", "--name", CLUSTER], check=True)
        return 0
    exists = cluster_exists()
    if exists:
        problem = port_mapping_problem()
        if problem is not None:
            print(f"nox -s kind: {problem}", file=sys.stderr)
            return 2
    if not (SECRET_DIR / "signing-key.pem").exists():
        write_generated(SECRET_DIR)
    containerd_store = uses_containerd_image_store()
    for command in plan(exists, containerd_store=containerd_store):
        print("+", " ".join(command), flush=True)
        if command[:3] == ["kind", "load", "docker-image"]:
            if subprocess.run(command, cwd=ROOT).returncode == 0:
                continue
            # kind#3795 and kin: load through an archive instead
            print("kind load docker-image failed: loading an image archive instead", flush=True)
            for fallback in load_commands(containerd_store=True):
                print("+", " ".join(fallback), flush=True)
                subprocess.run(fallback, check=True, cwd=ROOT)
            continue
        subprocess.run(command, check=True, cwd=ROOT)
    wait_for_page(URL)
    if not args.no_tests:
        tests = [sys.executable, "-m", "pytest", "-q", str(Path(__file__).with_name("e2e.py"))]
        result = subprocess.run(tests, cwd=ROOT, env={**os.environ, "WEBTERM_KIND_URL": URL})
        if result.returncode != 0:
            return result.returncode
    print(f"webterm is up on kind: {URL}  (delete it with: nox -s kind -- --down)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
