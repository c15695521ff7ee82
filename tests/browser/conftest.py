"""The fixtures the browser tests against ``fakeserver`` share (test_page_extras.py,
test_mobile.py); a module that defines its own ``base``, ``browser`` or ``fake``
(test_page_states.py, test_page.py: the real ``webterm up``) uses its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from tests.browser.pagekit import chromium, fakeserver
from tests.browser.test_page_states import Fake


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with fakeserver() as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def fake(base: str) -> Fake:
    fake = Fake(base)
    fake.config(busy=0, bad_tokens=0, pty_args=[])
    return fake
