"""Keep the terminal server's memory away from the shell it serves.

The shell runs as the same user as the server, so by default it could read the server's
``/proc/<pid>/environ`` and ``/proc/<pid>/mem`` or ptrace it. The server holds no secret
that signs anything (only the manager's public keys), but it does hold the tokens its
browsers connected with: each opens this terminal until it expires and authenticates this
terminal's reports to the manager (recycle). Defence in depth, then, for what only this
terminal's own user could do with them anyway. A *non-dumpable* process is off limits to
other processes of its user: those files become root-owned and ptrace is refused. The
shell itself is dumpable again after ``execve``, which is what it should be (its
environment is scrubbed of ``WEBTERM_*``). ``webterm up`` and a local manager hide
themselves the same way: their terminals' shells run as their user, and they hold the
signing key.
"""

from __future__ import annotations

import ctypes
import sys

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4


def _prctl(option: int, value: int = 0) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    result: int = libc.prctl(option, value, 0, 0, 0)
    if result < 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")
    return result


def hide_from_same_user() -> None:
    """Make this process non-dumpable (Linux; a no-op elsewhere)."""
    if sys.platform == "linux":
        _prctl(PR_SET_DUMPABLE, 0)


def is_dumpable() -> bool:
    return sys.platform != "linux" or _prctl(PR_GET_DUMPABLE) == 1
