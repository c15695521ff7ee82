"""The benchmark harness must not rot: run it small against webterm and the pty ceiling.
No timing is asserted — only that it measures something."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_bench_quick_run_produces_results(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--targets", "webterm-direct",
         "--output", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=True,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert "webterm-direct" in done.stdout
    (result,) = tmp_path.glob("*.json")
    rows = json.loads(result.read_text())["results"]
    assert rows["webterm-direct"]["throughput_mb_s"] > 0
    assert rows["webterm-direct"]["echo_p99_ms"] > 0
    assert rows["raw-pty"]["throughput_mb_s"] > 0
