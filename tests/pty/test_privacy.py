"""The shell shares the terminal server's uid; it must not read the server's memory or
environment (where the tokens its browsers sent live: they cannot sign anything, but a
token read by another program on the pod could open, or recycle, this terminal)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import ctypes, os, subprocess, sys
    from webterm.pty.privacy import hide_from_same_user, is_dumpable

    if os.geteuid() == 0:  # become an ordinary user, as in a terminal pod
        os.setresgid(65534, 65534, 65534)
        os.setgroups([])
        os.setresuid(65534, 65534, 65534)
    ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # dumpable, as a fresh process is
    me = f"/proc/{os.getpid()}/environ"

    def peek():
        # a sibling of the shell: same uid, no privileges
        return subprocess.run(["cat", me], capture_output=True).returncode

    before = peek()
    hide_from_same_user()
    print(before, peek(), is_dumpable())
    """
)


def test_the_shells_uid_cannot_read_the_servers_environment() -> None:
    """Before hiding, a same-uid process reads /proc/<server>/environ (the probe can tell);
    after, it is refused."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "WEBTERM_SECRET": "s3cret"},
        cwd="/",
        check=True,
    )
    assert result.stdout.split() == ["0", "1", "False"], result
