"""Files to and from the shell's directory: safe names, the upload writer, whose directory.

Theory of operation
-------------------
An upload lands in the directory the terminal's user is in: the current directory of
the tty's foreground process (the shell itself at its prompt), found through
``/proc/PID/cwd``. That link is opened as a directory, never read as a path, so it
leads to the same directory the shell sees even when the shell runs in a sandbox with
a filesystem view of its own (:mod:`webterm.manager.sandbox`): every later step works
relative to that directory's descriptor (``openat``, ``linkat``).

:class:`UploadWriter` streams the body into a dot-named temporary file
(``.webterm-upload-XXXXXXXX.part``, created with ``O_EXCL``, mode ``0600`` until it is
complete), refuses more than the size limit and more than the filesystem's free space
(checked before and while writing), then ``fsync``s it and links it under its final
name, which never replaces an existing file: ``name.ext`` that exists becomes
``name (1).ext``, ``name (2).ext``... On any error, cancellation or disconnect the
temporary file is removed, so a partial upload is never left as a complete file.

The file gets the shell's umask and is written as the shell's user: when the server runs
as root and the shell as another user (a sandbox's own host uid), every file operation
runs with the thread's filesystem uid and gid set to the shell's (``setfsuid``, which
also drops root's override of file permissions), so the kernel allows exactly what the
shell's user could do there (with the server's supplementary groups), and a file in a
filesystem mounted inside the sandbox's user namespace is created by a uid it maps.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import trio

from webterm.errors import WebtermError

MAX_NAME_BYTES: Final = 255
"""Longest file name, in UTF-8 bytes (what Linux filesystems allow)."""

PART_PREFIX: Final = ".webterm-upload-"
PART_SUFFIX: Final = ".part"

MAX_RENAMES: Final = 1000
"""``name (N).ext`` is tried up to this N before the upload is refused (409)."""

FREE_SPACE_MARGIN: Final = 1024 * 1024
"""Bytes an upload leaves free on the shell's filesystem, so it does not fill it."""


class FileError(WebtermError):
    """A file transfer that cannot go on; ``error_status_hint`` is its HTTP status."""

    error_status_hint = 400


class BadFileName(FileError):
    """A name that is empty, too long, or holds a path, a control character or ``..``."""


class TooLarge(FileError):
    """Over ``--max-upload`` (413)."""

    error_status_hint = 413


class NoSpace(FileError):
    """More than the shell's filesystem has free (507 Insufficient Storage)."""

    error_status_hint = 507


class NameTaken(FileError):
    """Every candidate name exists already (409)."""

    error_status_hint = 409


class NotWritable(FileError):
    """The shell's user could not write into its directory (403)."""

    error_status_hint = 403


class WriteFailed(FileError):
    """The filesystem failed otherwise (500)."""

    error_status_hint = 500


class NoDirectory(FileError):
    """The shell's directory cannot be found: no shell, or it is gone (409)."""

    error_status_hint = 409


def sanitize_name(name: str) -> str:
    """``name`` as a safe file name in one directory, or :class:`BadFileName`.

    A client may send a path (``C:\\x\\y.txt``, ``a/b``): only its last component is
    kept. Refused: an empty name, ``.`` and ``..``, a NUL or any other control
    character, and a name over :data:`MAX_NAME_BYTES` bytes. Leading dashes and dots are
    replaced by ``_``, so the name is neither an option to a command nor hidden (nor one
    of our ``.webterm-upload-`` files). The name is normalised to NFC."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    base = unicodedata.normalize("NFC", base)
    if base in ("", ".", ".."):
        raise BadFileName("no usable file name")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in base):
        raise BadFileName("a file name cannot hold control characters")
    stripped = base.lstrip("-.")
    if stripped != base:
        base = "_" * (len(base) - len(stripped)) + stripped
    if len(base.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise BadFileName(f"a file name is at most {MAX_NAME_BYTES} bytes")
    try:
        base.encode("utf-8")
    except UnicodeEncodeError:
        raise BadFileName("a file name must be valid UTF-8") from None
    return base


def candidates(name: str) -> list[str]:
    """``name``, then ``name (1).ext``, ``name (2).ext``... (each at most the length
    limit: a long stem is cut to make room)."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext, dot = name, "", ""
    names = [name]
    for n in range(1, MAX_RENAMES + 1):
        suffix = f" ({n}){dot}{ext}"
        room = MAX_NAME_BYTES - len(suffix.encode())
        short = stem.encode()[: max(room, 1)].decode("utf-8", "ignore")
        names.append(short + suffix)
    return names


