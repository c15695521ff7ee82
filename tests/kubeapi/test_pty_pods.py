"""Pods that run the real ``webterm pty``: the stand-in's default container.

A pod becomes Ready when its terminal server answers GET /healthz on
<podIP>:7681; a browser-side client then opens its WebSocket with a token for that
pod (name + UID) and gets a real shell. Recycling the pod gives a new UID, and the
old token no longer opens the new incarnation."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psutil
import pytest
import trio
from trio_websocket import HandshakeError, WebSocketConnection, open_websocket_url

from webterm.protocol import KeySet, TokenClaims, sign_token, subprotocols_for

from . import resources as R
from .fixtures import KubeApi

HANG_GUARD = 60  # seconds; only so a broken pod cannot hang the suite


def token_for(api: KubeApi, pod: dict) -> str:
    claims = TokenClaims(
        terminal=pod["metadata"]["name"],
        instance=pod["metadata"]["uid"],
        client="c1",
        expires_at=int(time.time()) + 60,
    )
    return sign_token(api.signing_key, claims)


@asynccontextmanager
async def terminal(
    api: KubeApi, pod: dict, token: str | None = None
) -> AsyncIterator[WebSocketConnection]:
    url = f"ws://{pod['status']['podIP']}:7681/ws"
    async with open_websocket_url(
        url, subprotocols=subprotocols_for(token or token_for(api, pod))
    ) as ws:
        yield ws


async def read_until(ws: WebSocketConnection, needle: bytes) -> bytes:
    seen = b""
    while needle not in seen:
        message = await ws.get_message()
        if isinstance(message, bytes):
            seen += message
    return seen


async def test_statefulset_of_webterm_pty(kube_api: KubeApi) -> None:
    api = kube_api
    api.kubelet.extra_args[:] = ["--idle-timeout", "300"]  # e.g. --manager-url, per test
    api.create_terminal_statefulset(replicas=2)
    with trio.fail_after(HANG_GUARD):
        pods = await api.wait_ready_count(2)
        pod = next(p for p in pods if p["metadata"]["name"] == "terminal-0")
        runtime = api.kubelet.runtime("terminal-0")
        assert runtime is not None
        assert runtime.listening == f"{pod['status']['podIP']}:7681"
        process = psutil.Process(runtime.process.pid)  # type: ignore[union-attr]
        assert process.cmdline()[-2:] == ["--idle-timeout", "300"]
        env = process.environ()
        assert env["WEBTERM_INSTANCE"] == pod["metadata"]["uid"]
        # the manager's public keys, and nothing that signs
        assert KeySet.from_jwks(env["WEBTERM_PUBLIC_KEYS"]).keys.keys() == {api.signing_key.kid}
        assert "WEBTERM_SECRET" not in env
        assert not any("PRIVATE KEY" in value for value in env.values())

        async with terminal(api, pod) as ws:
            hello = json.loads(await ws.get_message())
            assert hello == {"type": "hello", "terminal": "terminal-0", "reattached": False}
            await ws.send_message(b"echo pod-$((6*7))\n")
            assert b"pod-42" in await read_until(ws, b"pod-42")

        # recycle: delete the pod; the StatefulSet brings back terminal-0 with a new UID
        old_token = token_for(api, pod)
        api.delete(R.PODS, "terminal-0")
        fresh = await api.wait_pod_ready("terminal-0", not_uid=pod["metadata"]["uid"])
        with pytest.raises(HandshakeError):
            async with terminal(api, fresh, old_token):
                pass
        async with terminal(api, fresh) as ws:
            assert json.loads(await ws.get_message())["terminal"] == "terminal-0"
