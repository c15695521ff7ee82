"""Ctrl-C latency under a flood: how long until an interrupted `yes` gives the shell back.

    python bench/ctrl_c.py [--quick]

1. Direct, with a slow reader, against each of bench/run.py's targets: a flood of coloured
   `yes` lines runs for ~1.5 s while the client, after every message it receives, sleeps
   2 ms plus 0.1 us per byte (the reader is the bottleneck, as a busy browser is, whether
   the server sends many small frames or few large ones); then Ctrl-C and at once
   `echo CTRLC-$((6*7))`. Measured: seconds from the Ctrl-C until `CTRLC-42` arrives.
2. In the real page: `webterm up`, the page in headless Chromium with the CPU throttled 6x,
   the flood typed in and left running 2 s, then Control+C and `echo DONE-$((6*7))` typed.
   Measured: seconds from the Ctrl-C until a terminal line starts with `DONE-42` (target:
   <= 1.5 s), and how much of that typing the echo took (Ctrl-C to Enter reaching
   xterm.js: each key waits its turn on the page's busy main thread).

Reported as medians of 3 repetitions (1 with --quick), each on a fresh target.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import stream
import trio
from playwright.sync_api import Page, sync_playwright
from run import open_session, settle

FLOOD = "yes $'\\e[31mred\\e[32mgreen\\e[0m the quick brown fox 0123456789'"
READ_PAUSE_S = 0.002  # the slow reader's pause after each message...
READ_RATE = 10e6  # ...plus its time per byte: it digests 10 MB/s at best
DIRECT_FLOOD_S = 1.5
PAGE_FLOOD_S = 2.0
CPU_THROTTLE = 6
PAGE_TARGET_S = 1.5
DEADLINE_S = 300.0  # generous: peers without flow control drain a long backlog first
CHROMIUM = os.environ.get("WEBTERM_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
]  # fmt: skip
# In the page: when Ctrl-C and Enter reach xterm.js (page clock), and a cheap poll.
WATCH_KEYS = """() => {
  window.__keys = {};
  window.webterm.terminal.onData((d) => {
    if (d === "\\x03" || d === "\\r") window.__keys[d === "\\r" ? "enter" : "ctrl_c"] = performance.now();
  });
}"""
LINE_STARTS = """([prefix, n]) => {
  const buffer = window.webterm.terminal.buffer.active;
  for (let i = buffer.length - 1; i >= Math.max(0, buffer.length - n); i--) {
    if (buffer.getLine(i).translateToString(true, 0, prefix.length) === prefix) return true;
  }
  return false;
}"""
LAST_LINES = """(n) => {
  const buffer = window.webterm.terminal.buffer.active;
  const lines = [];
  for (let i = Math.max(0, buffer.length - n); i < buffer.length; i++) {
    lines.push(buffer.getLine(i).translateToString(true));
  }
  return lines;
}"""


async def slow_receive(session: Any) -> bytes:
    """One message, then the pause a busy reader takes to digest it."""
    data: bytes = await session.receive()
    await trio.sleep(READ_PAUSE_S + len(data) / READ_RATE)
    return data


async def direct_once(name: str) -> float:
    async with open_session(name) as session:
        await settle(session)
        await session.send(FLOOD + "\n")
        with trio.fail_after(DEADLINE_S):
            flooding_until = time.perf_counter() + DIRECT_FLOOD_S
            while time.perf_counter() < flooding_until:
                await slow_receive(session)
            started = time.perf_counter()
            await session.send("\x03")
            await session.send("echo CTRLC-$((6*7))\n")
            tail = b""
            while b"CTRLC-42" not in tail:
                data = await slow_receive(session)
                tail = tail[-16:] + data
            return time.perf_counter() - started


async def direct(quick: bool) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for name in stream.TARGETS:
        if name.startswith("node-") and not stream.available():
            print(f"  {name}: skipped (run `npm ci` in bench/peers/node-reference)", flush=True)
            continue
        samples = [await direct_once(name) for _ in range(1 if quick else 3)]
        results[name] = {"ctrl_c_s": statistics.median(samples)}
        print(f"  {name}: {results[name]}  (samples {[round(s, 3) for s in samples]})", flush=True)
    return results


def wait_for_line(tab: Page, prefix: str, deadline: float) -> None:
    """Poll the page's terminal until one of its last 50 lines starts with `prefix`."""
    while not tab.evaluate(LINE_STARTS, [prefix, 50]):
        if time.perf_counter() > deadline:
            lines = "\n".join(tab.evaluate(LAST_LINES, 20))
            raise TimeoutError(f"no line starting {prefix!r} in the page; it ends:\n{lines}")
        time.sleep(0.02)


