"""File names and the upload writer, on real directories (no server)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from webterm.pty.downloads import OFFER_TTL, Downloads, DownloadScanner, Offer, Request
from webterm.pty.files import (
    MAX_NAME_BYTES,
    BadFileName,
    NameTaken,
    NoSpace,
    NotWritable,
    Owner,
    TooLarge,
    UploadWriter,
    candidates,
    disk_usage,
    process_owner,
    sanitize_name,
    storage_quota,
)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("report.pdf", "report.pdf"),
        ("dir/sub/notes.txt", "notes.txt"),
        ("C:\\Users\\me\\photo.jpg", "photo.jpg"),
        ("../../etc/passwd", "passwd"),
        ("-rf", "_rf"),
        ("--help", "__help"),
        (".bashrc", "_bashrc"),
        (".webterm-upload-00000000.part", "_webterm-upload-00000000.part"),
        ("  spaced name.txt ", "spaced name.txt"),
        ("caf\u0065\u0301.txt", "caf\u00e9.txt"),  # NFC
    ],
)
def test_a_name_keeps_its_last_component_and_loses_what_could_hurt(sent: str, kept: str) -> None:
    assert sanitize_name(sent) == kept


@pytest.mark.parametrize(
    "sent", ["", ".", "..", "a/..", "dir/", "a\x00b", "line\nbreak", "tab\tname", "bell\x07",
             "rtl\u202eexe.txt", "x" * (MAX_NAME_BYTES + 1), "\udcff.txt"],
)  # fmt: skip
def test_a_name_that_cannot_be_made_safe_is_refused(sent: str) -> None:
    with pytest.raises(BadFileName):
        sanitize_name(sent)


def test_a_name_at_the_length_limit_is_kept_and_its_variants_fit() -> None:
    name = "é" * (MAX_NAME_BYTES // 2 - 2) + ".txt"
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert sanitize_name(name) == name
    for variant in candidates(name)[:20]:
        assert len(variant.encode()) <= MAX_NAME_BYTES
    assert candidates("a.tar.gz")[1:3] == ["a.tar (1).gz", "a.tar (2).gz"]
    assert candidates("Makefile")[1] == "Makefile (1)"


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield tmp_path, fd
    os.close(fd)


def me() -> Owner:
    return process_owner(os.getpid())


async def test_an_upload_appears_whole_under_its_name_with_the_umask(
    directory: tuple[Path, int],
) -> None:
    path, fd = directory
    owner = Owner(os.getuid(), os.getgid(), 0o027)
    with UploadWriter(fd, "data.bin", limit=1 << 20, owner=owner) as writer:
        writer.open(6)
        writer.write(b"abc")
        assert [p.name for p in path.iterdir()] == [writer.part]  # only the dot-named part
        assert writer.part is not None
        assert writer.part.startswith(".webterm-upload-")
        writer.write(b"def")
        assert await writer.commit() == "data.bin"
    assert sorted(p.name for p in path.iterdir()) == ["data.bin"]
    assert (path / "data.bin").read_bytes() == b"abcdef"
    assert (path / "data.bin").stat().st_mode & 0o777 == 0o640


async def test_an_existing_file_is_never_replaced(directory: tuple[Path, int]) -> None:
    path, fd = directory
    (path / "notes.txt").write_text("mine")
    (path / "notes (1).txt").write_text("mine too")
    with UploadWriter(fd, "notes.txt", limit=100, owner=me()) as writer:
        writer.open(None)
        writer.write(b"new")
        assert await writer.commit() == "notes (2).txt"
    assert (path / "notes.txt").read_text() == "mine"
    assert (path / "notes (1).txt").read_text() == "mine too"
    assert (path / "notes (2).txt").read_text() == "new"


async def test_an_upload_with_no_free_name_is_refused(
    directory: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, fd = directory
    monkeypatch.setattr("webterm.pty.files.MAX_RENAMES", 2)
    for name in ("x", "x (1)", "x (2)"):
        (path / name).write_text(name)
    with UploadWriter(fd, "x", limit=100, owner=me()) as writer:
        writer.open(None)
        writer.write(b"new")
        with pytest.raises(NameTaken):
            await writer.commit()
    assert sorted(p.name for p in path.iterdir()) == ["x", "x (1)", "x (2)"]


def test_an_aborted_upload_leaves_nothing(directory: tuple[Path, int]) -> None:
    path, fd = directory
    with (
        pytest.raises(ConnectionError),
        UploadWriter(fd, "big.iso", limit=1 << 20, owner=me()) as w,
    ):
        w.open(1000)
        w.write(b"x" * 500)
        raise ConnectionError("the client went away")
    assert list(path.iterdir()) == []


def test_over_the_limit_is_refused_before_and_while_writing(directory: tuple[Path, int]) -> None:
    path, fd = directory
    with UploadWriter(fd, "a", limit=10, owner=me()) as writer, pytest.raises(TooLarge):
        writer.open(11)  # declared too large: refused before a file exists
    assert list(path.iterdir()) == []
    with UploadWriter(fd, "a", limit=10, owner=me()) as writer, pytest.raises(TooLarge):
        writer.open(None)  # not declared (chunked): refused once it gets there
        writer.write(b"x" * 6)
        writer.write(b"x" * 6)
    assert list(path.iterdir()) == []


def test_more_than_the_filesystem_has_free_is_refused(directory: tuple[Path, int]) -> None:
    path, fd = directory
    vfs = os.fstatvfs(fd)
    free = vfs.f_bavail * vfs.f_frsize
    with UploadWriter(fd, "a", limit=free * 4, owner=me()) as writer, pytest.raises(NoSpace):
        writer.open(free * 2)
    with UploadWriter(fd, "a", limit=free * 4, owner=me()) as writer, pytest.raises(NoSpace):
        writer.open(None)
        writer.write(memoryview(bytearray(64)))
        writer._room = 0  # as if the free space was used meanwhile: look again
        writer.write(_Huge(free * 2))  # type: ignore[arg-type]
    assert list(path.iterdir()) == []


async def test_a_storage_limit_the_filesystem_does_not_show_is_kept(
    directory: tuple[Path, int],
) -> None:
    path, fd = directory
    (path / "sub").mkdir()
    (path / "sub" / "old.bin").write_bytes(b"o" * 40_000)
    used = disk_usage(str(path))
    assert used >= 40_000
    quota = await storage_quota(fd, (("/nonexistent", 1), (str(path), used + 50_000)))
    assert quota == 50_000
    assert await storage_quota(fd, (("/proc", 10),)) is None  # another filesystem
    with UploadWriter(fd, "a", limit=1 << 30, owner=me(), quota=quota) as w, pytest.raises(NoSpace):
        w.open(60_000)  # declared: refused before a byte is written
    with UploadWriter(fd, "a", limit=1 << 30, owner=me(), quota=quota) as writer:
        writer.open(None)
        writer.write(b"x" * 30_000)
        with pytest.raises(NoSpace):
            writer.write(b"x" * 30_000)  # past the quota while writing
    assert names(path) == ["sub"]


def names(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


class _Huge:
    """Claims a length it does not hold: the check comes before any write."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


