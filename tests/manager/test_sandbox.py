"""Sandboxed local terminals: real bwrap, real shells, through the real terminal
server over real WebSockets. The argv builder also has unit tests."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import httpx
import psutil
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from tests.credentials import MANAGER_SECRET as SECRET
from tests.manager.test_manager_local import manager
from tests.upstack import RUNNING_LOGS, webterm_up
from webterm.config import MiB, SandboxConfig, UpConfig
from webterm.manager import sandbox
from webterm.protocol import subprotocols_for
from webterm.pty.downloads import helper_directory
from webterm.up import unconfined_warning

ROOT = os.geteuid() == 0
REPO = Path(__file__).resolve().parents[2]
LAYOUT = sandbox.HostLayout(
    dirs=("/usr",),
    symlinks=(("/bin", "usr/bin"), ("/lib", "usr/lib")),
    etc=("/etc/profile", "/etc/resolv.conf", "/etc/ssl/certs"),
)

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap not installed")


# --- the argv builder -------------------------------------------------------------------------


def build(**overrides: object) -> list[str]:
    config = SandboxConfig(**overrides)  # type: ignore[arg-type]
    return sandbox.wrap(
        ["/bin/bash", "-l"],
        config=config,
        layout=LAYOUT,
        files_dir="/srv/files",
        hostname="terminal-3",
        host_uid=1_900_000_003,
    )


def pairs(argv: list[str], flag: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == flag]


def test_wrap_unshares_everything_and_runs_the_shell_last() -> None:
    argv = build()
    bwrap = argv.index("bwrap")
    for flag in ("--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts"):
        assert flag in argv[bwrap:]
    for flag in ("--unshare-net", "--die-with-parent", "--disable-userns", "--clearenv"):
        assert flag in argv
    assert "--new-session" not in argv  # it would take the pty away: no job control
    assert "--share-net" not in argv
    assert argv[-3:] == ["--", "/bin/bash", "-l"]
    assert argv[argv.index("--hostname") + 1] == "terminal-3"


def test_wrap_host_network_only_when_asked_and_resolv_conf_only_then() -> None:
    none, host = build(network="none"), build(network="host")
    assert "--unshare-net" in none
    assert "--unshare-net" not in host
    assert ("/etc/resolv.conf", "/etc/resolv.conf") not in pairs(none, "--ro-bind-try")
    assert ("/etc/resolv.conf", "/etc/resolv.conf") in pairs(host, "--ro-bind-try")


def test_wrap_binds_system_dirs_read_only_and_only_listed_etc_files() -> None:
    argv = build()
    assert ("/usr", "/usr") in pairs(argv, "--ro-bind")
    assert ("usr/bin", "/bin") in pairs(argv, "--symlink")
    binds = pairs(argv, "--bind") + pairs(argv, "--ro-bind") + pairs(argv, "--ro-bind-try")
    sources = {src for src, _ in binds}
    # the package's helpers (webterm-download), read-only, wherever the package is
    assert (helper_directory(), sandbox.HELPER_DIR) in pairs(argv, "--ro-bind")
    sources.discard(helper_directory())
    assert "/etc" not in sources  # never the whole of /etc
    assert "/" not in sources
    assert not any(s.startswith(("/home", "/root", "/work", "/tmp", "/proc")) for s in sources)
    assert "--bind" not in argv  # nothing of the host is writable
    accounts = {dest: src for src, dest in pairs(argv, "--ro-bind")}
    assert accounts["/etc/passwd"] == "/srv/files/passwd"
    assert accounts["/etc/group"] == "/srv/files/group"
    assert accounts["/etc/profile"] == "/srv/files/profile"  # the helpers first on PATH
    assert argv[-12:].count("--remount-ro") == 0  # the remounts come before the env
    assert pairs(argv, "--remount-ro")[-1][0] == "/"


def test_wrap_every_tmpfs_has_a_size() -> None:
    argv = build(tmpfs_bytes=3 * MiB)
    tmpfs = [i for i, a in enumerate(argv) if a == "--tmpfs"]
    assert [argv[i + 1] for i in tmpfs] == ["/dev/shm", sandbox.SANDBOX_HOME, "/tmp"]
    for i in tmpfs:
        size = argv.index("--size", i - 4)
        assert size < i
        assert int(argv[size + 1]) == (sandbox.SHM_BYTES if argv[i + 1] == "/dev/shm" else 3 * MiB)


def test_wrap_switches_uid_before_bwrap_and_sets_limits_inside() -> None:
    argv = build(memory_bytes=100 * MiB, processes=77)
    assert argv[:5] == [
        "setpriv",
        "--reuid=1900000003",
        "--regid=1900000003",
        "--clear-groups",
        "--",
    ]
    assert argv.index("setpriv") < argv.index("bwrap")
    # after bwrap's "--": limits set inside the sandbox's own user namespace
    inside = argv[len(argv) - 1 - argv[::-1].index("prlimit") :]
    assert inside == [
        "prlimit",
        "--nproc=77:77",
        f"--as={100 * MiB}:{100 * MiB}",
        "--",
        "/bin/bash",
        "-l",
    ]
    not_root = sandbox.wrap(
        ["sh"],
        config=SandboxConfig(memory_bytes=None),
        layout=LAYOUT,
        files_dir="/f",
        hostname="t",
        host_uid=None,
    )
    assert "setpriv" not in not_root
    assert not [a for a in not_root if a.startswith("--as=")]
    assert not_root.index("bwrap") == 4  # after sh -c SCRIPT NAME: bwrap's parent
    assert not_root[:3] == ["/bin/sh", "-c", sandbox.PARENT_SCRIPT]


@pytest.mark.parametrize(
    ("release", "expected"),
    [("6.18.44-fc-v1045", True), ("5.14.0-1", True), ("5.10.0-28-amd64", False), ("x", False)],
)
def test_per_namespace_nproc(release: str, expected: bool) -> None:
    assert sandbox.per_namespace_nproc(release) is expected


def test_wrap_environment_is_only_what_a_shell_needs() -> None:
    argv = build()
    clear = argv.index("--clearenv")
    env = dict(pairs(argv, "--setenv"))
    assert all(argv.index("--setenv") > clear for _ in env)
    assert env["HOME"] == sandbox.SANDBOX_HOME
    assert env["TERM"] == "xterm-256color"
    assert not [k for k in env if k.startswith("WEBTERM")]
    assert set(env) == {"HOME", "USER", "LOGNAME", "SHELL", "PATH", "TERM", "COLORTERM", "LANG"}


@pytest.mark.parametrize(
    ("mode", "host", "network", "expected"),
    [
        ("auto", "127.0.0.1", None, None),
        ("auto", "localhost", None, None),
        ("auto", "0.0.0.0", None, "none"),
        ("auto", "192.0.2.7", "host", "host"),
        ("bwrap", "127.0.0.1", None, "host"),
        ("bwrap", "::", None, "none"),
        ("none", "0.0.0.0", None, None),
    ],
)
def test_choose(mode: str, host: str, network: str | None, expected: str | None) -> None:
    chosen = sandbox.choose(mode, host, network, SandboxConfig(processes=99))  # type: ignore[arg-type]
    assert (chosen and chosen.network) == expected
    if chosen is not None:
        assert chosen.processes == 99


def test_pid_budget_warning() -> None:
    assert sandbox.pid_budget_warning(20, 1024, pid_max=4_194_304) is None
    warning = sandbox.pid_budget_warning(20, 1024, pid_max=32768)
    assert warning is not None
    assert "kernel.pid_max" in warning


def test_account_files_are_ours_not_the_hosts(tmp_path: Path) -> None:
    sandbox.write_account_files(tmp_path, "terminal-9")
    passwd = (tmp_path / "passwd").read_text()
    assert f"user:x:{sandbox.SANDBOX_UID}:" in passwd
    assert len(passwd.splitlines()) == 3
    assert (tmp_path / "hostname").read_text() == "terminal-9\n"
    assert oct(tmp_path.stat().st_mode & 0o777) == "0o755"
    profile = (tmp_path / "profile").read_text()  # the host's, then the helpers first
    assert profile.endswith(f'PATH="{sandbox.HELPER_DIR}:$PATH"\nexport PATH\n')


def test_host_layout_never_lists_secrets() -> None:
    layout = sandbox.host_layout()
    assert "/usr" in layout.dirs or ("/usr", "") in layout.symlinks
    for path in ("/etc/shadow", "/etc/gshadow", "/etc/ssh", "/etc/ssl/private", "/etc"):
        assert path not in layout.etc


# --- real sandboxes ---------------------------------------------------------------------------


class Shell:
    """A WebSocket to a terminal's shell, with what it printed so far."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.output = b""

    async def expect(self, marker: str) -> str:
        with trio.fail_after(20):
            while marker.encode() not in self.output:
                message = await self.ws.get_message()
                if isinstance(message, bytes):
                    self.output += message
        text = self.output.decode(errors="replace")
        self.output = b""
        return text

    async def run(self, command: str, marker: str | None = None) -> str:
        """Run ``command``, then ``echo <marker>`` typed so that the echo of the
        typed line never contains the marker itself. The default marker is new each
        time: a reattach replays earlier output."""
        marker = marker or f"DONE-{uuid.uuid4().hex[:12]}"
        typed = f"{marker[:1]}''{marker[1:]}"
        await self.ws.send_message(f"{command}\necho {typed}\n".encode())
        return await self.expect(marker)


