"""Sharing a terminal in real headless Chromium through the real page and `webterm up`'s
proxy: two browser contexts, an owner and a viewer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.pagekit import chromium
from tests.browser.test_page import BUFFER_TEXT, run, wait_for_text
from tests.upstack import webterm_up

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with webterm_up("--spares", "1", "--max-terminals", "4") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def open_page(browser: Browser, url: str, width: int = 1000, height: int = 600) -> Page:
    context = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=True)
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("window.webterm && window.webterm.state === 'live'", timeout=20_000)
    return page


def make_link(owner: Page, mode: str) -> str:
    owner.locator("#share-button").click()
    owner.locator(f"#share-{mode}").click()
    owner.wait_for_function(
        "document.getElementById('share-link').value.includes('#share=')", timeout=10_000
    )
    return str(owner.locator("#share-link").input_value())


def watching(page: Page, count: int) -> None:
    page.wait_for_function(
        f"document.getElementById('share-button').dataset.viewers === '{count}'", timeout=10_000
    )


def test_a_view_only_viewer_watches_live_cannot_type_and_is_closed_when_revoked(
    browser: Browser, base: str
) -> None:
    owner = open_page(browser, f"{base}/")
    viewer = None
    try:
        run(owner, "echo before-$((2*3))")
        wait_for_text(owner, "before-6")
        link = make_link(owner, "view")
        viewer = open_page(browser, link, width=700, height=400)  # a smaller window
        assert viewer.evaluate("window.webterm.role") == "view"
        assert viewer.locator("#viewer-badge").inner_text() == "viewing — read only"
        assert viewer.locator("#share-button").is_hidden()  # a viewer shares nothing
        watching(owner, 1)
        assert "1 watching" in owner.locator("#share-button").inner_text()
        wait_for_text(viewer, "before-6")  # the scrollback
        # the size is the owner's: the viewer's terminal keeps it and scrolls
        owner_size = owner.evaluate("[window.webterm.terminal.cols, window.webterm.terminal.rows]")
        viewer.wait_for_function(
            f"[window.webterm.terminal.cols, window.webterm.terminal.rows].join() === '{owner_size[0]},{owner_size[1]}'",
            timeout=10_000,
        )

        with viewer.expect_console_message(lambda m: "view only" in m.text, timeout=10_000):
            viewer.locator("#terminal").click()
            run(viewer, "echo VIEWER-$((50+5))")  # refused by the terminal
        owner.locator("#terminal").click()  # the keys go back from the share panel
        run(owner, "echo owner-$((7*3))")
        wait_for_text(owner, "owner-21")
        wait_for_text(viewer, "owner-21")  # the same screen, live
        assert "VIEWER" not in owner.evaluate(BUFFER_TEXT)
        assert "VIEWER-55" not in viewer.evaluate(BUFFER_TEXT)

        owner.locator("#share-viewers li button").click()  # revoke
        viewer.wait_for_function("window.webterm.state === 'error'", timeout=10_000)
        assert viewer.locator("#overlay-title").inner_text() == "This share link was revoked"
        watching(owner, 0)
        assert owner.evaluate("window.webterm.state") == "live"
    finally:
        owner.context.close()
        if viewer is not None:
            viewer.context.close()


def test_a_typing_link_lets_the_viewer_type_into_the_owners_shell(
    browser: Browser, base: str
) -> None:
    owner = open_page(browser, f"{base}/")
    viewer = None
    try:
        viewer = open_page(browser, make_link(owner, "type"))
        assert viewer.locator("#viewer-badge").inner_text() == "shared — you can type"
        viewer.locator("#terminal").click()
        run(viewer, "echo typed-$((8*9))")
        wait_for_text(owner, "typed-72")
        wait_for_text(viewer, "typed-72")
    finally:
        owner.context.close()
        if viewer is not None:
            viewer.context.close()