@pytest.mark.skipif(os.geteuid() != 0, reason="writing as another user needs root")
async def test_as_root_an_upload_is_written_as_the_shell_user_and_only_where_it_may(
    directory: tuple[Path, int],
) -> None:
    path, fd = directory
    stranger = Owner(4242, 4343, 0o022)
    os.chmod(path, 0o755)  # root's: the stranger may not write here
    with UploadWriter(fd, "a", limit=10, owner=stranger) as writer, pytest.raises(NotWritable):
        writer.open(1)
    os.chmod(path, 0o1777)
    with UploadWriter(fd, "a", limit=10, owner=stranger) as writer:
        writer.open(1)
        writer.write(b"x")
        assert await writer.commit() == "a"
    st = (path / "a").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (4242, 4343, 0o644)
    assert os.geteuid() == 0  # and we are root again


# --- the download helper's escape sequence ---------------------------------------------------


def request_bytes(pid: int, fd: int, name: str, end: bytes = b"\x07") -> bytes:
    return b"\x1b]7731;download;%d;%d;%s%s" % (pid, fd, name.encode().hex().encode(), end)


def test_the_scanner_finds_requests_whole_or_split_between_chunks() -> None:
    data = b"\x1b[31mred\x1b[0m" + request_bytes(42, 3, "a b.txt") + b"after"
    assert DownloadScanner().feed(data) == [Request(42, 3, "a b.txt")]
    for cut in range(1, len(data)):
        scanner = DownloadScanner()
        assert scanner.feed(data[:cut]) + scanner.feed(data[cut:]) == [Request(42, 3, "a b.txt")]
    st = request_bytes(7, 3, "é", b"\x1b\\")
    assert DownloadScanner().feed(st) == [Request(7, 3, "é")]


def test_the_scanner_ignores_what_is_not_a_request() -> None:
    scanner = DownloadScanner()
    assert scanner.feed(b"\x1b]0;title\x07\x1b]7731;download;x;3;41\x07") == []
    assert scanner.feed(b"plain text") == []


async def test_an_offer_is_taken_once_and_expires_unfetched(autojump_clock: object) -> None:
    import trio

    downloads = Downloads()
    fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(2)]
    for n, fd in enumerate(fds):
        downloads._add(
            Offer(id=f"id-{n}", fd=fd, name="f", size=0, expires=trio.current_time() + OFFER_TTL)
        )
    taken = downloads.take("id-0")
    assert taken is not None
    assert downloads.take("id-0") is None  # once only
    os.close(taken.fd)
    await trio.sleep(OFFER_TTL + 1)
    assert downloads.take("id-1") is None  # expired: its descriptor is closed
    assert not is_open(fds[1])


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError as exc:
        return exc.errno != errno.EBADF
    return True
