from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from .fixtures import KubeApi, kube_api, run_kube_api
from .kubelet import KubeletConfig
from .realism import Realism


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[KubeApi]:
    """A stand-in whose pods have no processes (fake kubelet), on test-speed cluster
    timing (bookmarks every 0.2 s, for the watch tests)."""
    async with run_kube_api(
        tmp_path,
        kubelet=KubeletConfig(mode="fake"),
        realism=Realism.fast(),
        bookmark_interval=0.2,
    ) as running:
        yield running


@pytest.fixture
async def client(api: KubeApi) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client() as c:
        yield c


__all__ = ["api", "client", "kube_api"]
