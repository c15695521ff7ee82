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
    if os.environ.get("CI"):
        # The committed build is what gets installed: it must be what web/ builds to.
        changed = session.run(
            "git", "status", "--porcelain", "--", "src/webterm/static", external=True, silent=True
        )
        if changed:
            session.error(
                f"src/webterm/static/ differs from a fresh build of web/:\n{changed}"
                "run `cd web && npm run build` and commit src/webterm/static/"
            )


def test_frontend(session: nox.Session) -> None:
    """The page's unit tests (state table, protocol codec, output) under node, no browser."""
    if (WEB / "package.json").exists():
        with session.chdir(WEB):
            session.run("npm", "test", external=True)


def ensure_debian_packages(session: nox.Session) -> None:
    """The browser tests drive Debian's Chromium (Playwright never downloads one); the
    sandboxed local terminals' tests run real bubblewrap (docs/sandbox.md)."""
    missing = [
        package
        for package, present in (
            ("chromium", Path(CHROMIUM).exists()),
            ("bubblewrap", shutil.which("bwrap") is not None),
        )
        if not present
    ]
    if not missing:
        return
    if os.geteuid() != 0:
        session.error(f"missing: run `sudo apt-get install {' '.join(missing)}` first")
    session.run("apt-get", "update", "-qq", external=True)
    session.run(
        "apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, external=True
    )


def install_bench_peers(session: nox.Session) -> None:
    """node-pty + ws for the benchmark peers and the independent Node bench client."""
    if not shutil.which("npm"):
        session.error("npm is needed for the benchmark peers (Node 20+)")
    with session.chdir(ROOT / "bench" / "peers" / "node-reference"):
        # node-pty compiles against the Node headers the distribution ships
        session.run(
            "npm", "ci", "--no-audit", "--no-fund", external=True,
            env={"npm_config_nodedir": "/usr"},
        )  # fmt: skip


def build_docs(session: nox.Session, site_dir: Path) -> None:
    """``mkdocs build --strict``: a broken link or anchor, a page missing from the nav or a
    missing included file (SECURITY.md, tests/kubeapi/README.md) fails the session.
    Never with --quiet: it hides the warnings --strict counts, and the build passes."""
    session.run(
        "python", "-m", "mkdocs", "build", "--strict",
        "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site_dir),
        env={"NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite: unit, integration, Kubernetes stand-in, browser; then the
    documentation's strict build."""
    build_frontend(session)
    test_frontend(session)
    install_bench_peers(session)  # the bench smoke test runs the Node client
    ensure_debian_packages(session)
    session.install("-e", ".[test,docs]")
    session.run("pytest", *(session.posargs or ["-q"]), env={"WEBTERM_CHROMIUM": CHROMIUM})
    build_docs(session, Path(session.create_tmp()) / "site")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site into site/ (strict). `nox -s docs -- serve` serves it
    with live reload instead."""
    session.install("-e", ".[docs]")
    if session.posargs:
        session.run("python", "-m", "mkdocs", *session.posargs, env={"NO_MKDOCS_2_WARNING": "1"})
    else:
        build_docs(session, ROOT / "site")


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
    """The long chaos soak (its one-minute version is in the default test run): clients
    at work on the simulated cluster while managers are killed, watches cut, the API
    taken away for 30-120 s, pods deleted and the controller slowed; prints counts and
    every invariant violation. `nox -s soak -- --help` for options (--chaos SECONDS,
    --short, --seed N...)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tests.soak.soak", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against terminado and two node-pty + ws servers, in the same run.
    `nox -s bench -- --quick` for a fast smoke run."""
    session.install("-e", ".[bench]")
    install_bench_peers(session)
    session.run("python", "bench/run.py", *session.posargs)
