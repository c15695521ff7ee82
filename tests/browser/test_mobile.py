"""The page on a phone: Chromium's mobile emulation (touch, a 390x844 viewport at 3x)
against ``fakeserver`` (real shells). The key bar's sticky Ctrl and Alt, arrows, Esc,
Tab and paste; the page following the visual viewport; a pinch for the font size.

Keys on the bar are tapped (touch events); the letter after a sticky Ctrl comes from
``page.keyboard``, as an on-screen keyboard's would."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.browser.test_page_states import (
    BUFFER_TEXT,
    WAIT,
    Fake,
    open_live,
    run,
    screen,
    wait_for_text,
)

pytestmark = pytest.mark.browser


PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "has_touch": True,
    "is_mobile": True,
    "device_scale_factor": 3,
}


@pytest.fixture
def context(browser: Browser, fake: Fake) -> Iterator[BrowserContext]:
    context = browser.new_context(**PHONE, bypass_csp=True)  # bypass: Playwright's helpers
    yield context
    context.close()


@pytest.fixture
def phone(context: BrowserContext, base: str) -> Iterator[Page]:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    open_live(page, base)
    page.locator("#terminal").tap()
    page.wait_for_selector("#keybar:not([hidden])", timeout=WAIT)
    yield page
    assert errors == [], f"uncaught errors in the page: {errors}"


def tap(page: Page, key: str) -> None:
    page.locator(f"#keybar [data-key={key!r}]").tap()


def pressed(page: Page, key: str) -> str | None:
    return page.locator(f"#keybar [data-key={key!r}]").get_attribute("aria-pressed")


def od(page: Page, keys: Callable[[], None], setup: str = "", teardown: str = "") -> list[str]:
    """The bytes (as `od -c` names them) that `keys` send to a program reading the tty
    (in cooked mode, with echo off so that only od's dump shows); `setup` runs first."""
    before = screen(page).count("\nod-done")
    run(page, f"stty -echo; {setup} echo od-ready; od -An -c; stty echo; {teardown} echo od-done")
    wait_for_count(page, "\nod-ready", before + 1)  # od is reading: the keys are its
    keys()
    page.keyboard.type("\n")
    tap(page, "ctrl")
    page.keyboard.type("d")  # ^D: end of input, od prints
    wait_for_count(page, "\nod-done", before + 1)
    text = screen(page)
    dump = text[text.rindex("\nod-ready") + len("\nod-ready") : text.rindex("\nod-done")]
    return dump.split()


def wait_for_count(page: Page, text: str, count: int) -> None:
    """Wait until `text` is on the screen `count` times (or more)."""
    page.wait_for_function(
        f"() => ({BUFFER_TEXT})().split({text!r}).length > {count}", timeout=WAIT
    )


def test_the_key_bar_shows_on_a_touch_screen_with_titles(phone: Page) -> None:
    keys = phone.locator("#keybar button")
    assert keys.count() == 12
    for i in range(keys.count()):
        assert keys.nth(i).get_attribute("title")
    # a tap on the bar keeps the focus on the terminal (and an on-screen keyboard open)
    tap(phone, "ctrl")
    assert phone.evaluate("document.activeElement.classList.contains('xterm-helper-textarea')")
    box = phone.locator("#keybar").bounding_box()
    assert box is not None
    assert box["y"] + box["height"] == pytest.approx(844, abs=1)
    assert box["width"] == pytest.approx(390, abs=1)  # every key fits: no sideways scroll
    assert phone.evaluate("(() => { const b = document.getElementById('keybar');"
                          " return b.scrollWidth <= b.clientWidth; })()")  # fmt: skip


def test_sticky_ctrl_then_c_interrupts_sleep(phone: Page) -> None:
    run(phone, "echo started-$((1+1)); sleep 100")
    wait_for_text(phone, "\nstarted-2")
    tap(phone, "ctrl")
    assert pressed(phone, "ctrl") == "true"
    phone.keyboard.type("c")  # as the on-screen keyboard would
    phone.wait_for_function(
        "document.querySelector('#keybar [data-key=ctrl]').getAttribute('aria-pressed') === 'false'",
        timeout=WAIT,
    )
    wait_for_text(phone, "^C")
    run(phone, "echo status-$?")
    wait_for_text(phone, "\nstatus-130")


def test_tapping_ctrl_twice_releases_it(phone: Page) -> None:
    tap(phone, "ctrl")
    tap(phone, "ctrl")
    assert pressed(phone, "ctrl") == "false"
    run(phone, "echo plain-c")
    wait_for_text(phone, "\nplain-c")


def test_arrows_on_the_bar_recall_history_and_edit_the_line(phone: Page) -> None:
    run(phone, "echo first-$((1+1))")
    wait_for_text(phone, "\nfirst-2")
    run(phone, "echo second-$((2+2))")
    wait_for_text(phone, "\nsecond-4")
    tap(phone, "up")
    tap(phone, "up")
    tap(phone, "down")
    tap(phone, "up")  # back to the first
    phone.keyboard.press("Enter")
    phone.wait_for_function(f"({BUFFER_TEXT})().split('\\nfirst-2').length === 3", timeout=WAIT)
    phone.keyboard.type("echo ab")
    tap(phone, "left")
    phone.keyboard.type("X")
    tap(phone, "right")
    phone.keyboard.type("Y\n")
    wait_for_text(phone, "\naXbY")


def test_esc_tab_alt_and_the_symbols_send_their_bytes(phone: Page) -> None:
    def keys() -> None:
        tap(phone, "esc")
        tap(phone, "tab")
        tap(phone, "alt")
        assert pressed(phone, "alt") == "true"
        phone.keyboard.type("b")
        assert pressed(phone, "alt") == "false"
        tap(phone, "|")
        tap(phone, "~")
        tap(phone, "/")
        tap(phone, "ctrl")
        tap(phone, "/")  # Ctrl+/ is ^_

    assert od(phone, keys) == ["033", "\\t", "033", "b", "|", "~", "/", "037", "\\n"]


def test_arrows_follow_application_cursor_mode(phone: Page) -> None:
    def keys() -> None:
        tap(phone, "up")
        tap(phone, "left")

    # what vim or less switch on: the arrows become ESC O A ...
    application = od(phone, keys, setup="printf '\\e[?1h';", teardown="printf '\\e[?1l';")
    assert application == ["033", "O", "A", "033", "O", "D", "\\n"]
    phone.wait_for_function(
        "!window.webterm.terminal.modes.applicationCursorKeysMode", timeout=WAIT
    )
    assert od(phone, keys) == ["033", "[", "A", "033", "[", "D", "\\n"]


def test_paste_sends_the_clipboard_bracketed_when_asked(
    context: BrowserContext, phone: Page
) -> None:
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    phone.evaluate("navigator.clipboard.writeText('pasted')")

    def keys() -> None:
        assert phone.evaluate("window.webterm.terminal.modes.bracketedPasteMode")
        tap(phone, "paste")
        phone.wait_for_selector("#keybar[data-paste=pasted]", state="attached", timeout=WAIT)

    # a program that asks for bracketed paste gets the markers around it
    dump = od(phone, keys, setup="printf '\\e[?2004h';")
    assert "".join(dump) == "033[200~pasted033[201~\\n"


def test_the_page_follows_the_visual_viewport(context: BrowserContext, phone: Page) -> None:
    # An on-screen keyboard shrinks the visual viewport, not the layout viewport; a page
    # scale does the same, which is what the emulation can do.
    rows = phone.evaluate("window.webterm.terminal.rows")
    cdp = context.new_cdp_session(phone)
    cdp.send("Emulation.setPageScaleFactor", {"pageScaleFactor": 2})
    phone.wait_for_function("visualViewport.height < innerHeight", timeout=WAIT)
    phone.wait_for_function(f"window.webterm.terminal.rows < {rows}", timeout=WAIT)
    bottom = phone.evaluate(
        "document.getElementById('keybar').getBoundingClientRect().bottom"
        " - (visualViewport.offsetTop + visualViewport.height)"
    )
    assert bottom == pytest.approx(0, abs=1)  # the bar sits on the visible bottom edge
    run(phone, "stty size")
    fewer = phone.evaluate("window.webterm.terminal.rows")
    wait_for_text(phone, f"\n{fewer} ")
    cdp.send("Emulation.setPageScaleFactor", {"pageScaleFactor": 1})
    phone.wait_for_function(f"window.webterm.terminal.rows === {rows}", timeout=WAIT)


def test_a_pinch_changes_the_font_size_and_it_is_kept(context: BrowserContext, phone: Page) -> None:
    assert phone.evaluate("window.webterm.fontSize") == 14
    cdp = context.new_cdp_session(phone)

    def fingers(apart: int) -> list[dict[str, int]]:
        return [{"x": 195 - apart, "y": 400, "id": 0}, {"x": 195 + apart, "y": 400, "id": 1}]

    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": fingers(50)})
    for apart in (60, 70, 80):  # fingers apart: larger
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": fingers(apart)})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    phone.wait_for_function("window.webterm.fontSize === 22", timeout=WAIT)  # 14 * 80/50
    assert phone.evaluate("window.webterm.terminal.options.fontSize") == 22
    assert phone.evaluate("visualViewport.scale") == 1  # the page itself did not zoom
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": fingers(80)})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": fingers(60)})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    phone.wait_for_function("window.webterm.fontSize === 17", timeout=WAIT)  # 22 * 60/80
    phone.reload()
    phone.wait_for_function("window.webterm && window.webterm.state === 'live'", timeout=WAIT)
    assert phone.evaluate("window.webterm.fontSize") == 17
    assert re.fullmatch(r"\d+", phone.evaluate("localStorage.getItem('webterm.fontSize')"))
