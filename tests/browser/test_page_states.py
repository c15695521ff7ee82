"""The page's states in headless Chromium, against ``fakeserver`` (real shells behind a
fake webserver/manager that can inject faults): busy, dropped or silently dead network,
gateway errors, another tab taking over, a duplicated tab, refused tokens, a shell that
cannot start, idle warnings and timeouts, reloads, leaving the page, flow control, big
pastes.

The tests wait for conditions (``wait_for_function``), never for time. Each test gets a
new browser context, so a new tab identity and a new terminal."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("WEBTERM_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
]  # fmt: skip
WAIT = 20_000  # ms: a hang guard for a loaded 2-core machine, not a timing assertion

BUFFER_TEXT = """() => {
  const buffer = window.webterm.terminal.buffer.active;
  const lines = [];
  for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
  return lines.join("\\n");
}"""

# Every state the page goes through, in order (the page fires `webterm:state` events).
RECORD_STATES = """() => {
  window.__states = [window.webterm.state];
  window.addEventListener("webterm:state", (e) => window.__states.push(e.detail.state));
}"""


class Fake:
    """The fake backend's control API, as seen from a test."""

    def __init__(self, base: str) -> None:
        self.base = base

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def config(self, **settings: Any) -> None:
        self._call("POST", "/fake/config", settings)

    def drop(self) -> int:
        return int(self._call("POST", "/fake/drop", {})["dropped"])

    def freeze(self) -> int:
        return int(self._call("POST", "/fake/freeze", {})["frozen"])

    def notice(self, message: dict[str, Any]) -> int:
        return int(self._call("POST", "/fake/notice", {"message": message})["sent"])

    def takeover(self) -> dict[str, Any]:
        return dict(self._call("POST", "/fake/takeover", {}))

    def stats(self) -> dict[str, Any]:
        return dict(self._call("GET", "/fake/stats"))


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    """Base URL of the server under test: here the fake backend (see module docstring),
    which serves $WEBTERM_FAKE_STATIC when set (a scratch build)."""
    from tests.browser.pagekit import fakeserver  # pagekit imports this module's constants

    with fakeserver() as url:
        yield url


