"""Keep the terminal server's memory away from the shell it serves.

The shell runs as the same user as the server, so by default it could read the server's
``/proc/<pid>/environ`` and ``/proc/<pid>/mem`` or ptrace it — and find the token-signing
secret there. A *non-dumpable* process is off limits to other processes of its user: those
files become root-owned and ptrace is refused. The shell itself is dumpable again after
``execve``, which is what it should be; it never holds a secret (its environment is
scrubbed of ``WEBTERM_*``).
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
