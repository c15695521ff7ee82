"""A terminal server runs once per user: what it loads is what a cluster pays per
terminal. Its import must not pull in the web stack the other services use."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "quart", "hypercorn", "flask", "jinja2", "prometheus_client", "httpx", "asyncio",
    "cryptography",  # the manager's, which signs: verifying is PyNaCl's (a sixth the memory)
)  # fmt: skip


def test_the_terminal_server_loads_no_web_framework_metrics_http_client_or_signing() -> None:
    code = (
        "import json, sys; import webterm.cli, webterm.pty.server; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(loaded.stdout) == []
