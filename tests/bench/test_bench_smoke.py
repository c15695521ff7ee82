"""The benchmark harness must not rot: run it small against webterm and the pty ceiling.
No timing is asserted — only that it measures something."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest


@pytest.mark.parametrize("client", ["--python-client", "--node-client"])
def test_bench_quick_run_produces_results(tmp_path: Path, client: str) -> None:
    """Both stream clients: the in-process trio one and the independent Node one (the
    test session installs the peers' node_modules, see noxfile.py)."""
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--targets", "webterm-direct",
         "--suites", "stream", "--output", str(tmp_path), client],
        capture_output=True, text=True, timeout=300, check=True,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert "webterm-direct" in done.stdout
    (result,) = tmp_path.glob("*.json")
    rows = json.loads(result.read_text())["results"]["stream"]
    assert rows["webterm-direct"]["throughput_mb_s"] > 0
    assert rows["webterm-direct"]["echo_p99_ms"] > 0
    assert rows["raw-pty"]["throughput_mb_s"] > 0


def test_manager_scale_bench_runs_small() -> None:
    done = subprocess.run(
        [sys.executable, "bench/manager_scale.py", "--pods", "100", "--events", "2000"],
        capture_output=True, text=True, timeout=120, check=True,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    row = json.loads(done.stdout.splitlines()[-1])
    assert row["pods"] == 100
    # a readiness watchdog per starting pod of the 10 (10 %) not Ready: those the
    # backend's first replay saw starting (a flip to Ready may already have landed)
    assert 0 < row["waiters"] <= 10
    assert row["events_per_s"] > 0
    assert row["rss_mib"] > 0
    assert "manager events/s" in done.stdout


@pytest.mark.parametrize("kind", ["raw", "quart"])
def test_http_floor_peer_answers_like_an_allocation(kind: str) -> None:
    """The allocation benchmark's floor rows need the peer to answer the load
    generator's request as webterm would (200, ``reconnect: true``)."""
    root = Path(__file__).resolve().parents[2]
    with subprocess.Popen(
        [sys.executable, "bench/peers/http_floor.py", kind],
        cwd=root, stdout=subprocess.PIPE, text=True,
    ) as server:  # fmt: skip
        try:
            assert server.stdout is not None
            address = server.stdout.readline().split()[-1]
            answer = httpx.post(f"http://{address}/api/terminal", json={"client": "x"}, timeout=30)
            assert answer.status_code == 200
            assert answer.json()["reconnect"] is True
        finally:
            server.terminate()
