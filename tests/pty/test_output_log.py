"""The output log: chunks kept by reference, read back as views, bounded by capacity."""

from __future__ import annotations

import random

import pytest

from webterm.pty.session import OutputLog


def test_reads_span_chunks_and_start_inside_them() -> None:
    log = OutputLog(capacity=1 << 20)
    for part in (b"abc", b"defgh", b"ij"):
        log.append(part)
    assert log.read(0, 100) == (0, b"abcdefghij")
    assert log.read(2, 5) == (2, b"cdefg")
    offset, views = log.read_views(4, 3)
    assert offset == 4
    assert [bytes(v) for v in views] == [b"efg"]
    assert log.read(10, 5) == (10, b"")


def test_a_read_views_the_appended_bytes_without_copying_them() -> None:
    log = OutputLog(capacity=1024)
    chunk = b"x" * 100
    log.append(chunk)
    (view,) = log.read_views(0, 100)[1]
    assert view.obj is chunk


def test_appended_buffers_that_may_change_are_copied() -> None:
    log = OutputLog(capacity=1024)
    data = bytearray(b"before")
    log.append(data)
    data[:] = b"after!"
    assert log.read(0, 10)[1] == b"before"


@pytest.mark.parametrize("capacity", [1, 7, 64, 1000])
def test_the_newest_capacity_bytes_are_kept_whatever_the_chunk_sizes(capacity: int) -> None:
    rng = random.Random(capacity)
    log, everything = OutputLog(capacity), bytearray()
    for _ in range(300):
        part = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 90)))
        log.append(part)
        everything += part
        assert log.end == len(everything)
        assert log.start == max(0, len(everything) - capacity)
        assert log.read(0, 1 << 20) == (log.start, bytes(everything[log.start :]))
        at = rng.randrange(log.start, log.end + 1)
        assert log.read(at, 13) == (at, bytes(everything[at : at + 13]))


def test_a_read_from_before_the_log_starts_where_it_starts() -> None:
    log = OutputLog(capacity=10)
    log.append(b"0123456789")
    log.append(b"abcde")
    assert log.read(0, 4) == (5, b"5678")
