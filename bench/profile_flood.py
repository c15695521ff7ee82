"""Cost of one flood in the terminal server, measured independently of the machine's load.

Starts ``webterm pty`` (or a peer), warms it, floods ``--size`` bytes through the Node
client (``bench/peers/node-reference/client.js``) and prints the server's CPU seconds
(psutil user+system, per 50 MB) and, with ``--callgrind``, the instructions the server
executed during the flood alone (valgrind's callgrind, instrumentation switched on just
before the flood and dumped right after it; the count is repeatable on a busy machine to
about 20 %, wall time is not)::

    python bench/profile_flood.py --size 5e6 --callgrind
    python bench/profile_flood.py --target node-binary --size 50e6

``--py-spy FILE`` records the flood with py-spy (raw collapsed stacks, native frames,
subprocesses), ``--perf FILE`` with ``perf record -g`` (kernel included), ``--cprofile
FILE`` runs the server under cProfile. Set ``PYTHONPATH`` to another checkout's ``src``
to measure that code with the same client (an A/B on one machine).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import stream


def _callgrind(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def _instructions(out: Path) -> int:
    total = 0
    for path in out.parent.glob(out.name + "*"):
        text = path.read_text(errors="replace")
        found = re.search(r"^totals:\s+(\d+)", text, re.M)
        if found and path.stat().st_size:
            total += int(found.group(1))
    return total


def _times(processes: list[psutil.Process]) -> tuple[float, float]:
    user = system = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        user, system = user + times.user, system + times.system
    return user, system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="webterm-direct", choices=sorted(stream.TARGETS))
    parser.add_argument("--size", type=float, default=10e6)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--py-spy", dest="pyspy", metavar="FILE")
    parser.add_argument("--perf", metavar="FILE", help="record the flood with perf record")
    parser.add_argument("--cprofile", metavar="FILE", help="run the server under cProfile")
    parser.add_argument("--out", default="/tmp/webterm-callgrind.out")
    args = parser.parse_args()
    out = Path(args.out)
    for old in out.parent.glob(out.name + "*"):
        old.unlink()
    if args.callgrind:
        # only webterm's own server is run under valgrind (a python process)
        prefix = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                  f"--callgrind-out-file={out}"]  # fmt: skip
        original = stream.spawn

        def spawn(
            argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
        ) -> tuple[subprocess.Popen[str], str]:
            return original([*prefix, *argv] if argv[0] == sys.executable else argv, cwd, env)

        stream.spawn = spawn  # type: ignore[assignment]
    if args.cprofile:
        plain = stream.spawn

        def profiled(
            argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
        ) -> tuple[subprocess.Popen[str], str]:
            if argv[0] == sys.executable:
                argv = [argv[0], "-m", "cProfile", "-o", args.cprofile, *argv[1:]]
            return plain(argv, cwd, env)

        stream.spawn = profiled  # type: ignore[assignment]
    with stream.TARGETS[args.target]() as target:
        stream._client(target, mode="echo", keys=5)
        processes = target.server_processes()
        before = stream.cpu_seconds(processes)
        before_user, before_system = _times(processes)
        spy = None
        if args.callgrind:
            _callgrind(target.root, "-i", "on")
        if args.pyspy:
            spy = subprocess.Popen(
                ["py-spy", "record", "-r", "500", "-f", "raw", "--native", "--subprocesses", "-o", args.pyspy,
                 "-p", str(target.root)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(1.0)
        if args.perf:
            spy = subprocess.Popen(
                ["perf", "record", "-q", "-g", "-o", args.perf, "-p", str(target.root)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)
        flood = stream._client(target, mode="flood", size=int(args.size))
        if args.callgrind:
            _callgrind(target.root, "-d")
            _callgrind(target.root, "-i", "off")
        cpu = stream.cpu_seconds(processes) - before
        user, system = _times(processes)
        user, system = user - before_user, system - before_system
        if spy is not None:
            spy.send_signal(2)
            spy.wait()
    result = {
        "target": args.target,
        "bytes": flood["bytes"],
        "mb_s": round(flood["mb_s"], 2),
        "cpu_s_per_50mb": round(cpu * stream.PER_MB / flood["bytes"], 4),
        "user_s_per_50mb": round(user * stream.PER_MB / flood["bytes"], 4),
        "system_s_per_50mb": round(system * stream.PER_MB / flood["bytes"], 4),
    }
    if args.callgrind:
        result["instructions"] = _instructions(out)
        result["instructions_per_byte"] = round(result["instructions"] / flood["bytes"], 1)
    print(json.dumps(result))


if __name__ == "__main__":
    psutil.Process()  # fail early without psutil
    main()
