"""Make docs/images/page.png: the real page, in headless Chromium, against `webterm up`.

    python docs/make_screenshot.py [--out docs/images/page.png] [--chromium /usr/bin/chromium]

Starts `webterm up --port 0` (from this Python's environment), opens the page at
1000x600, types two commands into the shell and takes a screenshot of the whole page.
Needs the `test` extra (Playwright) and a Chromium; Playwright never downloads one.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
# A prompt that shows neither this machine's name nor yours.
RC = r"""PS1='\[\e[1;32m\]you@webterm\[\e[0m\]:\[\e[1;34m\]\w\[\e[0m\]\$ '
cd ~
"""
COMMANDS = ["echo hello from webterm", "ls --color -l /usr/lib | head -12"]
BUFFER_TEXT = """() => {
  const buffer = window.webterm.terminal.buffer.active;
  const lines = [];
  for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
  return lines.join("\\n");
}"""


def wait_for_text(page: Page, text: str) -> None:
    page.wait_for_function(f"() => ({BUFFER_TEXT})().includes({text!r})", timeout=20_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "page.png")
    parser.add_argument(
        "--chromium", default=os.environ.get("WEBTERM_CHROMIUM", "/usr/bin/chromium")
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rc = Path(tmp) / "rc"
        rc.write_text(RC)
        server = subprocess.Popen(
            [sys.executable, "-m", "webterm", "up", "--port", "0", "--spares", "1",
             "--shell", f"bash --noprofile --rcfile {rc}"],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            assert server.stdout is not None
            url = None
            for line in server.stdout:  # its first lines say the URL
                if found := re.search(r"http://\S+", line):
                    url = found.group(0)
                    break
            if url is None:
                sys.exit("webterm up ended without saying its URL")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium, args=ARGS)
                # bypass_csp lets Playwright evaluate its helpers; the page runs as served
                page = browser.new_page(viewport={"width": 1000, "height": 600}, bypass_csp=True)
                page.goto(url)
                page.wait_for_function("window.webterm && window.webterm.state === 'live'")
                wait_for_text(page, "you@webterm")
                for command in COMMANDS:
                    page.keyboard.type(command)
                    page.keyboard.press("Enter")
                wait_for_text(page, "hello from webterm")
                wait_for_text(page, "total")
                page.wait_for_timeout(500)  # let the last frame paint
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out))
                browser.close()
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
