"""Uploads into the shell's directory and webterm-download, against a real terminal
server with a real shell: real HTTP clients (httpx, and a raw socket for a cut-off
upload), real WebSocket clients."""

from __future__ import annotations

import os
import shlex
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import psutil
import trio

from tests.pty.test_terminal import Client, connect, make_token, pty_config, running_server


def names(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def auth(token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token() if token is None else token}"}


async def upload(port: int, name: str, body: bytes, token: str | None = None) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.put(
            f"http://127.0.0.1:{port}/files/{quote(name, safe='')}",
            content=body,
            headers=auth(token),
        )


async def cd(client: Client, path: Path) -> None:
    await client.expect_control("hello")
    await client.run(f"cd {shlex.quote(str(path))} && echo 'IN''-DIR'", "IN-DIR")


async def wait_for_prompt_after(client: Client, marker: str) -> None:
    await client.run(f"echo '{marker[:2]}''{marker[2:]}'", marker)


async def test_an_upload_lands_in_the_shells_directory_after_cd(tmp_path: Path) -> None:
    target = tmp_path / "work dir"
    target.mkdir()
    async with running_server(pty_config()) as port, connect(port) as client:
        await cd(client, target)
        answer = await upload(port, "hello.txt", b"hello, shell\n")
        assert answer.status_code == 201
        assert answer.json() == {"name": "hello.txt", "size": 13}
        again = await upload(port, "hello.txt", b"second\n")
        assert again.json() == {"name": "hello (1).txt", "size": 7}
        out = await client.run("cat hello.txt 'hello (1).txt'; echo 'CAT''-DONE'", "CAT-DONE")
        assert b"hello, shell\r\nsecond\r\n" in out
    assert names(target) == ["hello (1).txt", "hello.txt"]


async def test_other_terminals_and_forged_tokens_are_refused(tmp_path: Path) -> None:
    async with running_server(pty_config()) as port, connect(port) as client:
        await cd(client, tmp_path)
        other_terminal = await upload(port, "x", b"x", make_token(terminal="terminal-1"))
        old_instance = await upload(port, "x", b"x", make_token(instance="uid-0"))
        forged = make_token()[:-4] + "AAAA"
        assert (await upload(port, "x", b"x", forged)).status_code == 401
        assert other_terminal.status_code == old_instance.status_code == 403
        async with httpx.AsyncClient() as http:
            bare = await http.put(f"http://127.0.0.1:{port}/files/x", content=b"x")
            assert bare.status_code == 401
            stolen = await http.get(
                f"http://127.0.0.1:{port}/files/download/anything",
                headers=auth(make_token(terminal="terminal-1")),
            )
            assert stolen.status_code == 403
    assert names(tmp_path) == []


async def test_an_upload_over_the_limit_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    async with (
        running_server(pty_config(max_upload=1000)) as port,
        connect(port) as client,
    ):
        await cd(client, tmp_path)
        declared = await upload(port, "big.bin", b"x" * 1001)
        assert declared.status_code == 413

        async def chunks() -> AsyncIterator[bytes]:  # chunked: no length declared
            for _ in range(3):
                yield b"y" * 400

        async with httpx.AsyncClient() as http:
            streamed = await http.put(
                f"http://127.0.0.1:{port}/files/big.bin", content=chunks(), headers=auth()
            )
        assert streamed.status_code == 413
        assert (await upload(port, "small.bin", b"z" * 1000)).status_code == 201
    assert names(tmp_path) == ["small.bin"]


async def test_an_upload_past_the_storage_limit_is_refused_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    config = pty_config(storage_limits=((str(tmp_path), 64 * 1024),))
    async with running_server(config) as port, connect(port) as client:
        await cd(client, tmp_path)
        assert (await upload(port, "fits.bin", b"f" * 16 * 1024)).status_code == 201
        full = await upload(port, "too-much.bin", b"t" * 64 * 1024)
        assert full.status_code == 507
        assert "free space" in full.json()["error"]
    assert names(tmp_path) == ["fits.bin"]


async def test_an_upload_cut_off_midway_leaves_no_file(tmp_path: Path) -> None:
    async with running_server(pty_config()) as port, connect(port) as client:
        await cd(client, tmp_path)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        head = (
            f"PUT /files/cut.bin HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {make_token()}\r\nContent-Length: 1000000\r\n\r\n"
        )
        await stream.send_all(head.encode() + b"x" * 300_000)
        with trio.fail_after(10):  # the part file exists while the body comes in
            while not any(n.endswith(".part") for n in names(tmp_path)):
                await trio.sleep(0.05)
        await stream.aclose()  # the client goes away
        with trio.fail_after(10):
            while names(tmp_path):
                await trio.sleep(0.05)
        # and the server goes on serving
        assert (await upload(port, "after.bin", b"ok")).status_code == 201
    assert names(tmp_path) == ["after.bin"]


async def test_bad_names_are_refused(tmp_path: Path) -> None:
    async with running_server(pty_config()) as port, connect(port) as client:
        await cd(client, tmp_path)
        for name in ("%2E%2E", "a%00b", "line%0Abreak", "%FF"):
            async with httpx.AsyncClient() as http:
                answer = await http.put(
                    f"http://127.0.0.1:{port}/files/{name}", content=b"x", headers=auth()
                )
            assert answer.status_code == 400, name
        escaped = await upload(port, "../../escape.txt", b"x")  # %2F: one path segment
        assert escaped.json()["name"] == "escape.txt"
    assert names(tmp_path) == ["escape.txt"]


async def test_webterm_download_offers_a_file_the_page_fetches_once(tmp_path: Path) -> None:
    (tmp_path / "report é.txt").write_bytes(b"the report\n" * 1000)
    async with running_server(pty_config()) as port, connect(port) as client:
        await cd(client, tmp_path)
        await client.run("webterm-download 'report é.txt'; echo 'DL''-DONE'", "DL-DONE")
        assert b"sent to the browser" in client.output
        offer = await client.expect_control("download")
        assert offer["name"] == "report é.txt"
        assert offer["size"] == 11_000
        url = f"http://127.0.0.1:{port}/files/download/{offer['id']}"
        async with httpx.AsyncClient() as http:
            got = await http.get(url, headers=auth())
            assert got.status_code == 200
            assert got.content == b"the report\n" * 1000
            assert "filename*=UTF-8''report%20%C3%A9.txt" in got.headers["content-disposition"]
            assert (await http.get(url, headers=auth())).status_code == 404  # once only


async def test_webterm_download_of_what_the_shell_cannot_read_offers_nothing(
    tmp_path: Path,
) -> None:
    async with running_server(pty_config()) as port, connect(port) as client:
        await cd(client, tmp_path)
        out = await client.run('webterm-download missing.txt /proc; echo "STA""TUS=$?"', "STATUS=1")
        assert b"missing.txt: not a readable file" in out
        assert b"/proc: not a readable file" in out
        # a forged request printed by some other program is not the foreground
        # helper's: it is not answered, and nothing is offered
        secret = tmp_path / "secret"
        secret.write_text("s")
        await client.run(
            f"exec 3<{secret}; printf '\\033]7731;download;%s;3;%s\\007' 1 73; "
            "exec 3<&-; echo 'FORGED''-DONE'",
            "FORGED-DONE",
        )
        await wait_for_prompt_after(client, "LAST-LINE")
        assert not [c for c in client.controls if c["type"] == "download"]


async def test_an_upload_goes_where_the_foreground_program_is(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    async with running_server(pty_config()) as port, connect(port) as client:
        await cd(client, tmp_path)
        await client.ws.send_message(b"(cd a && exec sleep 60)\n")
        with trio.fail_after(10):  # until that sleep runs, in the foreground
            while not any(
                p.info["name"] == "sleep" and p.info["cwd"] == str(tmp_path / "a")
                for p in psutil.process_iter(["name", "cwd"])
            ):
                await trio.sleep(0.05)
        assert (await upload(port, "here.txt", b"x")).status_code == 201
        await client.ws.send_message(b"\x03")
        await wait_for_prompt_after(client, "AFTER-SLEEP")
        assert (await upload(port, "there.txt", b"x")).status_code == 201
    assert (tmp_path / "a" / "here.txt").exists()
    assert (tmp_path / "there.txt").exists()


def test_the_helper_is_a_posix_script_the_package_ships() -> None:
    from webterm.pty.downloads import helper_directory

    helper = Path(helper_directory()) / "webterm-download"
    assert os.access(helper, os.X_OK)
    assert helper.read_text().startswith("#!/bin/sh\n")
