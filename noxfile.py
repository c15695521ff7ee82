"""Developer sessions. `nox` alone runs lint, typecheck and tests (what CI runs)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|venv"
nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
WEB = ROOT / "web"
CHROMIUM = os.environ.get("WEBTERM_CHROMIUM", "/usr/bin/chromium")


def build_frontend(session: nox.Session) -> None:
    """Build web/ into src/webterm/static/ with the lockfile's exact packages."""
    if not (WEB / "package.json").exists():
        return
    if not shutil.which("npm"):
        session.error("npm is needed to build the page (Node 20+): install nodejs and npm")
    with session.chdir(WEB):
        if not (WEB / "node_modules").exists() or os.environ.get("CI"):
            session.run("npm", "ci", "--no-audit", "--no-fund", external=True)
        session.run("npm", "run", "build", external=True)


def ensure_chromium(session: nox.Session) -> None:
    """The browser tests drive Debian's Chromium (Playwright never downloads one)."""
    if Path(CHROMIUM).exists():
        return
    if os.geteuid() != 0:
        session.error(f"{CHROMIUM} is missing: run `sudo apt-get install chromium` first")
    session.run("apt-get", "update", "-qq", external=True)
    session.run(
        "apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", external=True
    )


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite: unit, integration, Kubernetes stand-in, browser."""
    build_frontend(session)
    ensure_chromium(session)
    session.install("-e", ".[test]")
    session.run("pytest", *(session.posargs or ["-q"]), env={"WEBTERM_CHROMIUM": CHROMIUM})


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.8")
    session.run("ruff", "check", "src", "tests", "bench", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "bench", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "src/webterm")


@nox.session
def cluster(session: nox.Session) -> None:
    """The simulated cluster: Kubernetes API stand-in + manager (kubernetes backend) +
    webserver, for trying webterm-on-Kubernetes in a browser. Ctrl-C stops it."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tests.kube.cluster", *session.posargs)


@nox.session
def kind(session: nox.Session) -> None:
    """webterm on a local kind cluster: build and load the images, apply
    k8s/overlays/kind, run the end-to-end tests, print the URL. Needs Docker, kind and
    kubectl. `nox -s kind -- --help` for options (--no-tests, --plan, --down)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tests.kind.run", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """The chaos soak (not in the default run): clients at work on the simulated cluster
    while managers are killed, watches cut, the API taken away for 30-120 s, pods
    deleted and the controller slowed; prints counts and every invariant violation.
    `nox -s soak -- --help` for options (--chaos SECONDS, --short, --seed N...)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tests.soak.soak", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against terminado and a node-pty + ws reference, in the same run.
    `nox -s bench -- --quick` for a fast smoke run."""
    session.install("-e", ".[bench]")
    peer = ROOT / "bench" / "peers" / "node-reference"
    if shutil.which("npm"):
        with session.chdir(peer):
            # node-pty compiles against the Node headers the distribution ships
            session.run(
                "npm",
                "ci",
                "--no-audit",
                "--no-fund",
                external=True,
                env={"npm_config_nodedir": "/usr"},
            )
    session.run("python", "bench/run.py", *session.posargs)
