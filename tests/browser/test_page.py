"""The page in real headless Chromium (Debian's, driven by Playwright) against `webterm up`."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.upstack import webterm_up

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("WEBTERM_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

BUFFER_TEXT = """() => {
  const buffer = window.webterm.terminal.buffer.active;
  const lines = [];
  for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
  return lines.join("\\n");
}"""


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with webterm_up("--spares", "1", "--max-terminals", "8") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: apt-get install chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, base: str) -> Iterator[Page]:
    # bypass_csp only lets Playwright evaluate its helper functions; the page itself
    # runs under the CSP the server sends (test_csp_allows_the_page checks that).
    context = browser.new_context(viewport={"width": 1000, "height": 600}, bypass_csp=True)
    page = context.new_page()
    page.goto(f"{base}/")
    page.wait_for_function("window.webterm && window.webterm.state === 'live'", timeout=20_000)
    yield page
    context.close()


def wait_for_text(page: Page, text: str, timeout: float = 15_000) -> None:
    page.wait_for_function(f"() => ({BUFFER_TEXT})().includes({text!r})", timeout=timeout)


def run(page: Page, command: str) -> None:
    page.keyboard.type(command + "\n")


def test_typing_a_command_shows_its_output(page: Page) -> None:
    run(page, "echo hello-$((6*7))")
    wait_for_text(page, "\nhello-42")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "live-terminal.png"))
    assert page.evaluate("window.webterm.state") == "live"


def test_resizing_the_viewport_changes_stty_size(page: Page) -> None:
    run(page, "stty size")
    page.wait_for_function(f"() => /\\n\\d+ \\d+\\n/.test(({BUFFER_TEXT})())", timeout=15_000)
    before = re.findall(r"\n(\d+ \d+)\n", page.evaluate(BUFFER_TEXT))[-1]
    old_rows, old_cols = before.split()
    page.set_viewport_size({"width": 700, "height": 400})
    page.wait_for_function(f"window.webterm.terminal.cols !== {old_cols}", timeout=10_000)
    cols = page.evaluate("window.webterm.terminal.cols")
    rows = page.evaluate("window.webterm.terminal.rows")
    assert (str(rows), str(cols)) != (old_rows, old_cols)
    run(page, "stty size")
    wait_for_text(page, f"\n{rows} {cols}\n")


def test_a_dropped_socket_reconnects_with_the_earlier_output_on_screen(page: Page) -> None:
    run(page, "echo before-$((1+1))-drop")
    wait_for_text(page, "before-2-drop")
    page.evaluate("window.webterm.socket.close(4000, 'simulated network drop')")
    page.wait_for_function("window.webterm.state === 'reconnecting'", timeout=10_000)
    page.wait_for_function("window.webterm.state === 'live'", timeout=20_000)
    wait_for_text(page, "before-2-drop")  # the scrollback came back
    run(page, "echo after-$((2+2))-drop")
    wait_for_text(page, "after-4-drop")
    assert page.evaluate(BUFFER_TEXT).count("before-2-drop") == 1  # replayed once, not twice


def test_exiting_the_shell_shows_the_session_ended_screen(page: Page) -> None:
    run(page, "exit")
    page.wait_for_function("window.webterm.state === 'ended'", timeout=15_000)
    assert page.locator("#overlay").is_visible()
    assert "Session ended" in page.locator("#overlay-title").inner_text()
    page.locator("#overlay-button").click()  # "new terminal"
    page.wait_for_function("window.webterm.state === 'live'", timeout=30_000)
    run(page, "echo fresh-$((3*3))")
    wait_for_text(page, "fresh-9")


def test_csp_allows_the_page(browser: Browser, base: str) -> None:
    context = browser.new_context()
    page = context.new_page()
    violations: list[str] = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.goto(f"{base}/")
    page.wait_for_selector("#status[data-state='live']", timeout=20_000)
    assert violations == []
    context.close()