@pytest.fixture
def fake(base: str) -> Fake:
    fake = Fake(base)
    fake.config(busy=0, bad_tokens=0, busy_status=503, retry_after=3, pty_args=[], recycle_delay=0)
    return fake


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: apt-get install chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def tab(browser: Browser, base: str, fake: Fake) -> Iterator[Page]:
    """A fresh tab (own sessionStorage, so its own terminal), not yet opened."""
    # bypass_csp only lets Playwright evaluate its helpers (wait_for_function compiles
    # strings); the page's own scripts are what test_page.py::test_csp_allows_the_page checks.
    context = browser.new_context(viewport={"width": 900, "height": 540}, bypass_csp=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


def open_live(page: Page, base: str, query: str = "") -> None:
    page.goto(f"{base}/{query}")
    wait_state(page, "live")
    page.evaluate(RECORD_STATES)


def wait_state(page: Page, state: str) -> None:
    page.wait_for_function(f"window.webterm && window.webterm.state === {state!r}", timeout=WAIT)


def wait_for_text(page: Page, text: str) -> None:
    page.wait_for_function(f"() => ({BUFFER_TEXT})().includes({text!r})", timeout=WAIT)


def screen(page: Page) -> str:
    return str(page.evaluate(BUFFER_TEXT))


def run(page: Page, command: str) -> None:
    page.keyboard.type(command + "\n")


def states(page: Page) -> list[str]:
    return list(page.evaluate("window.__states"))


def wait_for_stats(page: Page, condition: str) -> None:
    """Wait until ``condition`` (JS, over the fake's stats ``s``) holds: what the page
    sends reaches the fake a moment after the click or keypress that caused it."""
    page.wait_for_function(
        f"""async () => {{
            const s = await (await fetch("/fake/stats")).json();
            return {condition};
        }}""",
        timeout=WAIT,
    )


# --- tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [503, 429])
def test_busy_shows_a_countdown_then_retries(tab: Page, base: str, fake: Fake, status: int) -> None:
    fake.config(busy=2, busy_status=status, retry_after=2)
    tab.goto(f"{base}/")
    wait_state(tab, "busy")
    overlay = tab.locator("#overlay")
    countdown = "document.getElementById('overlay-text').textContent.includes('Retrying in {} s')"
    # One snapshot of the overlay and the status line as the countdown shows 2 s: read one
    # by one, a loaded machine can let the countdown tick between the reads.
    shown = tab.wait_for_function(
        f"""() => ({countdown.format(2)}) && {{
            title: document.getElementById('overlay-title').textContent,
            status: document.getElementById('status').textContent,
        }}""",
        timeout=WAIT,
    ).json_value()
    assert shown["title"] == ("All terminals are busy" if status == 503 else "Too many requests")
    assert "retrying in 2 s" in shown["status"]
    tab.wait_for_function(countdown.format(1), timeout=WAIT)  # the countdown counts
    wait_state(tab, "live")  # two refusals later, without anybody clicking
    assert overlay.is_hidden()
    statuses = [r["status"] for r in fake.stats()["requests"][-3:]]
    assert statuses == [status, status, 200]
    run(tab, "echo after-busy-$((40+2))")
    wait_for_text(tab, "after-busy-42")


def test_a_network_drop_reconnects_to_the_same_shell_without_duplicating_output(
    tab: Page, base: str, fake: Fake
) -> None:
    open_live(tab, base)
    run(tab, "MARK=$((1000+1)); echo drop-$MARK")
    wait_for_text(tab, "drop-1001")
    first = fake.stats()["requests"][-1]
    assert fake.drop() == 1  # TCP cut, no close frame: the page sees 1006
    wait_state(tab, "reconnecting")
    assert tab.locator("#banner").is_visible()
    wait_state(tab, "live")
    wait_for_text(tab, "drop-1001")
    assert tab.locator("#banner").is_hidden()
    # the page asked again as the same tab and got the same terminal back
    again = fake.stats()["requests"][-1]
    assert again["client"] is not None
    assert again["terminal"] == first["terminal"]
    # the scrollback replaced the screen instead of being appended to it
    assert screen(tab).count("drop-1001") == 1  # the output once (the command says $MARK)
    run(tab, "echo $MARK-still-here")  # the same shell: its variables survived
    wait_for_text(tab, "1001-still-here")
    assert states(tab)[:3] == ["live", "reconnecting", "live"]


def test_another_tab_taking_over_offers_to_take_it_back(tab: Page, base: str, fake: Fake) -> None:
    open_live(tab, base)
    run(tab, "echo mine-$((7*6))")
    wait_for_text(tab, "mine-42")
    assert fake.takeover()["hello"]["reattached"] is True
    tab.wait_for_selector("#overlay:not([hidden])", timeout=WAIT)
    assert "elsewhere" in tab.locator("#overlay").inner_text().lower()
    assert tab.evaluate("window.webterm.state") == "error"
    assert "reconnecting" not in states(tab)  # 4409 is final: no fight between tabs
    tab.locator("#overlay-button").click()  # "take it back"
    wait_state(tab, "live")
    wait_for_text(tab, "mine-42")
    assert screen(tab).count("mine-42") == 1


def test_a_refused_token_is_retried_once_with_a_fresh_one(tab: Page, base: str, fake: Fake) -> None:
    fake.config(bad_tokens=1)
    tab.goto(f"{base}/")
    wait_state(tab, "live")
    assert [r["status"] for r in fake.stats()["requests"][-2:]] == [200, 200]
    run(tab, "echo token-ok-$((2*21))")
    wait_for_text(tab, "token-ok-42")


def test_a_token_refused_twice_shows_an_error_screen(tab: Page, base: str, fake: Fake) -> None:
    fake.config(bad_tokens=2)
    tab.goto(f"{base}/")
    wait_state(tab, "error")
    assert tab.locator("#overlay").is_visible()
    before = len(fake.stats()["requests"])
    tab.locator("#overlay-button").click()  # "try again"
    wait_state(tab, "live")
    assert len(fake.stats()["requests"]) == before + 1


def test_idle_warning_counts_down_and_stay_keeps_the_shell(
    tab: Page, base: str, fake: Fake
) -> None:
    fake.config(pty_args=["--idle-timeout", "8", "--idle-warning", "6"])
    open_live(tab, base)
    run(tab, "KEEP=$((20+3))")
    wait_state(tab, "idle-warning")
    assert tab.locator("#banner").is_visible()
    banner_says = "document.getElementById('banner-text').textContent.includes(' {} s')"
    tab.wait_for_function(banner_says.format(5), timeout=WAIT)  # counting down from 6
    empty_before = fake.stats()["empty_input_frames"]
    tab.locator("#banner-button").click()  # "stay": an empty input frame, nothing typed
    wait_for_stats(tab, f"s.empty_input_frames === {empty_before + 1}")
    # The server restarted its idle clock: the next warning starts again from the full
    # 6 s. Without the activity the shell would have ended instead.
    tab.wait_for_function(banner_says.format(6), timeout=WAIT)
    assert "ended" not in states(tab)
    run(tab, "echo kept-$KEEP")
    wait_for_text(tab, "kept-23")
    assert "\x00" not in screen(tab)


def test_idle_timeout_ends_the_session_and_new_terminal_starts_fresh(
    tab: Page, base: str, fake: Fake
) -> None:
    fake.config(pty_args=["--idle-timeout", "2", "--idle-warning", "1"])
    open_live(tab, base)
    run(tab, "echo old-$((5*5))")
    wait_for_text(tab, "old-25")
    first = fake.stats()["requests"][-1]["terminal"]
    wait_state(tab, "ended")
    assert "ended" in tab.locator("#overlay").inner_text().lower()
    fake.config(pty_args=[])
    tab.locator("#overlay-button").click()  # "new terminal"
    wait_state(tab, "live")
    assert fake.stats()["requests"][-1]["terminal"] != first
    run(tab, "echo new-$((6*6))")
    wait_for_text(tab, "new-36")
    assert "old-25" not in screen(tab)  # a fresh terminal starts on a clean screen


def test_a_reload_keeps_the_terminal(tab: Page, base: str, fake: Fake) -> None:
    open_live(tab, base)
    run(tab, "RELOADED=$((9*9)); echo before-reload-$RELOADED")
    wait_for_text(tab, "before-reload-81")
    first = fake.stats()["requests"][-1]
    tab.reload()
    wait_state(tab, "live")
    wait_for_text(tab, "before-reload-81")
    again = fake.stats()["requests"][-1]
    assert again["client"] is not None
    assert again["terminal"] == first["terminal"]
    run(tab, "echo after-reload-$RELOADED")
    wait_for_text(tab, "after-reload-81")


def test_rendered_output_is_acknowledged_in_batches(tab: Page, base: str, fake: Fake) -> None:
    open_live(tab, base)
    before = fake.stats()
    assert before["ack_messages"] >= 1  # the first ack announces flow control
    run(tab, "seq 1 30000; echo seq-$((3*11))-done")  # ~170 KB of output
    wait_for_text(tab, "seq-33-done")
    # acks follow rendering; wait until they cover the output
    wait_for_stats(tab, f"s.ack_bytes - {before['ack_bytes']} >= 160000")
    after = fake.stats()
    assert after["ack_messages"] - before["ack_messages"] < 40  # batched, not per frame


def test_a_paste_larger_than_a_frame_arrives_whole(tab: Page, base: str, fake: Fake) -> None:
    open_live(tab, base)
    # Raw-ish mode so the tty does not cap line length; wc counts what arrived.
    run(tab, "stty -icanon -echo; head -c 1200000 | wc -c; stty sane")
    wait_for_text(tab, "stty sane")
    frames = fake.stats()["input_frames"]
    tab.evaluate("window.webterm.terminal.paste(('a'.repeat(99) + '\\n').repeat(12000))")
    wait_for_text(tab, "1200000")
    assert fake.stats()["input_frames"] - frames > 1  # split below the 1 MiB frame limit
    assert tab.evaluate("window.webterm.state") == "live"


def test_the_shell_sets_the_title(tab: Page, base: str, fake: Fake) -> None:
    open_live(tab, base)
    run(tab, "printf '\\033]0;%s\\007' title-$((8*8))")
    tab.wait_for_function("document.title.includes('title-64')", timeout=WAIT)
    assert "title-64" in tab.locator("#title").inner_text()


def test_resize_messages_follow_the_window(tab: Page, base: str, fake: Fake) -> None:
    open_live(tab, base)
    cols, rows = tab.evaluate("[window.webterm.terminal.cols, window.webterm.terminal.rows]")
    assert [cols, rows] in fake.stats()["resizes"]
    tab.set_viewport_size({"width": 640, "height": 400})
    tab.wait_for_function(f"window.webterm.terminal.cols < {cols}", timeout=WAIT)
    new = tab.evaluate("[window.webterm.terminal.cols, window.webterm.terminal.rows]")
    run(tab, "stty size")
    wait_for_text(tab, f"{new[1]} {new[0]}")
    assert fake.stats()["resizes"][-1] == new


def test_ctrl_c_stops_a_flood(tab: Page, base: str, fake: Fake) -> None:
    """Under `yes` the server keeps at most 512 KiB unacknowledged: the page's acks are
    what keeps output coming, and what lets Ctrl-C through promptly."""
    open_live(tab, base)
    acked = fake.stats()["ack_bytes"]
    run(tab, "yes flood-line")
    wait_for_stats(tab, f"s.ack_bytes - {acked} > 2 * 1024 * 1024")  # well past one window
    tab.keyboard.press("Control+c")
    run(tab, "echo flood-$((4*4))-over")
    wait_for_text(tab, "flood-16-over")


def test_webgl_context_loss_falls_back_to_the_dom_renderer(
    tab: Page, base: str, fake: Fake
) -> None:
    open_live(tab, base, "?renderer=webgl")  # headless Chromium's WebGL is software
    if tab.evaluate("window.webterm.renderer") != "webgl":
        pytest.fail("this Chromium gave the page no WebGL2 context; the test needs one")
    tab.evaluate(
        """() => {
        const contexts = [...document.querySelectorAll("#terminal canvas")]
            .map((canvas) => canvas.getContext("webgl2"))  // null for 2D canvases
            .filter((gl) => gl !== null);
        contexts[0].getExtension("WEBGL_lose_context").loseContext();
    }"""
    )
    tab.wait_for_function("window.webterm.renderer === 'dom'", timeout=WAIT)
    run(tab, "echo dom-$((10+10))")
    wait_for_text(tab, "dom-20")
    tab.wait_for_function(  # drawn as DOM rows now, not on a canvas
        "document.querySelector('#terminal .xterm-rows').textContent.includes('dom-20')",
        timeout=WAIT,
    )
    assert tab.evaluate("window.webterm.state") == "live"


def test_software_webgl_is_passed_over_for_the_dom_renderer(tab: Page, base: str) -> None:
    """Headless Chromium draws WebGL with SwiftShader (on the CPU): slower than the DOM."""
    renderer = tab.evaluate(
        """() => {
        const gl = document.createElement("canvas").getContext("webgl2");
        const info = gl && gl.getExtension("WEBGL_debug_renderer_info");
        return info ? String(gl.getParameter(info.UNMASKED_RENDERER_WEBGL)) : "";
    }"""
    )
    assert "SwiftShader" in renderer, renderer  # what this test is about
    open_live(tab, base)
    assert tab.evaluate("window.webterm.renderer") == "dom"
    open_live(tab, base, "?renderer=webgl")
    assert tab.evaluate("window.webterm.renderer") == "webgl"


def test_without_webgl_the_page_uses_the_dom_renderer(browser: Browser, base: str) -> None:
    no_gl = browser.browser_type.launch(executable_path=CHROMIUM, args=[*ARGS, "--disable-3d-apis"])
    try:
        page = no_gl.new_context(bypass_csp=True).new_page()
        open_live(page, base)
        assert page.evaluate("window.webterm.renderer") == "dom"
        run(page, "echo no-gl-$((3+4))")
        page.wait_for_function(
            "document.querySelector('#terminal .xterm-rows').textContent.includes('no-gl-7')",
            timeout=WAIT,
        )
    finally:
        no_gl.close()


def test_a_double_click_on_now_makes_one_attempt_and_no_leftover_countdown(
    tab: Page, base: str, fake: Fake
) -> None:
    """Two clicks on "now" while reconnecting, both answered busy, once left a countdown
    behind that asked for the terminal every second after the page was live again."""
    open_live(tab, base)
    run(tab, "STORM=$((5*9)); echo stored-$STORM")
    wait_for_text(tab, "\nstored-45")  # the line reached the shell before the drop
    fake.config(busy=2, retry_after=2)
    fake.drop()
    # "now", twice, in the same turn of the page that first shows it: a click from here
    # could come after the page's own retry (a loaded machine) replaced the banner
    tab.wait_for_function(
        """() => {
            const now = document.getElementById("banner-button");
            if (window.webterm.state !== "reconnecting" || now.offsetParent === null) {
                return false;
            }
            now.click();
            now.click();
            return true;
        }""",
        timeout=WAIT,
        polling="raf",
    )
    wait_state(tab, "busy")
    wait_state(tab, "live")
    tab.evaluate("window.__socket = window.webterm.socket")
    requests = len(fake.stats()["requests"])
    run(tab, "sleep 3; echo calm-$STORM")  # a leftover countdown would fire meanwhile
    wait_for_text(tab, "calm-45")
    assert len(fake.stats()["requests"]) == requests
    assert tab.evaluate("window.webterm.socket === window.__socket")
    assert states(tab)[-1] == "live"


def test_overlapping_connects_make_one_request_and_one_socket(
    tab: Page, base: str, fake: Fake
) -> None:
    open_live(tab, base)
    requests = len(fake.stats()["requests"])
    tab.evaluate("Promise.all([window.webterm.connect(), window.webterm.connect()])")
    wait_state(tab, "live")
    wait_for_stats(tab, "s.bridges === 1")  # the old socket is closed, one new one is open
    assert len(fake.stats()["requests"]) == requests + 1


def test_a_silent_connection_is_given_up_and_reconnected(tab: Page, base: str, fake: Fake) -> None:
    """A path that goes dead without FIN or RST never closes the socket: the page notices
    that its ping got no answer. ``?ping=1`` pings every second and waits a second."""
    open_live(tab, base, "?ping=1")
    run(tab, "SILENT=$((6*7)); echo before-$SILENT")
    wait_for_text(tab, "before-42")
    assert fake.freeze() == 1
    wait_state(tab, "reconnecting")
    wait_state(tab, "live")
    run(tab, "echo after-$SILENT")  # the same shell
    wait_for_text(tab, "after-42")


def test_a_gateway_error_while_reconnecting_is_retried(tab: Page, base: str, fake: Fake) -> None:
    """A reverse proxy answers 502 while the webserver behind it restarts: that is the
    same outage, not a final answer."""
    open_live(tab, base)
    run(tab, "GW=$((3*3)); echo gw-$GW")
    wait_for_text(tab, "gw-9")
    gateway_errors = {"left": 2}

    def gateway(route: Any) -> None:
        if gateway_errors["left"] > 0:
            gateway_errors["left"] -= 1
            route.fulfill(status=502, content_type="text/html", body="<h1>502 Bad Gateway</h1>")
        else:
            route.continue_()

    tab.route("**/api/terminal", gateway)
    fake.drop()
    wait_state(tab, "reconnecting")
    tab.wait_for_function(
        "document.getElementById('status').textContent.includes('HTTP 502')", timeout=WAIT
    )
    wait_state(tab, "live")
    assert gateway_errors["left"] == 0
    assert "error" not in states(tab)
    run(tab, "echo gw-again-$GW")
    wait_for_text(tab, "gw-again-9")


def test_a_terminal_that_cannot_start_says_why_and_stops_retrying(
    tab: Page, base: str, fake: Fake
) -> None:
    """The terminal server sends an `error` message and closes 1011 when the shell cannot
    be started: the page shows the message, and gives up after three in a row."""
    fake.config(pty_args=["--shell", "/nonexistent/shell"])
    before = len(fake.stats()["requests"])
    tab.goto(f"{base}/")
    wait_state(tab, "reconnecting")
    tab.wait_for_function(  # the banner says why while it retries
        "document.getElementById('banner-text').textContent.includes('could not be started')",
        timeout=WAIT,
    )
    wait_state(tab, "error")
    assert "could not be started" in tab.locator("#overlay-text").inner_text()
    assert "could not be started" in tab.locator("#status").inner_text()
    requests = len(fake.stats()["requests"])
    assert requests == before + 3  # the first attempt and two retries
    tab.locator("#overlay-button").click()  # "try again": three more attempts
    wait_state(tab, "reconnecting")
    wait_state(tab, "error")
    assert len(fake.stats()["requests"]) == requests + 3


def test_an_idle_warning_ends_when_its_notices_stop(tab: Page, base: str, fake: Fake) -> None:
    """The server repeats the notice every second during a warning. A notice that was on
    its way when the user clicked "stay" arrives after the click, and then none follows:
    the page must not count down to 0 s and stay there."""
    open_live(tab, base)
    empty_before = fake.stats()["empty_input_frames"]
    assert fake.notice({"type": "idle", "seconds_left": 30}) == 1  # one, then silence
    wait_state(tab, "idle-warning")
    assert tab.locator("#banner").is_visible()
    wait_state(tab, "live")
    assert tab.locator("#banner").is_hidden()
    assert fake.stats()["empty_input_frames"] == empty_before  # the page did not fake "stay"


def test_a_duplicated_tab_gets_its_own_terminal(tab: Page, base: str, fake: Fake) -> None:
    """window.open (and "Duplicate tab") copies sessionStorage, tab id included: the copy
    must not take the original's terminal."""
    open_live(tab, base)
    original = fake.stats()["requests"][-1]
    run(tab, "echo original-$((8*8))")
    wait_for_text(tab, "original-64")
    with tab.context.expect_page() as opened:
        tab.evaluate("window.open(location.href)")
    copy = opened.value
    wait_state(copy, "live")
    assert copy.evaluate("window.webterm.client") != tab.evaluate("window.webterm.client")
    asked = fake.stats()["requests"][-1]
    assert asked["client"] is None  # the copy dropped the id and asked as a new tab
    assert asked["terminal"] != original["terminal"]
    run(copy, "echo copy-$((9*9))")
    wait_for_text(copy, "copy-81")
    assert "original-64" not in screen(copy)
    assert tab.evaluate("window.webterm.state") == "live"  # not "opened elsewhere"
    run(tab, "echo still-mine-$((8*8))")
    wait_for_text(tab, "still-mine-64")


def test_closing_a_live_tab_asks_first(tab: Page, base: str, fake: Fake) -> None:
    """Ctrl+W is the shell's delete-word, but the browser takes it and closes the tab."""
    open_live(tab, base)
    run(tab, "echo typed")  # browsers ask only pages the user has interacted with
    wait_for_text(tab, "\ntyped")
    with tab.expect_event("dialog", timeout=WAIT) as dialog:
        tab.close(run_before_unload=True)
    assert dialog.value.type == "beforeunload"
    dialog.value.accept()
    tab.wait_for_event("close", timeout=WAIT)


def test_closing_an_ended_tab_does_not_ask(tab: Page, base: str, fake: Fake) -> None:
    open_live(tab, base)
    run(tab, "exit")
    wait_state(tab, "ended")
    # an unexpected dialog would be dismissed (Playwright's default) and keep the tab open
    with tab.expect_event("close", timeout=WAIT):
        tab.close(run_before_unload=True)


def test_a_full_screen_program_keeps_its_modes_across_a_reconnect(
    tab: Page, base: str, fake: Fake
) -> None:
    """A program on the alternate screen with application cursor keys paints more than
    the scrollback holds; after a network drop the page is back on the alternate screen
    and the arrow keys still send what the program expects (ESC O A, not ESC [ A)."""
    open_live(tab, base)
    run(
        tab,
        "printf '\\e[?1049h\\e[?1h'; head -c 300000 /dev/zero | tr '\\0' x; "
        "echo; echo PAINTED-$((6*7)); IFS= read -rsn3 key; printf 'KEY-%q\\n' \"$key\"",
    )
    wait_for_text(tab, "PAINTED-42")
    assert tab.evaluate("window.webterm.terminal.buffer.active.type") == "alternate"
    assert fake.drop() == 1
    wait_state(tab, "reconnecting")
    wait_state(tab, "live")
    wait_for_text(tab, "PAINTED-42")
    assert tab.evaluate("window.webterm.terminal.buffer.active.type") == "alternate"
    assert tab.evaluate("window.webterm.terminal.modes.applicationCursorKeysMode") is True
    tab.keyboard.press("ArrowUp")
    wait_for_text(tab, "KEY-$'\\EOA'")


HIDE = """() => {
  // What a background tab is: document.hidden, and timers throttled to one wake-up a
  // second (one a minute after five minutes), so xterm.js parses next to nothing. The
  // renderer is held here as such a tab holds it; SHOW hands it everything back.
  const term = window.webterm.terminal;
  window.__held = [];
  window.__write = term.write.bind(term);
  term.write = (data, callback) => window.__held.push([data, callback]);
  Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
  Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
  document.dispatchEvent(new Event("visibilitychange"));
}"""
SHOW = """() => {
  const term = window.webterm.terminal;
  term.write = window.__write;
  delete document.hidden;
  delete document.visibilityState;
  for (const [data, callback] of window.__held) term.write(data, callback);
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def test_a_hidden_tab_never_holds_up_the_shell_and_catches_up_when_shown(
    tab: Page, base: str, fake: Fake, tmp_path: Path
) -> None:
    """A build printing megabytes in a background tab must not be slowed to the pace of
    a throttled renderer: the hidden page acknowledges output on receipt, keeps a bounded
    backlog, and when shown again reattaches for the scrollback."""
    done = tmp_path / "flood-done"
    open_live(tab, base, "?backlog=262144")
    tab.evaluate(HIDE)
    run(tab, f"head -c 3000000 /dev/zero | tr '\\0' y; echo; echo FLOOD-$((6*7)); touch {done}")
    deadline = time.monotonic() + WAIT / 1000  # a hang guard, not a timing assertion
    while not done.exists():  # the shell got to the end though nothing was parsed
        assert time.monotonic() < deadline, "the hidden tab held the shell's output up"
        tab.wait_for_timeout(100)
    assert tab.evaluate("window.webterm.state") == "live"
    tab.evaluate(SHOW)
    wait_for_text(tab, "FLOOD-42")  # from the replayed scrollback
    wait_state(tab, "live")
    assert "reconnecting" in states(tab)  # it reattached to catch up
    run(tab, "echo SHOWN-$((6*7))")
    wait_for_text(tab, "SHOWN-42")


def test_new_terminal_right_after_the_end_never_reattaches_to_the_ended_one(
    tab: Page, base: str, fake: Fake
) -> None:
    """The manager hears of the shell's exit after the page does: "new terminal" at once
    is first answered with the ended terminal. The page asks again instead of attaching
    to a shell that is gone (and showing "session ended" a second time)."""
    fake.config(recycle_delay=2)
    open_live(tab, base)
    first = fake.stats()["requests"][-1]["terminal"]
    run(tab, "exit")
    wait_state(tab, "ended")
    tab.locator("#overlay-button").click()  # "new terminal", before the recycle took effect
    wait_state(tab, "live")
    assert fake.stats()["requests"][-1]["terminal"] != first
    assert states(tab)[-2:] == ["starting", "live"]  # never "ended" again on the way
    run(tab, "echo fresh-$((6*7))")
    wait_for_text(tab, "fresh-42")


def test_new_terminal_before_the_ended_socket_closes(tab: Page, base: str, fake: Fake) -> None:
    """The ended terminal's close frame can reach the page after the user clicked "new
    terminal" (the exit message comes first; the close waits on the page's last ack and
    the path). That late close is no news: the page neither shows "session ended" again
    nor forgets which terminal ended and attaches to it (seen on a loaded machine)."""
    fake.config(recycle_delay=2, close_delay=1)
    open_live(tab, base)
    first = fake.stats()["requests"][-1]["terminal"]
    run(tab, "exit")
    wait_state(tab, "ended")
    tab.locator("#overlay-button").click()  # while the old socket is still open
    wait_state(tab, "live")
    assert fake.stats()["requests"][-1]["terminal"] != first
    assert states(tab)[-2:] == ["starting", "live"]
    run(tab, "echo fresh-$((6*7))")
    wait_for_text(tab, "fresh-42")
