"""The built page (``index.html``) and its assets under ``/static/``, with caching a
browser can trust.

Theory of operation
-------------------
The frontend build writes plain names (``app.js``, ``app.css``) into the static
directory. Rather than depend on a hashed-filename build, the webserver versions the
assets itself: every ``src``/``href`` in ``index.html`` that points at an existing
``/static/NAME`` is rewritten to ``/static/NAME?v=VERSION``, where VERSION is a prefix
of the file's SHA-256. Then:

* ``/`` (the rewritten index.html) is ``no-cache``: always revalidated (cheap, by
  ETag), so a new release is picked up on the next load;
* ``/static/NAME?v=VERSION`` with the *current* version is ``immutable`` for a year:
  its URL changes whenever its bytes do;
* any other ``/static/`` request (no or stale ``v``) gets a short ``max-age`` plus
  ``ETag`` and ``Last-Modified`` for cheap revalidation.

Files are read once and kept in memory with their digest and, for text types, a gzip
copy; a file is re-read when its size or modification time changes, so a frontend
rebuild during development shows up without a restart. The whole site is a few files
of at most a few hundred KiB, so memory is bounded by the directory itself.

Only regular files strictly inside the static directory are served; dotfiles,
directories, symlinks leading outside, and names the filesystem refuses are all "not
found". Nothing here knows about HTTP frameworks: :class:`StaticSite` returns
:class:`Asset` values and the app turns them into responses.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import mimetypes
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

INDEX: Final = "index.html"

VERSION_PARAM: Final = "v"
VERSION_CHARS: Final = 16
"""Hex characters of SHA-256 in a version: 64 bits, no collision across releases."""

CACHE_INDEX: Final = "no-cache"
CACHE_VERSIONED: Final = "public, max-age=31536000, immutable"
"""A year (the customary maximum): the URL names the exact bytes."""
CACHE_UNVERSIONED: Final = "public, max-age=300"
"""Five minutes, then revalidate by ETag: for assets requested without (or with a stale)
version, e.g. by an old index.html still open in a tab."""

GZIP_MIN_BYTES: Final = 1024
"""Below about a packet, compression saves nothing worth the Content-Encoding."""
GZIP_LEVEL: Final = 6

MAX_FILE_BYTES: Final = 16 * 1024 * 1024
"""A static asset larger than 16 MiB is not part of this page (the bundle is ~500 KiB);
refusing it keeps a misconfigured static directory from filling memory."""

_REFERENCE: Final = re.compile(r"""(\b(?:src|href)=)(["'])/static/([^"'?#]+)\2""")

_COMPRESSIBLE: Final = ("text/", "application/javascript", "application/json", "image/svg+xml")

_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".map": "application/json",
    ".wasm": "application/wasm",
    ".woff2": "font/woff2",
}


@dataclass(frozen=True, slots=True)
class Asset:
    """One file's bytes and what a response needs to say about them."""

    body: bytes
    gzipped: bytes | None
    content_type: str
    version: str  # VERSION_CHARS of the SHA-256 of the original bytes
    last_modified: str  # HTTP date

    @property
    def etag(self) -> str:
        return f'"{self.version}"'

    @property
    def gzip_etag(self) -> str:
        """A distinct strong ETag for the gzip representation (RFC 9110 8.8.3)."""
        return f'"{self.version}-gz"'


@dataclass(frozen=True, slots=True)
class _Entry:
    key: tuple[int, int, int]  # (inode, size, mtime_ns): re-read when any changes
    asset: Asset


class StaticSite:
    """The files of one static directory, read on demand and cached in memory."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._cache: dict[str, _Entry] = {}
        self._index: tuple[tuple[object, ...], Asset] | None = None

    def asset(self, name: str) -> Asset | None:
        """The file ``name`` (relative, ``/``-separated) or None if it is not servable."""
        path = self._path(name)
        if path is None:
            return None
        try:
            info = os.stat(path)
        except (OSError, ValueError):  # missing, name too long, NUL byte...
            return None
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
            return None
        key = (info.st_ino, info.st_size, info.st_mtime_ns)
        entry = self._cache.get(name)
        if entry is not None and entry.key == key:
            return entry.asset
        try:
            body = path.read_bytes()
        except OSError:
            return None
        asset = _make_asset(name, body, info.st_mtime)
        self._cache[name] = _Entry(key, asset)
        return asset

    def index(self) -> Asset | None:
        """``index.html`` with every existing ``/static/NAME`` reference versioned."""
        raw = self.asset(INDEX)
        if raw is None:
            return None
        text = raw.body.decode("utf-8", errors="replace")
        referenced = {m.group(3) for m in _REFERENCE.finditer(text)}
        versions = {name: a.version for name in referenced if (a := self.asset(name)) is not None}
        key = (raw.version, tuple(sorted(versions.items())))
        if self._index is not None and self._index[0] == key:
            return self._index[1]

        def versioned(match: re.Match[str]) -> str:
            attribute, quote, name = match.groups()
            version = versions.get(name)
            if version is None:
                return match.group(0)
            return f"{attribute}{quote}/static/{name}?{VERSION_PARAM}={version}{quote}"

        body = _REFERENCE.sub(versioned, text).encode()
        index = _make_asset(INDEX, body, None, last_modified=raw.last_modified)
        self._index = (key, index)
        return index

    def _path(self, name: str) -> Path | None:
        parts = name.split("/")
        if any(not p or p.startswith(".") or "\\" in p or "\x00" in p for p in parts):
            return None
        path = self.root.joinpath(*parts)
        try:
            real = Path(os.path.realpath(path))
        except (OSError, ValueError):
            return None
        if real == self.root or self.root not in real.parents:
            return None
        return real


def _make_asset(
    name: str, body: bytes, mtime: float | None, *, last_modified: str | None = None
) -> Asset:
    suffix = os.path.splitext(name)[1].lower()
    content_type = _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    if content_type.startswith("text/") and "charset" not in content_type:
        content_type += "; charset=utf-8"
    gzipped = None
    if len(body) >= GZIP_MIN_BYTES and content_type.startswith(_COMPRESSIBLE):
        # mtime=0: the same bytes always compress to the same gzip (stable ETag).
        gzipped = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
        if len(gzipped) >= len(body):
            gzipped = None
    if last_modified is None:
        last_modified = email.utils.formatdate(mtime, usegmt=True)
    return Asset(
        body=body,
        gzipped=gzipped,
        content_type=content_type,
        version=hashlib.sha256(body).hexdigest()[:VERSION_CHARS],
        last_modified=last_modified,
    )


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether ``Accept-Encoding`` allows gzip; ``gzip;q=0`` refuses it."""
    if not accept_encoding:
        return False
    for item in accept_encoding.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        if coding.lower() not in ("gzip", "x-gzip"):
            continue
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


def not_modified(
    etag: str, last_modified: str, if_none_match: str | None, if_modified_since: str | None
) -> bool:
    """RFC 9110 13.2.2: If-None-Match decides when present (weak comparison); otherwise
    If-Modified-Since against the file's modification time."""
    if if_none_match is not None:
        if if_none_match.strip() == "*":
            return True
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return etag in tags
    if if_modified_since is not None:
        try:
            since = email.utils.parsedate_to_datetime(if_modified_since)
            modified = email.utils.parsedate_to_datetime(last_modified)
        except (TypeError, ValueError, IndexError):
            return False
        try:
            return modified <= since
        except TypeError:  # naive vs aware: not a date we understand
            return False
    return False


__all__ = [
    "CACHE_INDEX",
    "CACHE_UNVERSIONED",
    "CACHE_VERSIONED",
    "VERSION_PARAM",
    "Asset",
    "StaticSite",
    "accepts_gzip",
    "not_modified",
]
