"""What the page's browser tests against ``fakeserver`` share: the server and Chromium
(as in test_page_states.py, whose helpers the extras' tests use too)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

from tests.browser.test_page_states import ARGS, CHROMIUM, ROOT


@contextmanager
def fakeserver() -> Iterator[str]:
    """A fakeserver process; yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.browser.fakeserver"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("fakeserver listening on "), line
        yield line.split()[-1]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        assert code == 0, f"fakeserver exited with {code}"


@contextmanager
def chromium() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: apt-get install chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()
