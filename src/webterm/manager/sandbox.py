"""Bubblewrap sandboxes for the local backend's shells: an argv builder and a probe.

Theory of operation
-------------------
The terminal server (``webterm pty``) stays outside the sandbox: it holds the signing
secret, the pty master and the socket. Only the shell goes in. The local backend hands
the server a ``--shell`` that is :func:`wrap` of the real shell::

    setpriv --reuid=U --regid=U --clear-groups -- \\
        /bin/sh -c '"$@"; exit "$?"' webterm-sandbox \\
        bwrap <namespaces> <mounts> --clearenv <env> -- \\
        prlimit --nproc=N:N --as=M:M -- /bin/bash -l

- ``setpriv`` runs only when we are root. It gives the terminal a host uid of its own.
  The kernel exempts a real uid of root from RLIMIT_NPROC. A sandbox started by root
  would therefore have no process limit.
- ``sh`` is there only to be bwrap's parent. bwrap's ``--die-with-parent`` also
  arms the parent-death signal of bwrap itself, and that signal fires when the parent
  *thread* ends. The terminal server starts the shell from one of trio's worker
  threads, which exits after ten idle seconds. So bwrap needs a parent that lives as
  long as the terminal does. It is the session leader, so it gets the SIGHUP when the
  terminal server goes away, however that happens; bwrap and the sandbox die with it.
- ``bwrap`` gives the shell new user, PID, IPC, UTS, cgroup and mount namespaces (and
  a network namespace with only a loopback of its own when the network is ``none``).
  It binds the host's system directories read-only and lets a short list of ``/etc``
  files through (:data:`ETC_ENTRIES`; the accounts are our own, see
  :func:`write_account_files`). ``$HOME``, ``/tmp`` and ``/dev/shm`` are fresh tmpfs
  mounts with size limits, and everything else is read-only. The shell runs as
  ``user`` (uid 1000) with a cleared environment, no capabilities, ``no_new_privs`` and
  no nested user namespaces. The sandbox is killed with its parent
  (``--die-with-parent``). When its first process ends, the PID namespace ends, and
  everything in it is killed.
- ``prlimit`` runs inside the sandbox, after its user namespace exists. It sets
  RLIMIT_NPROC (processes and threads) and RLIMIT_AS (memory, per process). Since Linux
  5.14 the kernel counts RLIMIT_NPROC per user namespace *and* uid, and it checks the
  count against the limit at each level up to the host. The sandbox's own level holds
  only its own processes. A limit set in there is therefore per terminal, even when
  every terminal has the same host uid (not root). The host level is checked against
  the limit its creator had. The terminal server is given its own hard limit for that
  (``--max-processes``), so that level adds no lower cap. The server also sets
  RLIMIT_NOFILE (``--max-open-files``).

No ``--new-session``: the shell must keep the pty as its controlling terminal for job
control and Ctrl-C. The TIOCSTI attack that ``--new-session`` guards against types
into the controlling terminal, and here that is the terminal's own pty, which nothing
outside the sandbox reads as input.

This is not a VM: the kernel is shared (see docs/sandbox.md).
"""

from __future__ import annotations

import glob
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

import trio

from webterm.config import ConfigError, MiB, SandboxConfig, SandboxMode, SandboxNetwork
from webterm.hosts import listens_on_loopback_only
from webterm.pty.downloads import helper_directory

SANDBOX_USER: Final = "user"
SANDBOX_UID: Final = 1000
"""The shell's uid and gid inside the sandbox. It maps to the terminal's host uid."""

SANDBOX_HOME: Final = f"/home/{SANDBOX_USER}"

SHM_BYTES: Final = 64 * MiB
"""Size of the sandbox's ``/dev/shm``. This is Docker's default."""

HOST_UID_FIRST: Final = 0x7000_0000
HOST_UID_LAST: Final = 0x7F00_0000
"""The range we draw terminals' host uids from when we run as root. It is above
systemd's container ranges (which end at 0x6FFFFFFF) and below 2**31. Each backend
draws one block at random, so two ``webterm up`` on one machine are unlikely to
share uids."""

SYSTEM_PATHS: Final = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
"""Bound read-only when they are directories. They are recreated as the same
symlinks when they are symlinks (merged /usr)."""