@asynccontextmanager
async def shell(answer: dict[str, str]) -> AsyncIterator[Shell]:
    url = f"ws://{answer['address']}/ws"
    async with open_websocket_url(url, subprotocols=subprotocols_for(answer["token"])) as ws:
        yield Shell(ws)


@asynccontextmanager
async def sandboxed(max_terminals: int = 2, **limits: object) -> AsyncIterator[httpx.AsyncClient]:
    config = SandboxConfig(**{"network": "none", **limits})  # type: ignore[arg-type]
    async with manager(sandbox=config, spares=1, max_terminals=max_terminals) as http:
        yield http


async def allocate(http: httpx.AsyncClient, client: str) -> dict[str, str]:
    with trio.fail_after(30):
        while True:
            response = await http.post("/v1/allocations", json={"client": client})
            if response.status_code == 200:
                break
            await trio.sleep(0.2)
    return response.json()  # type: ignore[no-any-return]


def sandbox_processes() -> dict[int, list[psutil.Process]]:
    """Our descendants that run under a uid other than ours, by real uid."""
    by_uid: dict[int, list[psutil.Process]] = {}
    for child in psutil.Process().children(recursive=True):
        try:
            uid = child.uids().real
        except psutil.NoSuchProcess:
            continue
        if uid != os.getuid():
            by_uid.setdefault(uid, []).append(child)
    return by_uid


