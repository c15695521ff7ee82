"""Start `webterm up` in a subprocess for integration and browser tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RUNNING_LOGS: list[Path] = []
"""The logs of the ``webterm up`` processes running now: tests/conftest.py adds their
tails to the report of a test that fails meanwhile."""


@contextmanager
def webterm_up(*args: str) -> Iterator[str]:
    """Yields the base URL of a fresh `webterm up` (port 0); stops it afterwards and
    checks it exits cleanly (0, or the SIGINT convention 130)."""
    fd, name = tempfile.mkstemp(prefix="webterm-up-", suffix=".log")
    log = Path(name)
    with os.fdopen(fd, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "webterm", "up", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=os.environ.copy(),
        )
    RUNNING_LOGS.append(log)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("webterm is up: "), line
        yield line.split()[3].rstrip("/")
    finally:
        RUNNING_LOGS.remove(log)
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        finally:
            tail = log.read_text(errors="replace")[-3000:]
            log.unlink()
        assert code in (0, 130), f"webterm up exited with {code}; its log ends:\n{tail}"