ETC_ENTRIES: Final = (
    "alternatives", "bash.bashrc", "bash_completion.d", "profile", "profile.d", "inputrc",
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "locale.alias",
    "nsswitch.conf", "hosts", "host.conf", "gai.conf", "services", "protocols",
    "mime.types", "magic", "magic.mime", "terminfo", "vim", "nanorc", "debian_version",
    "os-release", "lsb-release", "login.defs", "manpath.config", "ssl/certs", "perl",
    "python3*",
)  # fmt: skip
"""The ``/etc`` entries a shell and common tools need. ``/etc`` is not bound whole:
webterm often runs as root, and root can read everything there (shadow, ssh host
keys, ssl/private, credentials in package-manager configs)."""

NETWORK_ETC_ENTRIES: Final = ("resolv.conf",)
"""Added with ``--sandbox-network host``."""

HELPER_DIR: Final = "/run/webterm/bin"
"""Where the terminal's helpers (``webterm-download``) appear in the sandbox: the
package's own directory, bound read-only, first on ``PATH``."""

PATH: Final = f"{HELPER_DIR}:/usr/local/bin:/usr/bin:/bin"

PARENT_SCRIPT: Final = '"$@"; exit "$?"'
"""Run bwrap as a child of ``sh``, never exec'd in its place (see the module docstring)."""
INSTALL_HINT: Final = (
    "install bubblewrap 0.8 or newer (Debian/Ubuntu: apt-get install bubblewrap), "
    "or pass --sandbox none: every visitor then gets a shell as this machine's "
    "user, with its files, processes and network"
)


class SandboxUnavailable(ConfigError):
    """The sandbox cannot be started here. The message says why and what to do."""


@dataclass(frozen=True, slots=True)
class HostLayout:
    """What this host's system directories are, as :func:`wrap` needs them."""

    dirs: tuple[str, ...]  # bound read-only
    symlinks: tuple[tuple[str, str], ...]  # (path, target), recreated as is
    etc: tuple[str, ...]  # /etc entries that exist, full paths


def host_layout(etc_entries: Sequence[str] = ETC_ENTRIES + NETWORK_ETC_ENTRIES) -> HostLayout:
    """Read the host's layout. This is a few ``lstat`` calls."""
    dirs, links = [], []
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            links.append((path, os.readlink(path)))
        elif os.path.isdir(path):
            dirs.append(path)
    etc = sorted({p for entry in etc_entries for p in glob.glob(f"/etc/{entry}")})
    return HostLayout(dirs=tuple(dirs), symlinks=tuple(links), etc=tuple(etc))


def choose(
    mode: SandboxMode, host: str, network: SandboxNetwork | None, limits: SandboxConfig
) -> SandboxConfig | None:
    """The sandbox ``webterm up`` runs with, or ``None`` for none. ``auto`` means
    bwrap unless the page listens on loopback only. The network defaults to ``none``
    off loopback and to ``host`` on it."""
    loopback = listens_on_loopback_only(host)
    if mode == "none" or (mode == "auto" and loopback):
        return None
    if network is None:
        network = "host" if loopback else "none"
    return SandboxConfig(
        network=network,
        tmpfs_bytes=limits.tmpfs_bytes,
        memory_bytes=limits.memory_bytes,
        processes=limits.processes,
        open_files=limits.open_files,
        bwrap=limits.bwrap,
    )


def pick_uid_base(count: int, rng: random.Random | None = None) -> int:
    """The first of ``count`` consecutive host uids for terminals (root only)."""
    return (rng or random.Random()).randrange(HOST_UID_FIRST, HOST_UID_LAST - count)


