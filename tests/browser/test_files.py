"""Files in the real page through `webterm up`'s proxy, in headless Chromium: the upload
button (its file input), a drop on the page, the progress line, an upload over the
limit, and `webterm-download` making the browser save a file. Unsandboxed and, where
bubblewrap works, in the sandbox (the shell's filesystem view differs from the server's)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.test_page import BUFFER_TEXT, run, wait_for_text
from tests.upstack import webterm_up

pytestmark = pytest.mark.browser

LIMIT = 1024 * 1024


@pytest.fixture(scope="module", params=["none", "bwrap"])
def base(request: pytest.FixtureRequest) -> Iterator[str]:
    with webterm_up(
        "--spares", "1", "--max-terminals", "4", "--max-upload", "1M", "--sandbox", request.param
    ) as url:
        yield url


@pytest.fixture
def page(browser: Browser, base: str) -> Iterator[Page]:
    context = browser.new_context(
        viewport={"width": 1000, "height": 600}, bypass_csp=True, accept_downloads=True
    )
    page = context.new_page()
    page.goto(f"{base}/")
    page.wait_for_function("window.webterm && window.webterm.state === 'live'", timeout=20_000)
    yield page
    context.close()


def in_fresh_directory(page: Page, name: str) -> None:
    run(page, f"mkdir -p ~/{name} && cd ~/{name} && echo 'IN''-{name}'")
    wait_for_text(page, f"IN-{name}")


def wait_for_transfer(page: Page, index: int, state: str = "done") -> dict[str, object]:
    page.wait_for_function(
        f"window.webterm.transfers.length > {index}"
        f" && window.webterm.transfers[{index}].state === {state!r}",
        timeout=20_000,
    )
    return page.evaluate(f"({{...window.webterm.transfers[{index}]}})")  # type: ignore[no-any-return]


def test_the_upload_button_puts_a_file_in_the_shells_directory(page: Page) -> None:
    button = page.locator("#upload-button")
    assert button.is_visible()
    assert "webterm-download" in (button.get_attribute("title") or "")
    in_fresh_directory(page, "up1")
    page.set_input_files(
        "#upload-input",
        files=[{"name": "hello é.txt", "mimeType": "text/plain", "buffer": b"uploaded-42\n"}],
    )
    transfer = wait_for_transfer(page, 0)
    assert transfer["stored"] == "hello é.txt"
    assert transfer["loaded"] == transfer["total"] == 12
    assert "uploaded hello é.txt" in page.locator("#transfer").inner_text()
    run(page, "ls -A; cat 'hello é.txt' | tr a-z A-Z")
    wait_for_text(page, "UPLOADED-42")
    assert "hello é.txt" in page.evaluate(BUFFER_TEXT)


def test_a_file_dropped_on_the_page_is_uploaded_and_never_replaces_one(page: Page) -> None:
    in_fresh_directory(page, "up2")
    run(page, "echo mine > notes.txt")
    drop = """() => {
      const data = new DataTransfer();
      data.items.add(new File(["dropped-7\\n"], "notes.txt", {type: "text/plain"}));
      document.dispatchEvent(new DragEvent("dragover", {dataTransfer: data, bubbles: true, cancelable: true}));
      const shown = !document.getElementById("drop").hidden;
      document.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
      return shown && document.getElementById("drop").hidden;
    }"""
    assert page.evaluate(drop)  # the drop overlay shows while a file is dragged over
    transfer = wait_for_transfer(page, 0)
    assert transfer["stored"] == "notes (1).txt"
    run(page, "cat notes.txt 'notes (1).txt' | tr a-z A-Z")
    wait_for_text(page, "MINE\nDROPPED-7")


def test_an_upload_over_the_limit_fails_in_the_page_and_leaves_nothing(page: Page) -> None:
    in_fresh_directory(page, "up3")
    page.set_input_files(
        "#upload-input",
        files=[
            {
                "name": "big.bin",
                "mimeType": "application/octet-stream",
                "buffer": b"x" * (LIMIT + 1),
            }
        ],
    )
    transfer = wait_for_transfer(page, 0, "failed")
    assert "limit" in str(transfer["error"])
    assert "failed" in page.locator("#transfer").inner_text()
    run(page, "ls -A | wc -l | sed 's/^/COUNT=/'")
    wait_for_text(page, "COUNT=0")


def test_webterm_download_makes_the_browser_save_the_file(page: Page) -> None:
    in_fresh_directory(page, "down")
    run(page, "printf 'saved-%s\\n' 99 > 'report 1.txt'")
    with page.expect_download(timeout=20_000) as info:
        run(page, "webterm-download 'report 1.txt'")
    download = info.value
    assert download.suggested_filename == "report 1.txt"
    assert Path(download.path()).read_bytes() == b"saved-99\n"
    wait_for_text(page, "sent to the browser")
    assert wait_for_transfer(page, 0)["kind"] == "download"