@needs_bwrap
async def test_probe_runs_a_real_sandbox() -> None:
    await sandbox.probe(SandboxConfig(), host_uid=sandbox.pick_uid_base(1) if ROOT else None)
    with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install bubblewrap"):
        await sandbox.probe(SandboxConfig(bwrap="/nonexistent/bwrap"), host_uid=None)
    broken = shutil.which("false")
    assert broken is not None
    with pytest.raises(sandbox.SandboxUnavailable, match="cannot start a bubblewrap sandbox"):
        await sandbox.probe(SandboxConfig(bwrap=broken), host_uid=None)


@needs_bwrap
async def test_the_shell_sees_none_of_the_hosts_files_processes_or_secret() -> None:
    outside = Path(tempfile.mkdtemp(dir=REPO, prefix=".sandbox-test-"))
    try:
        (outside / "private.txt").write_text("host-only-content\n")
        async with sandboxed() as http:
            answer = await allocate(http, "tab:a")
            async with shell(answer) as sh:
                out = await sh.run(f"cat {outside}/private.txt; ls /root /work /home")
                assert "host-only-content" not in out
                assert "No such file" in out
                out = await sh.run("id -un; cat /etc/shadow; ls /etc | wc -l")
                assert "user" in out
                assert "No such file" in out
                ps = await sh.run("ps -e -o pid=,comm= | sort -n")
                pids = [line.split() for line in ps.splitlines() if line.strip()[:1].isdigit()]
                assert {comm for _, comm in pids} <= {"bwrap", "bash", "ps", "sort"}
                assert len(pids) <= 4
                env = await sh.run("env; cat /proc/[0-9]*/environ | tr '\\0' '\\n'")
                assert SECRET.decode() not in env
                assert "WEBTERM_" not in env
                cmdlines = await sh.run("cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
                assert "pytest" not in cmdlines
                assert "--manager-url" not in cmdlines  # the terminal server is not in here
            other = await allocate(http, "tab:b")
            async with shell(other) as sh_b, shell(answer) as sh_a:
                await sh_b.run("echo b-only > ~/b.txt; echo b-only > /tmp/b.txt; sleep 300 &")
                out = await sh_a.run(
                    "for f in ~/b.txt /tmp/b.txt; do test -e $f || echo GO''NE-$f; done;"
                    " echo SLEEPERS-$(pgrep -c sleep)"
                )
                assert f"GONE-{sandbox.SANDBOX_HOME}/b.txt" in out
                assert "GONE-/tmp/b.txt" in out
                assert "SLEEPERS-0" in out  # b's processes are not a's either
    finally:
        shutil.rmtree(outside)


@needs_bwrap
@pytest.mark.parametrize("network", ["none", "host"])
async def test_host_loopback_is_unreachable_without_network(network: str) -> None:
    accepted = 0

    async def count(stream: trio.SocketStream) -> None:
        nonlocal accepted
        accepted += 1
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, count, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        async with sandboxed(network=network) as http:
            answer = await allocate(http, "tab:n")
            async with shell(answer) as sh:
                probe = f"(echo > /dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo RE''ACHED"
                out = await sh.run(probe + " || echo BLO''CKED")
        nursery.cancel_scope.cancel()
    if network == "none":
        assert "BLOCKED" in out
        assert accepted == 0
    else:
        assert "REACHED" in out
        assert accepted == 1


@needs_bwrap
@pytest.mark.skipif(not ROOT, reason="a host uid of its own per terminal needs root")
async def test_process_limit_holds_for_a_sandbox_started_by_root() -> None:
    """Root is exempt from RLIMIT_NPROC: the limit holds only because the shell runs
    under a host uid of its own."""
    script = (
        "python3 - <<'EOF'\n"
        "import os, time\n"
        "n = 0\n"
        "while n < 200:\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(30)\n"
        "        os._exit(0)\n"
        "    n += 1\n"
        "print('FOR' + 'KED', n, 'END')\n"
        "EOF\n"
    )
    async with sandboxed(processes=40) as http:
        answer = await allocate(http, "tab:f")
        async with shell(answer) as sh:
            await sh.ws.send_message(script.encode())
            out = await sh.expect(" END")
    match = re.search(r"FORKED (\d+) END", out)
    assert match is not None, out
    forked = int(match.group(1))
    assert forked < 40


FORK_LOOP = """
import os, sys, time
n = 0
while n < 200:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(float(sys.argv[1]))
        os._exit(0)
    n += 1
print(n, flush=True)
"""


@needs_bwrap
@pytest.mark.skipif(not ROOT, reason="needs root to stand in for a non-root user (setpriv)")
@pytest.mark.skipif(not sandbox.per_namespace_nproc(), reason="Linux < 5.14")
async def test_without_root_the_process_limit_is_still_per_terminal() -> None:
    """webterm not run as root: every sandbox has webterm's own uid. The limit set
    inside each sandbox's user namespace still holds per terminal: one terminal at its
    limit leaves the next one its own. (Root stands in for that user with setpriv.)"""
    files = tempfile.mkdtemp(prefix="webterm-test-")  # the user must reach it
    sandbox.write_account_files(files, "t")
    user = sandbox.pick_uid_base(1)
    as_user = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--"]

    def argv(hold: str) -> list[str]:
        return as_user + sandbox.wrap(
            ["python3", "-c", FORK_LOOP, hold],
            config=SandboxConfig(processes=40),
            layout=sandbox.host_layout(),
            files_dir=files,
            hostname="t",
            host_uid=None,
        )

    first = await trio.lowlevel.open_process(argv("20"), stdout=subprocess.PIPE)
    try:
        assert first.stdout is not None
        with trio.fail_after(30):
            held = int(await first.stdout.receive_some(100))  # its children keep holding
            second = await trio.run_process(argv("0"), capture_stdout=True)
    finally:
        first.kill()  # its sh: bwrap and the whole sandbox die with it
        await first.wait()
        shutil.rmtree(files)
    assert 20 < held < 40
    assert 20 < int(second.stdout) < 40  # not starved by the first terminal's processes


@needs_bwrap
@pytest.mark.skipif(not ROOT, reason="a fork bomb is bounded per terminal only under root")
async def test_a_fork_bomb_stays_inside_its_sandbox() -> None:
    limit = 48
    async with sandboxed(processes=limit) as http:
        bomb_answer = await allocate(http, "tab:bomb")
        other_answer = await allocate(http, "tab:other")
        async with shell(bomb_answer) as bomb, shell(other_answer) as other:
            await other.run("true")
            await bomb.ws.send_message(b":(){ :|:& };:\n")
            with trio.fail_after(30):  # the bomb is running: its uid holds many processes
                while max((counts := process_counts()).values()) < limit // 2:
                    await trio.sleep(0.2)
            bomb_uid = max(counts, key=lambda uid: counts[uid])
            for _ in range(3):
                assert "ECHO-2" in await other.run("echo ECHO-$((1+1))", "ECHO-2")
                await trio.run_process(["true"])  # the host still forks
                counts = process_counts()
                # the limit counts the sandbox's own processes; sh and bwrap outside it
                # share its host uid
                assert counts[bomb_uid] <= limit + 2
                assert sum(n for uid, n in counts.items() if uid != bomb_uid) < 10
    with trio.fail_after(20):  # the manager's end killed the whole sandbox
        while running_as({bomb_uid}):
            await trio.sleep(0.2)


def process_counts() -> dict[int, int]:
    return {uid: len(processes) for uid, processes in sandbox_processes().items()}


def running_as(uids: set[int]) -> list[psutil.Process]:
    """Live processes (on the whole host) whose real uid is one of ``uids``."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.uids().real in uids and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.NoSuchProcess:
            continue
    return found


@needs_bwrap
async def test_the_next_user_gets_an_empty_home_and_nothing_survives() -> None:
    async with sandboxed(max_terminals=1) as http:
        first = await allocate(http, "tab:a")
        async with shell(first) as sh:
            # a daemon that left the shell's session: only the PID namespace's end kills it
            await sh.run("echo secret > ~/mine.txt; echo x > /tmp/left; setsid sleep 600 &")
            with trio.fail_after(10):
                while not (daemons := _sleepers()):
                    await trio.sleep(0.1)
            await sh.ws.send_message(b"exit\n")
            with trio.fail_after(15), pytest.raises(ConnectionClosed):
                while True:
                    await sh.ws.get_message()
        second = await allocate(http, "tab:b")
        assert second["terminal"] == first["terminal"]
        async with shell(second) as sh:
            out = await sh.run(
                "ls ~/mine.txt; echo HOME-$(ls -A ~ | wc -l) TMP-$(ls -A /tmp | wc -l)"
            )
            assert "No such file" in out
            assert "HOME-0 TMP-0" in out
        assert not [p for p in daemons if p.is_running() and p.status() != "zombie"]


def _sleepers() -> list[psutil.Process]:
    found = []
    for processes in sandbox_processes().values():
        for p in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                if p.cmdline() == ["sleep", "600"]:
                    found.append(p)
    return found


@needs_bwrap
async def test_an_idle_sandboxed_shell_stays_alive() -> None:
    """The terminal server spawns its shell from a trio worker thread, which exits
    after 10 idle seconds; bwrap's parent-death signal follows the parent *thread*,
    so bwrap must not be that thread's direct child."""
    async with sandboxed(max_terminals=1) as http:
        answer = await allocate(http, "tab:i")
        async with shell(answer) as sh:
            await sh.run("true")
            await trio.sleep(12)
            assert "ALIVE-2" in await sh.run("echo ALIVE-$((1+1))", "ALIVE-2")


@needs_bwrap
async def test_job_control_and_ctrl_c_work_inside() -> None:
    async with sandboxed() as http:
        answer = await allocate(http, "tab:j")
        async with shell(answer) as sh:
            first = await sh.run("sleep 300 & jobs")
            assert "no job control" not in first
            assert "Running" in first
            await sh.ws.send_message(b"bash -c 'echo RE''ADY; exec sleep 300'\n")
            await sh.expect("READY")
            await sh.ws.send_message(b"\x03")
            assert "STATUS-130" in await sh.run("echo STATUS-$?")
            await sh.ws.send_message(b"bash -c 'echo ST''OPME; exec sleep 300'\n")
            await sh.expect("STOPME")
            await sh.ws.send_message(b"\x1a")
            await sh.expect("Stopped")
            out = await sh.run("jobs; kill %1 %2; fg 2>/dev/null; jobs")
            assert "sleep 300" in out


@needs_bwrap
async def test_memory_disk_and_file_limits_are_in_force() -> None:
    async with sandboxed(memory_bytes=64 * MiB, tmpfs_bytes=2 * MiB, open_files=100) as http:
        answer = await allocate(http, "tab:l")
        async with shell(answer) as sh:
            out = await sh.run("echo FILES-$(ulimit -n) AS-$(ulimit -v)")
            assert f"FILES-100 AS-{64 * 1024}" in out
            out = await sh.run("head -c 3M /dev/zero > ~/big; head -c 3M /dev/zero > /tmp/big")
            assert out.count("No space left on device") == 2
            out = await sh.run("python3 -c 'bytearray(100 << 20)' 2>&1 | tail -1")
            assert "MemoryError" in out


# --- webterm up ---------------------------------------------------------------------------------


def test_up_warns_only_when_unconfined_off_loopback() -> None:
    assert unconfined_warning(UpConfig(host="127.0.0.1")) is None
    warning = unconfined_warning(UpConfig(host="0.0.0.0", sandbox="none"))
    assert warning is not None
    assert "--sandbox none on 0.0.0.0" in warning


@needs_bwrap
async def test_up_with_sandbox_bwrap_serves_sandboxed_shells() -> None:
    with webterm_up("--sandbox", "bwrap", "--spares", "1", "--max-terminals", "1") as base:
        answer = httpx.post(f"{base}/api/terminal", json={}, timeout=30).json()
        async with open_websocket_url(
            answer["url"],
            subprotocols=subprotocols_for(answer["token"]),
            extra_headers=[(b"origin", base.encode())],
        ) as ws:
            out = await Shell(ws).run("echo WHO-$(id -un)-$(hostname)")
        assert f"WHO-user-{answer['terminal']}" in out
        log = RUNNING_LOGS[-1].read_text()
        assert "terminals are sandboxed (bwrap): network host" in log


def test_up_without_bwrap_fails_at_start_saying_how_to_install_it(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path), "WEBTERM_SANDBOX": "bwrap"}
    result = subprocess.run(
        [sys.executable, "-m", "webterm", "up", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "webterm is up" not in result.stdout
    assert "apt-get install bubblewrap" in result.stderr
    assert "--sandbox none" in result.stderr
