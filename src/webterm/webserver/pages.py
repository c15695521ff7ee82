"""The page's routes: ``/`` (the built ``index.html``) and ``/static/...``, as Quart
answers to the :class:`~webterm.webserver.static.Asset` values the static site gives
(caching, ETags and gzip are explained in :mod:`webterm.webserver.static`)."""

from __future__ import annotations

from quart import Response, request

from webterm.service.errors import Refusal
from webterm.webserver.static import (
    CACHE_INDEX,
    CACHE_UNVERSIONED,
    CACHE_VERSIONED,
    VERSION_PARAM,
    Asset,
    StaticSite,
    accepts_gzip,
    not_modified,
)


class Pages:
    """The routes' handlers (Quart views, bound to this object)."""

    def __init__(self, site: StaticSite) -> None:
        self.site = site

    async def index(self) -> Response:
        asset = self.site.index()
        if asset is None:
            raise Refusal(404, "the page is not built (no index.html)")
        return _asset_response(asset, CACHE_INDEX)

    async def static_file(self, filename: str) -> Response:
        asset = self.site.asset(filename)
        if asset is None:
            raise Refusal(404, "not found")
        versioned = request.args.get(VERSION_PARAM) == asset.version
        return _asset_response(asset, CACHE_VERSIONED if versioned else CACHE_UNVERSIONED)


def _asset_response(asset: Asset, cache_control: str) -> Response:
    gzipped = asset.gzipped is not None and accepts_gzip(request.headers.get("Accept-Encoding"))
    etag = asset.gzip_etag if gzipped else asset.etag
    headers = {
        "Cache-Control": cache_control,
        "ETag": etag,
        "Last-Modified": asset.last_modified,
        "Vary": "Accept-Encoding",
    }
    if not_modified(
        etag,
        asset.last_modified,
        request.headers.get("If-None-Match"),
        request.headers.get("If-Modified-Since"),
    ):
        return Response(b"", status=304, headers=headers)
    if gzipped:
        assert asset.gzipped is not None
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gzipped, content_type=asset.content_type, headers=headers)
    return Response(asset.body, content_type=asset.content_type, headers=headers)


__all__ = ["Pages"]
