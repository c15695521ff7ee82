"""The static site without HTTP: versioning, caching, path safety, content negotiation."""

from __future__ import annotations

import email.utils
import gzip
import os
from pathlib import Path

import pytest

from webterm.webserver.static import StaticSite, accepts_gzip, not_modified


@pytest.fixture
def site(tmp_path: Path) -> StaticSite:
    (tmp_path / "index.html").write_text(
        "<script src='/static/app.js'></script><a href=\"/static/app.js#x\">x</a>"
        '<link href="/static/style.css"><img src="/static/gone.png">'
    )
    (tmp_path / "app.js").write_text("let a = 1;\n" * 300)
    (tmp_path / "style.css").write_text("body{}")
    (tmp_path / "blob.bin").write_bytes(os.urandom(4096))
    return StaticSite(tmp_path)


def test_index_references_carry_the_assets_versions(site: StaticSite) -> None:
    index = site.index()
    assert index is not None
    app, style = site.asset("app.js"), site.asset("style.css")
    assert app is not None
    assert style is not None
    text = index.body.decode()
    assert f"src='/static/app.js?v={app.version}'" in text
    assert f'href="/static/style.css?v={style.version}"' in text
    assert 'href="/static/app.js#x"' in text  # fragments and queries are left alone
    assert 'src="/static/gone.png"' in text
    assert index.content_type == "text/html; charset=utf-8"


def test_changed_files_are_read_again(site: StaticSite) -> None:
    before = site.asset("app.js")
    index_before = site.index()
    path = site.root / "app.js"
    path.write_text("changed")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    after = site.asset("app.js")
    assert before is not None
    assert after is not None
    assert index_before is not None
    assert after.body == b"changed"
    assert after.version != before.version
    index_after = site.index()
    assert index_after is not None
    assert index_after.etag != index_before.etag
    assert site.asset("app.js") is after  # unchanged since: the cached copy


def test_compression_only_where_it_helps(site: StaticSite) -> None:
    app, style, blob = site.asset("app.js"), site.asset("style.css"), site.asset("blob.bin")
    assert app is not None
    assert app.gzipped is not None
    assert gzip.decompress(app.gzipped) == app.body
    assert app.gzip_etag != app.etag
    assert style is not None
    assert style.gzipped is None
    assert blob is not None
    assert blob.gzipped is None
    assert blob.content_type == "application/octet-stream"


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../x", "a//b", ".hidden", "x/../../etc/passwd", "a\\b", "a\x00b", "x" * 4096],
)
def test_only_plain_relative_names_inside_the_root(site: StaticSite, name: str) -> None:
    assert site.asset(name) is None


def test_missing_index(tmp_path: Path) -> None:
    assert StaticSite(tmp_path).index() is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("br, gzip;q=0.5", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("deflate, br", False),
        ("GZIP", True),
        ("gzip;q=abc", False),
    ],
)
def test_accepts_gzip(header: str | None, expected: bool) -> None:
    assert accepts_gzip(header) is expected


def test_conditional_requests() -> None:
    modified = email.utils.formatdate(1_700_000_000, usegmt=True)
    later = email.utils.formatdate(1_700_000_100, usegmt=True)
    earlier = email.utils.formatdate(1_699_999_000, usegmt=True)
    assert not_modified('"v1"', modified, '"v1"', None)
    assert not_modified('"v1"', modified, 'W/"v1"', None)
    assert not_modified('"v1"', modified, '"v0", "v1"', None)
    assert not_modified('"v1"', modified, "*", None)
    assert not not_modified('"v1"', modified, '"v2"', later)  # If-None-Match decides
    assert not_modified('"v1"', modified, None, later)
    assert not_modified('"v1"', modified, None, modified)
    assert not not_modified('"v1"', modified, None, earlier)
    assert not not_modified('"v1"', modified, None, "yesterday")
    assert not not_modified('"v1"', modified, None, None)
