"""Failure reports carry the end of each running ``webterm up`` log (its stderr)."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.upstack import RUNNING_LOGS

LOG_TAIL_BYTES = 6000


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed:
        for log in RUNNING_LOGS:
            text = log.read_text(errors="replace")[-LOG_TAIL_BYTES:]
            report.sections.append((f"webterm up log {log.name} (end)", text))
