"""Sharing a terminal: an owner and viewers by share links, on a real shell with real
WebSocket clients (the bookkeeping alone, without sockets, is at the end)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from webterm.protocol import (
    MAX_VIEWERS,
    SHARE_AUDIENCE,
    CloseCode,
    ShareClaims,
    SigningKey,
    Size,
    Viewers,
    subprotocols_for,
)
from webterm.pty.attachment import Attachment, Phase
from webterm.pty.connection import NOT_OWNER, RESET, VIEW_ONLY
from webterm.pty.sharing import Sharing

from ..credentials import KEY, share_token
from .test_terminal import INSTANCE, NAME, Client, connect, pty_config, running_server


def share(link: str = "link-a", mode: str = "view", **kw: Any) -> str:
    return share_token(kw.pop("terminal", NAME), kw.pop("instance", INSTANCE), link=link,
                       mode=mode, **kw)  # type: ignore[arg-type]  # fmt: skip


async def closed_code(client: Client) -> int | None:
    with trio.fail_after(15):
        try:
            while True:
                await client.next()
        except ConnectionClosed as closed:
            return None if closed.reason is None else closed.reason.code


async def refused_status(port: int, token: str) -> int:
    with trio.fail_after(10), pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(
            f"ws://127.0.0.1:{port}/ws", subprotocols=subprotocols_for(token)
        ):
            pass
    return rejected.value.status_code


async def test_a_view_only_viewer_sees_the_output_and_its_keys_never_reach_the_shell() -> None:
    async with running_server(pty_config()) as port, connect(port) as owner:
        await owner.expect_control("hello")
        await owner.run("echo ready-$((1+1))", "ready-2")
        async with connect(port, share("link-v")) as viewer:
            assert await viewer.expect_control("hello") == {
                "type": "hello", "terminal": NAME, "reattached": True, "role": "view"
            }  # fmt: skip
            assert await viewer.expect_control("size") == {"type": "size", "cols": 80, "rows": 24}
            listed = await owner.expect_control("viewers")
            assert listed == {
                "type": "viewers",
                "viewers": [{"id": 1, "link": "link-v", "mode": "view"}],
            }
            await viewer.expect(b"ready-2")  # the scrollback, as a reattach gets it

            await viewer.ws.send_message(b"echo VIEWER-$((20+1))\n")
            assert await viewer.expect_control("error") == {"type": "error", "message": VIEW_ONLY}
            out = await owner.run("echo owner-$((3*3))", "owner-9")
            assert b"VIEWER" not in out  # neither echoed by the tty nor run
            seen = await viewer.expect(b"owner-9")  # everyone sees the same output live
            assert b"VIEWER-21" not in seen
        assert await owner.expect_control("viewers") == {"type": "viewers", "viewers": []}


async def test_a_viewer_whose_link_allows_typing_types_into_the_shell() -> None:
    async with running_server(pty_config()) as port, connect(port) as owner:
        await owner.expect_control("hello")
        async with connect(port, share("link-t", "type")) as typist:
            assert (await typist.expect_control("hello"))["role"] == "type"
            await typist.run("echo typist-$((5*5))", "typist-25")
            await owner.expect(b"typist-25")


async def test_the_size_is_the_owners_and_viewers_are_told_it() -> None:
    async with running_server(pty_config()) as port, connect(port) as owner:
        await owner.expect_control("hello")
        async with connect(port, share("link-t", "type")) as viewer:
            await viewer.expect_control("size")
            await viewer.send_json({"type": "resize", "cols": 33, "rows": 11})  # ignored
            await owner.send_json({"type": "resize", "cols": 100, "rows": 30})
            assert await viewer.expect_control("size") == {"type": "size", "cols": 100, "rows": 30}
            out = await viewer.run("stty size; echo sized-$((2*2))", "sized-4")
            assert b"30 100" in out
            assert b"11 33" not in out


async def test_revoking_a_link_closes_its_viewers_at_once_and_refuses_it_after() -> None:
    async with running_server(pty_config()) as port, connect(port) as owner:
        await owner.expect_control("hello")
        async with (
            connect(port, share("link-r")) as revoked,
            connect(port, share("link-k")) as kept,
        ):
            await revoked.expect_control("hello")
            await kept.expect_control("hello")
            await revoked.send_json({"type": "revoke", "link": "link-k"})  # not the owner
            assert await revoked.expect_control("error") == {"type": "error", "message": NOT_OWNER}
            await owner.send_json({"type": "revoke", "link": "link-r"})
            assert await closed_code(revoked) == CloseCode.REVOKED
            with trio.fail_after(15):
                while True:  # the list goes down to the one kept
                    listed = await owner.expect_control("viewers")
                    if [v["link"] for v in listed["viewers"]] == ["link-k"]:  # type: ignore[attr-defined]
                        break
            assert await refused_status(port, share("link-r")) == 403
            await owner.run("echo still-$((6*7))", "still-42")
            await kept.expect(b"still-42")  # another link's viewer is untouched


@pytest.mark.parametrize("acking", [True, False])
async def test_a_viewer_that_never_reads_does_not_stall_the_owner(acking: bool) -> None:
    """A flood of ten times the scrollback: the owner gets all of it while the viewer
    reads nothing; the viewer, once it reads again, is skipped ahead to the end."""
    config = pty_config(scrollback_bytes=256 * 1024)
    async with (
        running_server(config) as port,
        connect(port) as owner,
        connect(port, share()) as viewer,
    ):
        await owner.expect_control("hello")
        await viewer.expect_control("hello")
        if acking:
            await viewer.send_json({"type": "ack", "bytes": 0})  # a window, never opened
        await owner.ws.send_message(
            b"head -c 3000000 /dev/zero | tr '\\0' a; echo; echo flood-$((8*8))\n"
        )
        out = await owner.expect(b"flood-64")
        assert out.count(b"a") >= 3_000_000
        if acking:  # from now on, ack everything at once
            await viewer.send_json({"type": "ack", "bytes": 1 << 30})
            with trio.fail_after(15):
                while b"flood-64" not in viewer.output:
                    before = len(viewer.output)
                    await viewer.next()
                    await viewer.send_json({"type": "ack", "bytes": len(viewer.output) - before})
        seen = await viewer.expect(b"flood-64")
        assert RESET in seen  # skipped ahead, not given the 3 MB it missed
        assert seen.count(b"a") < 1_500_000


async def test_viewers_stay_while_the_owner_reconnects() -> None:
    async with running_server(pty_config()) as port, connect(port) as viewer_owner:
        await viewer_owner.expect_control("hello")
        async with connect(port, share()) as viewer:
            await viewer.expect_control("hello")
            async with connect(port) as owner_again:  # the owner's page reconnects: 4409
                await owner_again.expect_control("hello")
                assert (await owner_again.expect_control("viewers"))["viewers"] == [
                    {"id": 1, "link": "link-a", "mode": "view"}
                ]
                await owner_again.run("echo back-$((7*7))", "back-49")
                await viewer.expect(b"back-49")
                assert await closed_code(viewer_owner) == CloseCode.SUPERSEDED


def _foreign_audience_token() -> str:
    body = {"terminal": NAME, "instance": INSTANCE, "link": "link-a", "mode": "view",
            "exp": int(time.time()) + 60, "aud": "webterm-elsewhere"}  # fmt: skip
    return jwt.encode(body, KEY.private, algorithm="EdDSA", headers={"kid": KEY.kid})


@pytest.mark.parametrize(
    ("why", "token", "status"),
    [
        ("forged", lambda: share(key=SigningKey.of(Ed25519PrivateKey.generate())), 401),
        ("expired", lambda: share(ttl=-5), 401),
        ("other audience", _foreign_audience_token, 403),
        ("other terminal", lambda: share(terminal="terminal-9"), 403),
        ("old instance: the terminal was recycled", lambda: share(instance="uid-0"), 403),
        ("a mode it does not know", lambda: _mode_token("admin"), 401),
    ],
)
async def test_a_bad_share_token_is_refused(why: str, token: Any, status: int) -> None:
    async with running_server(pty_config()) as port:
        assert await refused_status(port, token()) == status, why


def _mode_token(mode: str) -> str:
    body = {"terminal": NAME, "instance": INSTANCE, "link": "link-a", "mode": mode,
            "exp": int(time.time()) + 60, "aud": SHARE_AUDIENCE}  # fmt: skip
    return jwt.encode(body, KEY.private, algorithm="EdDSA", headers={"kid": KEY.kid})


# --- the bookkeeping, without sockets ----------------------------------------------------


def _viewer(link: str, mode: str = "view") -> Attachment:
    claims = ShareClaims(terminal=NAME, instance=INSTANCE, link=link, mode=mode,  # type: ignore[arg-type]
                         expires_at=2_000_000_000)  # fmt: skip
    return Attachment(ws=None, share=claims)  # type: ignore[arg-type]


def test_sharing_numbers_lists_and_revokes_viewers() -> None:
    sharing = Sharing()
    a, b, c = _viewer("one"), _viewer("one"), _viewer("two", "type")
    for att in (a, b, c):
        sharing.add(att)
    assert all(list(att.notices) == [Size(cols=80, rows=24)] for att in (a, b, c))
    assert [(v.id, v.link, v.mode) for v in sharing.listing().viewers] == [
        (1, "one", "view"), (2, "one", "view"), (3, "two", "type")
    ]  # fmt: skip
    assert sharing.revoke("one") == [a, b]
    assert (a.phase, a.end_code, b.phase) == (Phase.TAKEN_OVER, CloseCode.REVOKED, Phase.TAKEN_OVER)
    assert c.phase is Phase.ATTACHED
    assert "one" in sharing.revoked
    assert sharing.remove(a)
    assert not sharing.remove(a)
    assert sharing.revoke("one") == []  # b is already closing
    assert isinstance(sharing.listing(), Viewers)


def test_sharing_tells_viewers_a_new_size_once() -> None:
    sharing = Sharing()
    viewer = _viewer("one")
    sharing.add(viewer)
    viewer.notices.clear()
    assert sharing.resize(120, 40)
    assert not sharing.resize(120, 40)
    sharing.resize(100, 30)
    assert list(viewer.notices) == [Size(cols=100, rows=30)]  # the newer replaced the queued


def test_sharing_is_full_at_max_viewers() -> None:
    sharing = Sharing()
    for _ in range(MAX_VIEWERS - 1):
        sharing.add(_viewer("one"))
    assert not sharing.full
    sharing.add(_viewer("one"))
    assert sharing.full
