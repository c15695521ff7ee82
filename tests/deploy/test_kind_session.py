"""`nox -s kind` cannot run here (no Docker), so its script is exercised up to that point:
it names each missing prerequisite and how to get it, notices a stopped Docker engine, and
its plan refers to files, images and an overlay that exist."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.rendered import ROOT, render, workloads


def run_script(path_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.kind.run", *args],
        cwd=ROOT,
        env={**os.environ, "PATH": str(path_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def fake_tool(directory: Path, name: str, body: str) -> None:
    tool = directory / name
    tool.write_text(f"#!/bin/sh\n{body}\n")
    tool.chmod(0o755)


def test_missing_docker_kind_and_kubectl_are_named_with_where_to_get_them(tmp_path: Path) -> None:
    result = run_script(tmp_path)
    assert result.returncode == 2
    for tool, where in (
        ("docker", "docs.docker.com"),
        ("kind", "kind.sigs.k8s.io"),
        ("kubectl", "kubernetes.io/docs/tasks/tools"),
    ):
        assert f"`{tool}` is not on PATH" in result.stderr
        assert where in result.stderr
    assert "Traceback" not in result.stderr


def test_a_stopped_docker_engine_is_reported_as_such(tmp_path: Path) -> None:
    fake_tool(
        tmp_path,
        "docker",
        'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock" >&2; exit 1',
    )
    fake_tool(tmp_path, "kind", "exit 0")
    fake_tool(tmp_path, "kubectl", "exit 0")
    result = run_script(tmp_path)
    assert result.returncode == 2
    assert "not on PATH" not in result.stderr
    assert "the Docker engine is not running" in result.stderr
    assert "Cannot connect to the Docker daemon" in result.stderr


def test_the_plan_builds_loads_and_applies_what_the_kind_overlay_uses(tmp_path: Path) -> None:
    result = run_script(tmp_path, "--plan")
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.splitlines()]
    tools = [command[0] for command in commands]
    assert tools[:4] == ["kind", "docker", "docker", "kind"]
    built = {c[c.index("--tag") + 1] for c in commands if c[:2] == ["docker", "build"]}
    for command in commands:
        if command[:2] == ["docker", "build"]:
            assert Path(command[command.index("--file") + 1]).is_file()
        if command[:2] == ["kind", "create"]:
            assert Path(command[command.index("--config") + 1]).is_file()
    (load,) = [c for c in commands if c[:2] == ["kind", "load"]]
    assert set(load[-2:]) == built
    (apply,) = [c for c in commands if "apply" in c]
    overlay = Path(apply[apply.index("--kustomize") + 1])
    assert overlay == ROOT / "k8s" / "overlays" / "kind"
    images = {
        c["image"]
        for w in workloads(render("kind", tmp_path))
        for c in w["spec"]["template"]["spec"]["containers"]
    }
    assert images == built


def test_the_containerd_image_store_loads_through_an_archive(tmp_path: Path) -> None:
    """kind#3795: under Docker's containerd image store `kind load docker-image` fails;
    the plan then saves the images and loads the archive."""
    result = run_script(tmp_path, "--plan", "--containerd-store")
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.splitlines()]
    assert not [c for c in commands if c[:3] == ["kind", "load", "docker-image"]]
    (save,) = [c for c in commands if c[:2] == ["docker", "save"]]
    (load,) = [c for c in commands if c[:3] == ["kind", "load", "image-archive"]]
    archive = save[save.index("--output") + 1]
    assert load[-1] == archive
    built = {c[c.index("--tag") + 1] for c in commands if c[:2] == ["docker", "build"]}
    assert set(save[save.index("--output") + 2 :]) == built
    assert commands.index(save) < commands.index(load)


def test_the_containerd_image_store_is_detected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.kind import run

    monkeypatch.setenv("PATH", str(tmp_path))
    fake_tool(tmp_path, "docker", """echo '[["driver-type","io.containerd.snapshotter.v1"]]'""")
    assert run.uses_containerd_image_store()
    fake_tool(tmp_path, "docker", """echo '[["Backing Filesystem","extfs"]]'""")
    assert not run.uses_containerd_image_store()


def test_an_existing_cluster_without_the_port_mapping_is_refused_clearly(
    tmp_path: Path,
) -> None:
    fake_tool(
        tmp_path,
        "docker",
        """case "$1" in
  info) echo 27.0.1 ;;
  port) echo "Error: No public port '30080/tcp' published for webterm-control-plane" >&2; exit 1 ;;
  *) echo "unexpected: docker $*" >&2; exit 3 ;;
esac""",
    )
    fake_tool(tmp_path, "kind", """[ "$1 $2" = "get clusters" ] && echo webterm; exit 0""")
    fake_tool(tmp_path, "kubectl", "exit 0")
    result = run_script(tmp_path, "--no-tests")
    assert result.returncode == 2, result.stderr
    assert "created without the port mapping" in result.stderr
    assert "k8s/overlays/kind/kind-config.yaml" in result.stderr
    assert "nox -s kind -- --down" in result.stderr
    assert "Traceback" not in result.stderr
    assert "unexpected" not in result.stderr


def test_an_existing_cluster_with_the_port_mapping_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.kind import run

    monkeypatch.setenv("PATH", str(tmp_path))
    fake_tool(tmp_path, "docker", 'echo "127.0.0.1:8080"')
    assert run.port_mapping_problem() is None
