"""Helpers for tests that talk to the stand-in over HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

MERGE = {"content-type": "application/merge-patch+json"}
STRATEGIC = {"content-type": "application/strategic-merge-patch+json"}
JSON_PATCH = {"content-type": "application/json-patch+json"}


class WatchStream:
    """Events of one open watch, parsed; ``ended`` once the server finished it cleanly."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.ended = False

    async def next(self) -> dict[str, Any]:
        """The next event; raises StopAsyncIteration when the server ends the stream."""
        while True:
            try:
                line = await self._lines.__anext__()
            except StopAsyncIteration:
                self.ended = True
                raise
            if line.strip():
                event: dict[str, Any] = json.loads(line)
                return event

    async def aclose(self) -> None:
        await self._lines.aclose()  # type: ignore[attr-defined]

    async def next_not_bookmark(self) -> dict[str, Any]:
        while True:
            event = await self.next()
            if event["type"] != "BOOKMARK":
                return event

    async def rest(self) -> list[dict[str, Any]]:
        """Every event until the server ends the stream."""
        out = []
        while True:
            try:
                out.append(await self.next())
            except StopAsyncIteration:
                return out


@asynccontextmanager
async def open_watch(
    client: httpx.AsyncClient, path: str, **params: Any
) -> AsyncIterator[WatchStream]:
    query = {"watch": "1", **{k: str(v) for k, v in params.items()}}
    async with client.stream("GET", path, params=query, timeout=httpx.Timeout(30.0)) as response:
        assert response.status_code == 200, response.status_code
        stream = WatchStream(response)
        try:
            yield stream
        finally:
            await stream.aclose()


def pod_manifest(name: str, *, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}], **spec},
    }