def write_account_files(directory: str | os.PathLike[str], hostname: str) -> None:
    """Write the sandbox's ``passwd``, ``group``, ``hostname`` and ``profile`` into
    ``directory``, and make them readable by the terminal's own uid. They are bound over
    ``/etc``. The host's accounts stay out. ``profile`` is the host's ``/etc/profile``
    with :data:`HELPER_DIR` put first on ``PATH`` after it (a login shell's profile
    sets ``PATH`` anew)."""
    d = Path(directory)
    shell = "/bin/bash" if os.access("/bin/bash", os.X_OK) else "/bin/sh"
    files = {
        "passwd": (
            "root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"{SANDBOX_USER}:x:{SANDBOX_UID}:{SANDBOX_UID}::{SANDBOX_HOME}:{shell}\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
        "group": f"root:x:0:\n{SANDBOX_USER}:x:{SANDBOX_UID}:\nnogroup:x:65534:\n",
        "hostname": f"{hostname}\n",
        "profile": _host_profile() + PROFILE_PATH_LINE,
    }
    for name, text in files.items():
        (d / name).write_text(text)
        (d / name).chmod(0o644)
    d.chmod(0o755)


PROFILE_PATH_LINE: Final = (
    f'\n# webterm: its helpers (webterm-download) first\nPATH="{HELPER_DIR}:$PATH"\nexport PATH\n'
)


def _host_profile() -> str:
    try:
        return Path("/etc/profile").read_text(errors="replace")
    except OSError:
        return ""


def default_shell() -> tuple[str, ...]:
    """The sandboxed shell when ``--shell`` is not given: a bash login shell."""
    return ("/bin/bash", "-l") if os.access("/bin/bash", os.X_OK) else ("/bin/sh", "-l")


def wrap(
    shell: Sequence[str],
    *,
    config: SandboxConfig,
    layout: HostLayout,
    files_dir: str,
    hostname: str,
    host_uid: int | None,
) -> list[str]:
    """The argv that runs ``shell`` in a fresh sandbox (see the module docstring).
    ``files_dir`` holds :func:`write_account_files`' output. ``host_uid`` is the
    terminal's own host uid, or ``None`` to stay our own user (not root)."""
    argv: list[str] = []
    if host_uid is not None:
        argv += [
            "setpriv", f"--reuid={host_uid}", f"--regid={host_uid}", "--clear-groups", "--",
        ]  # fmt: skip
    argv += ["/bin/sh", "-c", PARENT_SCRIPT, "webterm-sandbox"]
    argv += [
        config.bwrap,
        "--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-uts",
        "--unshare-cgroup-try",
        "--disable-userns", "--die-with-parent", "--cap-drop", "ALL",
        "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", hostname,
    ]  # fmt: skip
    if config.network == "none":
        argv.append("--unshare-net")
    for path in layout.dirs:
        argv += ["--ro-bind", path, path]
    for path, target in layout.symlinks:
        argv += ["--symlink", target, path]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--size", str(SHM_BYTES), "--perms", "1777", "--tmpfs", "/dev/shm"]
    argv += ["--dir", "/etc"]
    network_only = {f"/etc/{name}" for name in NETWORK_ETC_ENTRIES}
    for path in layout.etc:
        if config.network == "host" or path not in network_only:
            argv += ["--ro-bind-try", path, path]
    for name in ("passwd", "group", "hostname", "profile"):
        argv += ["--ro-bind", os.path.join(files_dir, name), f"/etc/{name}"]
    size = str(config.tmpfs_bytes)
    argv += ["--size", size, "--perms", "0700", "--tmpfs", SANDBOX_HOME]
    argv += ["--size", size, "--perms", "1777", "--tmpfs", "/tmp"]
    argv += ["--dir", "/var", "--symlink", "../tmp", "/var/tmp"]
    argv += ["--ro-bind", helper_directory(), HELPER_DIR]
    argv += ["--remount-ro", "/dev", "--remount-ro", "/"]
    env = {
        "HOME": SANDBOX_HOME,
        "USER": SANDBOX_USER,
        "LOGNAME": SANDBOX_USER,
        "SHELL": shell[0],
        "PATH": PATH,
        "TERM": "xterm-256color",
        "COLORTERM": "truecolor",
        "LANG": "C.UTF-8",
    }
    argv.append("--clearenv")
    for key, value in env.items():
        argv += ["--setenv", key, value]
    argv += ["--chdir", SANDBOX_HOME, "--"]
    argv += ["prlimit", f"--nproc={config.processes}:{config.processes}"]
    if config.memory_bytes is not None:
        argv.append(f"--as={config.memory_bytes}:{config.memory_bytes}")
    argv += ["--", *shell]
    return argv


def limits_summary(config: SandboxConfig, *, host_uids: str | None) -> str:
    """One log line: which limit is in force, and by which mechanism."""
    controllers = delegated_cgroup_controllers()
    parts = [f"network {config.network}"]
    if not per_namespace_nproc():
        who = f"Linux {os.uname().release} counts it per uid only, not per namespace"
    elif host_uids:
        who = f"counted in its own user namespace, under its own host uid, {host_uids}"
    else:
        who = "counted in its own user namespace"
    parts.append(f"processes {config.processes} per terminal (RLIMIT_NPROC; {who})")
    parts.append(f"open files {config.open_files} per process (RLIMIT_NOFILE)")
    if config.memory_bytes is not None:
        parts.append(f"memory {config.memory_bytes // MiB} MiB per process (RLIMIT_AS)")
    parts.append(f"$HOME and /tmp {config.tmpfs_bytes // MiB} MiB each (tmpfs, in RAM)")
    parts.append(
        "CPU: no limit, the kernel's autogroup shares it between terminals"
        if _autogroup()
        else "CPU: no limit"
    )
    used = ", ".join(sorted(controllers)) or "none"
    parts.append(f"cgroup v2 controllers delegated to us: {used} (not used)")
    return "; ".join(parts)


def pid_budget_warning(terminals: int, processes: int, pid_max: int | None = None) -> str | None:
    """A warning when every terminal at its process limit would take more than half of
    the host's pids (``kernel.pid_max``): then fork bombs in all of them starve the host."""
    if pid_max is None:
        try:
            pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
        except (OSError, ValueError):
            return None
    if terminals * processes <= pid_max // 2:
        return None
    return (
        f"--max-terminals {terminals} x --sandbox-processes {processes} is more than half "
        f"of this machine's {pid_max} pids (kernel.pid_max): fork bombs in every terminal "
        "would leave the host none; lower either, or raise kernel.pid_max"
    )


def per_namespace_nproc(release: str | None = None) -> bool:
    """Whether this kernel counts RLIMIT_NPROC per user namespace (Linux 5.14 and later)."""
    numbers = (release or os.uname().release).split("-")[0].split(".")
    try:
        return (int(numbers[0]), int(numbers[1])) >= (5, 14)
    except (IndexError, ValueError):
        return False


def delegated_cgroup_controllers() -> frozenset[str]:
    """The cgroup v2 controllers that our own cgroup could hand to child cgroups we
    create. Empty when there is no unified hierarchy, or when we cannot write to it."""
    try:
        line = next(
            x for x in Path("/proc/self/cgroup").read_text().splitlines() if x.startswith("0::")
        )
    except (OSError, StopIteration):
        return frozenset()
    for mount in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        directory = Path(mount + line[3:].rstrip("/"))
        try:
            controllers = (directory / "cgroup.controllers").read_text().split()
        except OSError:
            continue
        if os.access(directory, os.W_OK):
            return frozenset(controllers)
    return frozenset()


def _autogroup() -> bool:
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


async def probe(config: SandboxConfig, *, host_uid: int | None) -> None:
    """Start one sandbox running ``true``, exactly as terminals will be started. If that
    fails, raise :class:`SandboxUnavailable` with what failed and how to fix it."""
    tools = [config.bwrap, "prlimit"]
    tools += ["setpriv"] if host_uid is not None else []
    for tool in tools:
        if shutil.which(tool) is None:
            hint = INSTALL_HINT if tool == config.bwrap else "install util-linux"
            raise SandboxUnavailable(f"the sandbox needs {tool}, which is not installed: {hint}")
    layout = await trio.to_thread.run_sync(host_layout)
    files_dir = await trio.to_thread.run_sync(
        partial(tempfile.mkdtemp, prefix="webterm-sandbox-probe-")
    )
    try:
        await trio.to_thread.run_sync(write_account_files, files_dir, "probe")
        argv = wrap(
            ["true"],
            config=config,
            layout=layout,
            files_dir=files_dir,
            hostname="probe",
            host_uid=host_uid,
        )
        with trio.fail_after(30):
            result = await trio.run_process(
                argv,
                check=False,
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
                capture_stderr=True,
                cwd="/",
            )
    finally:
        await trio.to_thread.run_sync(shutil.rmtree, files_dir, True)
    if result.returncode != 0:
        said = result.stderr.decode(errors="replace").strip() or f"exit {result.returncode}"
        raise SandboxUnavailable(
            f"cannot start a bubblewrap sandbox ({said}): {INSTALL_HINT}. "
            "bwrap also needs user namespaces: check that sysctl "
            "user.max_user_namespaces is not 0 (and, on Ubuntu, that AppArmor allows "
            "bwrap unprivileged user namespaces)"
        )