def page_once(tab: Page, base: str) -> tuple[float, float]:
    """(seconds from Ctrl-C to DONE-42 in the terminal, of which typing the echo took)."""
    tab.context.new_cdp_session(tab).send("Emulation.setCPUThrottlingRate", {"rate": CPU_THROTTLE})
    tab.goto(f"{base}/")
    tab.wait_for_function("window.webterm && window.webterm.state === 'live'", timeout=60_000)
    tab.locator("#terminal").click()
    tab.keyboard.type("echo READY-$((2+3))")
    tab.keyboard.press("Enter")
    wait_for_line(tab, "READY-5", time.perf_counter() + 60)
    tab.evaluate(WATCH_KEYS)
    tab.keyboard.type(FLOOD)
    tab.keyboard.press("Enter")
    time.sleep(PAGE_FLOOD_S)
    started = time.perf_counter()
    tab.keyboard.press("Control+C")
    tab.keyboard.type("echo DONE-$((6*7))")
    tab.keyboard.press("Enter")
    wait_for_line(tab, "DONE-42", started + DEADLINE_S)
    elapsed = time.perf_counter() - started
    keys = tab.evaluate("window.__keys")
    return elapsed, (keys["enter"] - keys["ctrl_c"]) / 1000


def page(quick: bool) -> dict[str, float]:
    """The real page in throttled headless Chromium against `webterm up`."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: apt-get install chromium"
    process, line = stream.spawn([sys.executable, "-m", "webterm", "up", "--port", "0",
                            "--shell", "/bin/bash --norc --noprofile -i"])  # fmt: skip
    samples: list[tuple[float, float]] = []
    try:
        base = line.split()[3].rstrip("/")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            for _ in range(1 if quick else 3):
                context = browser.new_context(
                    viewport={"width": 1000, "height": 600}, bypass_csp=True
                )
                samples.append(page_once(context.new_page(), base))
                context.close()
            browser.close()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
    print(f"  webterm-page: samples (s, typing s) {[(round(a, 3), round(b, 3)) for a, b in samples]}",
          flush=True)  # fmt: skip
    return {
        "ctrl_c_s": statistics.median(s for s, _ in samples),
        "typing_s": statistics.median(t for _, t in samples),
    }


def run(quick: bool = False) -> dict[str, dict[str, float]]:
    """Measure every target: {"<target>": {"ctrl_c_s": seconds}}; the page also has
    "typing_s", how much of that went to typing the echo into the busy page."""
    results = trio.run(direct, quick)
    results["webterm-page"] = page(quick)
    return results


def report(results: dict[str, dict[str, float]]) -> list[str]:
    """The table, the page's target line and webterm-direct's ratio to each peer."""
    lines = [f"{'target':<16} {'Ctrl-C s':>9} {'typing s':>9}"]
    for name, row in results.items():
        typing = f"{row['typing_s']:>9.3f}" if "typing_s" in row else ""
        lines.append(f"{name:<16} {row['ctrl_c_s']:>9.3f} {typing}".rstrip())
    if "webterm-page" in results:
        seconds = results["webterm-page"]["ctrl_c_s"]
        verdict = "PASS" if seconds <= PAGE_TARGET_S else "MISS"
        lines.append(
            f"webterm-page ctrl_c_s: {seconds:.3f} s (target <= {PAGE_TARGET_S} s) {verdict}"
        )
    ours = results.get("webterm-direct")
    for peer in ("terminado", "node-reference"):
        if ours and peer in results:
            ratio = ours["ctrl_c_s"] / results[peer]["ctrl_c_s"]
            lines.append(f"webterm-direct / {peer} ctrl_c_s: {ratio:.3g}x (lower is better)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one repetition")
    args = parser.parse_args()
    print("measuring Ctrl-C latency under a flood (medians):", flush=True)
    results = run(args.quick)
    print("\n".join(["", *report(results), ""]))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