@dataclass(frozen=True, slots=True)
class Owner:
    """Who the shell is: its host uid and gid, and its umask."""

    uid: int
    gid: int
    umask: int


def process_owner(pid: int) -> Owner:
    """The real uid, gid and umask of process ``pid`` (host view, from /proc)."""
    uid = gid = -1
    umask = 0o022
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == "Uid":
                uid = int(value.split()[0])
            elif key == "Gid":
                gid = int(value.split()[0])
            elif key == "Umask":
                umask = int(value.strip(), 8)
    return Owner(uid, gid, umask)


def open_cwd(pid: int) -> int:
    """A descriptor of process ``pid``'s current directory, or :class:`NoDirectory`."""
    try:
        return os.open(f"/proc/{pid}/cwd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise NoDirectory("the shell's current directory cannot be opened") from exc


_LIBC: Final = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def acting_as(owner: Owner | None) -> Iterator[None]:
    """File operations in this block (in this thread: no await inside) are checked and
    owned as ``owner``'s when we are root and it is not; else they are ours."""
    if owner is None or os.geteuid() != 0 or owner.uid == 0:
        yield
        return
    _LIBC.setfsgid(owner.gid)
    _LIBC.setfsuid(owner.uid)
    try:
        yield
    finally:
        _LIBC.setfsuid(os.geteuid())
        _LIBC.setfsgid(os.getegid())


def disk_usage(path: str) -> int:
    """Bytes the files under ``path`` take on its filesystem (as ``du`` counts them, and
    as the kubelet measures an emptyDir against its ``sizeLimit``); run in a thread."""
    total = 0
    device = os.lstat(path).st_dev
    stack = [path]
    while stack:
        with contextlib.suppress(OSError), os.scandir(stack.pop()) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    st = entry.stat(follow_symlinks=False)
                    if st.st_dev != device:
                        continue
                    total += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
    return total


async def storage_quota(dir_fd: int, limits: tuple[tuple[str, int], ...]) -> int | None:
    """What ``--storage-limit PATH=SIZE`` still allows on the filesystem of ``dir_fd``:
    SIZE less what is under PATH, for the PATH on the same filesystem; None when none is.
    For storage whose limit its filesystem does not show (a Kubernetes emptyDir's
    ``sizeLimit``: exceeding it evicts the pod)."""
    device = os.fstat(dir_fd).st_dev
    for path, size in limits:
        try:
            if os.stat(path).st_dev != device:
                continue
        except OSError:
            continue
        return size - await trio.to_thread.run_sync(disk_usage, path)
    return None


def free_bytes(fd: int) -> int:
    """Bytes an unprivileged user may still write on ``fd``'s filesystem."""
    vfs = os.fstatvfs(fd)
    return vfs.f_bavail * vfs.f_frsize


class UploadWriter:
    """One upload into ``dir_fd`` (see the module docstring). Use as a context
    manager: leaving it without :meth:`commit` removes the temporary file."""

    def __init__(
        self, dir_fd: int, name: str, *, limit: int, owner: Owner | None, quota: int | None = None
    ) -> None:
        self.dir_fd = dir_fd
        self.name = sanitize_name(name)
        self.limit = limit
        self.quota = quota  # bytes the storage's own limit still allows (see storage_quota)
        self.owner = owner
        self.written = 0
        self.part: str | None = None
        self._fd: int | None = None
        self._room = 0  # bytes we may write before looking at the free space again

    def __enter__(self) -> UploadWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()

    def open(self, expected: int | None) -> None:
        """Create the temporary file; refuse at once a declared size over the limit or
        the free space."""
        if expected is not None:
            self._check(expected)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        for _ in range(8):
            part = f"{PART_PREFIX}{secrets.token_hex(4)}{PART_SUFFIX}"
            try:
                with acting_as(self.owner):
                    self._fd = os.open(part, flags, 0o600, dir_fd=self.dir_fd)
            except FileExistsError:
                continue
            except OSError as exc:
                raise _os_error(exc) from exc
            self.part = part
            break
        else:  # pragma: no cover - eight random names taken
            raise NameTaken("no temporary name is free")

    def _check(self, total: int) -> None:
        if total > self.limit:
            raise TooLarge(f"the upload is larger than the limit of {self.limit} bytes")
        if total - self.written > self._available():
            raise NoSpace("the shell's storage has not that much free space")

    def _available(self) -> int:
        """Bytes that may still be written: the filesystem's free space (less a margin),
        and no more than the storage's quota."""
        free = free_bytes(self.dir_fd) - FREE_SPACE_MARGIN
        return free if self.quota is None else min(free, self.quota - self.written)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``; :class:`TooLarge` or :class:`NoSpace` past the limits."""
        if self._fd is None:
            raise RuntimeError("open() first")
        if self.written + len(data) > self.limit:
            raise TooLarge(f"the upload is larger than the limit of {self.limit} bytes")
        if len(data) > self._room:
            free = self._available()
            if len(data) > free:
                raise NoSpace("the shell's storage has no more free space")
            self._room = free // 2  # look again once half of it is used
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise _os_error(exc) from exc
        self.written += len(data)
        self._room -= len(data)

    async def commit(self) -> str:
        """fsync, give the file its final mode and name; the name it got."""
        fd, part = self._fd, self.part
        if fd is None or part is None:
            raise RuntimeError("open() first")
        umask = self.owner.umask if self.owner is not None else _own_umask()
        try:
            with acting_as(self.owner):
                os.fchmod(fd, 0o666 & ~umask)
            await trio.to_thread.run_sync(os.fsync, fd)
        except OSError as exc:
            raise _os_error(exc) from exc
        for candidate in candidates(self.name):
            try:
                with acting_as(self.owner):
                    os.link(part, candidate, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            except FileExistsError:
                continue
            except OSError as exc:
                raise _os_error(exc) from exc
            self.abort()  # the temporary name goes; the file stays under its own
            with contextlib.suppress(OSError):
                os.fsync(self.dir_fd)
            return candidate
        raise NameTaken(f"{self.name!r} and {MAX_RENAMES} numbered variants exist")

    def abort(self) -> None:
        """Close and remove the temporary file (idempotent)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self.part is not None:
            with contextlib.suppress(OSError), acting_as(self.owner):
                os.unlink(self.part, dir_fd=self.dir_fd)
            self.part = None


def _own_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _os_error(exc: OSError) -> FileError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace("the shell's filesystem is full")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return NotWritable("the shell's current directory is not writable")
    if exc.errno == errno.ENAMETOOLONG:
        return BadFileName("the file name is too long")
    return WriteFailed(f"the file could not be written ({errno.errorcode.get(exc.errno or 0)})")


__all__ = [
    "BadFileName",
    "FileError",
    "NameTaken",
    "NoDirectory",
    "NoSpace",
    "NotWritable",
    "Owner",
    "TooLarge",
    "UploadWriter",
    "WriteFailed",
    "acting_as",
    "candidates",
    "disk_usage",
    "open_cwd",
    "process_owner",
    "sanitize_name",
    "storage_quota",
]
