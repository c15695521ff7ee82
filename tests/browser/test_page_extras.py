"""The page's extras in headless Chromium against ``fakeserver`` (real shells): searching
the scrollback, the font size kept per browser, the shell's title, the bell, OSC 52
copies (only from a focused page) and sixel images (under the page's real CSP)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.browser.test_page_states import (
    BUFFER_TEXT,
    WAIT,
    Fake,
    open_live,
    run,
    wait_for_text,
)

pytestmark = pytest.mark.browser


SELECTION = "window.webterm.terminal.getSelection()"
DECORATIONS = "document.querySelectorAll('.xterm-decoration').length"


@pytest.fixture
def context(browser: Browser, fake: Fake) -> Iterator[BrowserContext]:
    # bypass_csp only lets Playwright evaluate its helpers; the sixel test runs without
    # it, under the CSP the server sends.
    context = browser.new_context(viewport={"width": 900, "height": 540}, bypass_csp=True)
    yield context
    context.close()


@pytest.fixture
def tab(context: BrowserContext) -> Iterator[Page]:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    assert errors == [], f"uncaught errors in the page: {errors}"


def test_search_finds_a_word_in_the_scrollback_and_highlights_it(tab: Page, base: str) -> None:
    open_live(tab, base)
    run(tab, "echo needle-$((6*7)); seq 1 300")
    wait_for_text(tab, "\n300\n")
    assert tab.evaluate("window.webterm.terminal.buffer.active.viewportY") > 0  # scrolled
    tab.keyboard.press("Control+Shift+F")
    tab.wait_for_selector("#search:not([hidden])", timeout=WAIT)
    assert tab.evaluate("document.activeElement.id") == "search-input"
    tab.keyboard.type("needle-42")  # the command line has "needle-$((6*7))": one match
    tab.wait_for_function(f"{SELECTION} === 'needle-42'", timeout=WAIT)
    tab.wait_for_function(
        "document.getElementById('search-count').textContent === '1/1'", timeout=WAIT
    )
    # scrolled back to the match, which is highlighted (a decoration over it)
    assert tab.evaluate("window.webterm.terminal.buffer.active.viewportY") == 0
    # decorations are drawn with the next frame, not with the search call
    tab.wait_for_function(f"{DECORATIONS} >= 1", timeout=WAIT)
    tab.keyboard.press("Escape")
    tab.wait_for_selector("#search[hidden]", state="attached", timeout=WAIT)
    tab.wait_for_function(f"{DECORATIONS} === 0", timeout=WAIT)
    run(tab, "echo after-search-$((5*5))")  # the keys are the terminal's again
    wait_for_text(tab, "after-search-25")


def test_the_search_button_opens_the_box_and_a_missing_word_says_so(tab: Page, base: str) -> None:
    open_live(tab, base)
    tab.locator("#search-button").click()
    tab.wait_for_selector("#search:not([hidden])", timeout=WAIT)
    tab.keyboard.type("no-such-word-anywhere")
    tab.wait_for_function(
        "document.getElementById('search-count').textContent === 'no match'", timeout=WAIT
    )
    assert tab.evaluate(SELECTION) == ""
    tab.keyboard.press("Control+Shift+F")  # again: closes it
    tab.wait_for_selector("#search[hidden]", state="attached", timeout=WAIT)


def test_font_size_buttons_and_keys_and_the_size_survives_a_reload(tab: Page, base: str) -> None:
    open_live(tab, base)
    assert tab.evaluate("window.webterm.fontSize") == 14
    cols = tab.evaluate("window.webterm.terminal.cols")
    tab.locator("#font-larger").click()
    tab.locator("#font-larger").click()
    tab.wait_for_function("window.webterm.terminal.options.fontSize === 16", timeout=WAIT)
    tab.wait_for_function(f"window.webterm.terminal.cols < {cols}", timeout=WAIT)  # refitted
    tab.keyboard.press("Control+-")
    tab.wait_for_function("window.webterm.fontSize === 15", timeout=WAIT)
    tab.keyboard.press("Control+=")
    tab.keyboard.press("Control+=")
    tab.wait_for_function("window.webterm.fontSize === 17", timeout=WAIT)
    assert tab.evaluate("localStorage.getItem('webterm.fontSize')") == "17"
    run(tab, "echo typed-$((3+4))")
    wait_for_text(tab, "\ntyped-7")
    tab.reload()
    tab.wait_for_function("window.webterm && window.webterm.state === 'live'", timeout=WAIT)
    assert tab.evaluate("window.webterm.terminal.options.fontSize") == 17
    tab.locator("#font-smaller").click()
    tab.wait_for_function("window.webterm.fontSize === 16", timeout=WAIT)
    tab.keyboard.press("Control+0")
    tab.wait_for_function("window.webterm.fontSize === 14", timeout=WAIT)


def test_osc_0_and_2_set_the_title(tab: Page, base: str) -> None:
    open_live(tab, base)
    run(tab, "printf '\\e]0;hello-title\\a'")
    tab.wait_for_function("document.title === 'hello-title — webterm'", timeout=WAIT)
    run(tab, "printf '\\e]2;other-%s\\a' $((2*3))")
    tab.wait_for_function("document.title === 'other-6 — webterm'", timeout=WAIT)
    assert tab.locator("#title").inner_text() == "other-6"


def test_a_bell_flashes_the_tab_then_stops(tab: Page, base: str) -> None:
    open_live(tab, base)
    run(tab, "printf '\\e]0;ringer\\a'")
    tab.wait_for_function("document.title === 'ringer — webterm'", timeout=WAIT)
    assert tab.evaluate("document.body.dataset.bell") is None
    run(tab, "printf 'bell-%s\\a\\n' $((4*4))")
    tab.wait_for_function("document.body.dataset.bell === 'ringing'", timeout=WAIT)
    assert tab.evaluate("document.title") == "🔔 ringer — webterm"
    assert (
        tab.evaluate("getComputedStyle(document.getElementById('terminal')).animationName")
        == "bell"
    )
    tab.wait_for_function("document.body.dataset.bell === undefined", timeout=WAIT)
    assert tab.evaluate("document.title") == "ringer — webterm"
    assert tab.evaluate("document.body.dataset.bells") == "1"


def test_osc_52_copies_to_the_clipboard_from_a_focused_page(
    context: BrowserContext, tab: Page, base: str
) -> None:
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_live(tab, base)
    run(tab, "printf '\\e]52;c;%s\\a' $(printf hi | base64)")
    tab.wait_for_function("document.body.dataset.osc52 === 'copied'", timeout=WAIT)
    assert tab.evaluate("navigator.clipboard.readText()") == "hi"


def test_osc_52_does_nothing_when_the_page_is_not_focused(
    context: BrowserContext, tab: Page, base: str, tmp_path: Path
) -> None:
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_live(tab, base)
    tab.evaluate("navigator.clipboard.writeText('before')")
    go = tmp_path / "go"
    # the copy waits for a file, so that it arrives while another window has the focus
    run(
        tab,
        f"until [ -e {go} ]; do sleep 0.1; done; "
        "printf '\\e]52;c;%s\\a' $(printf hi | base64); echo copy-$((7*7))",
    )
    # Playwright tells every page it has the focus; without that, the page in front has it
    context.new_cdp_session(tab).send("Emulation.setFocusEmulationEnabled", {"enabled": False})
    other = context.new_page()
    other.bring_to_front()
    tab.wait_for_function("!document.hasFocus()", timeout=WAIT)
    go.touch()
    wait_for_text(tab, "copy-49")
    tab.wait_for_function("document.body.dataset.osc52 === 'refused'", timeout=WAIT)
    tab.bring_to_front()
    tab.wait_for_function("document.hasFocus()", timeout=WAIT)
    assert tab.evaluate("navigator.clipboard.readText()") == "before"


def test_an_osc_52_query_is_ignored(context: BrowserContext, tab: Page, base: str) -> None:
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_live(tab, base)
    run(tab, "printf '\\e]52;c;%s\\a' $(printf first | base64)")
    tab.wait_for_function("document.body.dataset.osc52 === 'copied'", timeout=WAIT)
    run(tab, "printf '\\e]52;c;?\\a'")  # never answered: the clipboard is not the shell's
    tab.wait_for_function("document.body.dataset.osc52 === 'ignored'", timeout=WAIT)
    assert tab.evaluate("navigator.clipboard.readText()") == "first"


SIXEL = "\\ePq#0;2;0;0;0#1;2;100;0;0#1~~~~~~~~-~~~~~~~~\\e\\\\"  # 8x12 red, as printf wants it


def test_a_sixel_image_renders_under_the_pages_csp(browser: Browser, base: str, fake: Fake) -> None:
    context = browser.new_context(viewport={"width": 900, "height": 540})  # the real CSP
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on(
        "console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None
    )
    try:
        page.goto(f"{base}/")
        poll(page, "window.webterm && window.webterm.state === 'live'")
        page.keyboard.type(f"printf '{SIXEL}'; echo; echo image-$((2+3))\n")
        poll(page, "window.webterm.images.storageUsage > 0")
        # the image layer comes with the next render after the image is stored
        poll(page, "document.querySelectorAll('.xterm-image-layer').length === 1")
        poll(page, f"({BUFFER_TEXT})().includes('image-5')")
        # the image is in the first column of a row above the output that followed it
        image = page.evaluate(
            """(() => { const b = window.webterm.terminal.buffer.active;
              for (let y = 0; y < b.length; y++) {
                if (b.getLine(y).translateToString(true).startsWith('image-5')) return null;
                const c = window.webterm.images.getImageAtBufferCell(0, y);
                if (c) return [c.width, c.height];
              }
              return null; })()"""
        )
        assert image is not None
        assert image[0] > 0
        assert problems == []
    finally:
        context.close()


def poll(page: Page, expression: str) -> None:
    """wait_for_function, for a page under a CSP without 'unsafe-eval' (Playwright's
    predicate is compiled with eval; a plain evaluate is not)."""
    deadline = time.monotonic() + WAIT / 1000
    while not page.evaluate(f"!!({expression})"):
        assert time.monotonic() < deadline, f"never true: {expression}"
        page.wait_for_timeout(50)


def test_the_key_bar_stays_hidden_with_a_mouse(tab: Page, base: str) -> None:
    open_live(tab, base)
    tab.locator("#terminal").click()
    assert tab.evaluate("document.activeElement.classList.contains('xterm-helper-textarea')")
    assert tab.locator("#keybar").is_hidden()
