"""The page when the servers behind it go away: the webserver restarted (the page
reconnects to the same shell) and the terminal killed under the user (the page says so and
offers a new one). Manager and webserver run as separate `webterm` processes here."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from playwright.sync_api import Browser, Page

from tests.browser.test_page import BUFFER_TEXT, browser, run, wait_for_text  # noqa: F401
from webterm.protocol import SigningKey

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "webterm", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{process.args} exited with {process.returncode}"
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never became healthy")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(timeout=20) == 0
    except subprocess.TimeoutExpired:
        process.kill()
        raise


@dataclass
class Stack:
    env: dict[str, str]
    manager: subprocess.Popen[bytes]
    webserver: subprocess.Popen[bytes]
    manager_url: str
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_webserver(self) -> None:
        self.webserver = start(
            "webserver", "--manager-url", self.manager_url, "--port", str(self.port), env=self.env
        )
        wait_healthy(self.base, self.webserver)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    (tmp_path / "signing.pem").write_bytes(SigningKey.generate().to_pem())
    (tmp_path / "credential").write_text(secrets.token_urlsafe(32))
    env = {
        **os.environ,
        "WEBTERM_SECRET": secrets.token_hex(32),
        "WEBTERM_SIGNING_KEY_FILE": str(tmp_path / "signing.pem"),
        "WEBTERM_WEBSERVER_CREDENTIAL_FILE": str(tmp_path / "credential"),
        "WEBTERM_MANAGER_CREDENTIAL_FILE": str(tmp_path / "credential"),
    }
    manager_port = free_port()
    manager_url = f"http://127.0.0.1:{manager_port}"
    manager = start(
        "manager", "--backend", "local", "--port", str(manager_port),
        "--spares", "1", "--max-terminals", "4", env=env,
    )  # fmt: skip
    try:
        wait_healthy(manager_url, manager)
        stack = Stack(env, manager, manager, manager_url, free_port())
        stack.start_webserver()
        try:
            yield stack
        finally:
            stop(stack.webserver)
    finally:
        stop(manager)


def open_page(browser: Browser, base: str) -> Page:  # noqa: F811
    context = browser.new_context(viewport={"width": 1000, "height": 600}, bypass_csp=True)
    page = context.new_page()
    page.goto(f"{base}/")
    page.wait_for_function("window.webterm && window.webterm.state === 'live'", timeout=20_000)
    return page


def shell_pid(page: Page, tag: str) -> str:
    run(page, f"echo {tag}-$$-PID")
    page.wait_for_function(f"() => /{tag}-\\d+-PID/.test(({BUFFER_TEXT})())", timeout=15_000)
    text = page.evaluate(BUFFER_TEXT)
    return text.split(f"{tag}-")[-1].split("-PID")[0]


def test_a_restarted_webserver_reconnects_the_page_to_the_same_shell(
    browser: Browser,  # noqa: F811
    stack: Stack,
) -> None:
    page = open_page(browser, stack.base)
    before = shell_pid(page, "BEFORE")
    stop(stack.webserver)  # graceful: the page's socket closes with 1001
    page.wait_for_function("window.webterm.state === 'reconnecting'", timeout=10_000)
    time.sleep(1.5)  # the page retries against a closed port meanwhile
    stack.start_webserver()
    page.wait_for_function("window.webterm.state === 'live'", timeout=30_000)
    assert shell_pid(page, "AFTER") == before  # the same shell, not a new one
    assert page.locator("#overlay").is_hidden()
    page.context.close()


def test_a_terminal_killed_under_the_user_is_reported_and_a_new_one_offered(
    browser: Browser,  # noqa: F811
    stack: Stack,
) -> None:
    page = open_page(browser, stack.base)
    before = shell_pid(page, "VICTIM")
    servers = [
        child
        for child in psutil.Process(stack.manager.pid).children(recursive=True)
        if "pty" in child.cmdline()
        and any(str(c.pid) == before for c in child.children(recursive=True))
    ]
    assert len(servers) == 1, servers
    servers[0].send_signal(signal.SIGKILL)  # the terminal server dies with its shell
    page.wait_for_function("window.webterm.state === 'ended'", timeout=30_000)
    assert page.locator("#overlay-title").inner_text() == "Your terminal is gone"
    assert "was stopped" in page.locator("#overlay-text").inner_text()
    page.locator("#overlay-button").click()  # "new terminal"
    page.wait_for_function("window.webterm.state === 'live'", timeout=30_000)
    assert shell_pid(page, "NEW") != before
    page.context.close()
