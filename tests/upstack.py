"""Start `webterm up` in a subprocess for integration and browser tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def webterm_up(*args: str) -> Iterator[str]:
    """Yields the base URL of a fresh `webterm up` (port 0); stops it afterwards and
    checks it exits cleanly (0, or the SIGINT convention 130)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "webterm", "up", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("webterm is up: "), line
        yield line.split()[3].rstrip("/")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        assert code in (0, 130), f"webterm up exited with {code}"
