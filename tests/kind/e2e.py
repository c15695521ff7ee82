"""End-to-end tests against webterm on a real kind cluster (`nox -s kind` runs them; the
file name keeps them out of the default suite, which has no cluster). Through the page's
own API and WebSocket proxy: a command runs, a recycle gives a fresh pod, and demand past
the spares scales the StatefulSet."""

from __future__ import annotations

import json
import os
import subprocess

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.kind.run import CONTEXT
from tests.test_up import allocate, run
from webterm.protocol import subprotocols_for

BASE = os.environ.get("WEBTERM_KIND_URL", "")
pytestmark = pytest.mark.skipif(not BASE, reason="run by `nox -s kind` (WEBTERM_KIND_URL)")


def kubectl_json(*args: str) -> dict[str, object]:
    out = subprocess.run(
        ["kubectl", "--context", CONTEXT, "-n", "webterm", *args, "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


async def allocated(client: str | None = None) -> dict[str, str]:
    with trio.fail_after(240):
        while (answer := allocate(BASE, client)).status_code != 200:
            await trio.sleep(1)
    return answer.json()  # type: ignore[no-any-return]


def release(answer: dict[str, str]) -> None:
    httpx.request("DELETE", f"{BASE}/api/terminal", json={"client": answer["client"]})


async def test_a_command_runs_in_a_pod_as_a_non_root_user_without_api_credentials() -> None:
    answer = await allocated()
    out = await run(
        answer,
        BASE,
        "echo U=$(id -u) H=$HOSTNAME; ls /var/run/secrets/kubernetes.io 2>&1; echo DONE-'E2E'",
        "DONE-E2E",
    )
    assert "U=1000" in out
    assert f"H={answer['terminal']}" in out
    assert "No such file or directory" in out  # no service-account token mounted
    release(answer)


async def test_exit_recycles_the_pod_and_the_next_shell_is_fresh() -> None:
    answer = await allocated()
    name = answer["terminal"]
    uid = kubectl_json("get", "pod", name)["metadata"]["uid"]  # type: ignore[index]
    await run(answer, BASE, "echo private > ~/note; echo WROTE-'IT'", "WROTE-IT")
    async with open_websocket_url(
        answer["url"],
        subprotocols=subprotocols_for(answer["token"]),
        extra_headers=[(b"origin", BASE.encode())],
    ) as ws:
        await ws.send_message(b"exit\n")
        with trio.fail_after(30), pytest.raises(ConnectionClosed):
            while True:
                await ws.get_message()
    with trio.fail_after(240):
        while True:
            try:
                pod = kubectl_json("get", "pod", name)
                if pod["metadata"]["uid"] != uid:  # type: ignore[index]
                    break  # the StatefulSet made a new pod under the same name
            except subprocess.CalledProcessError:
                pass
            await trio.sleep(1)
    again = await allocated(answer["client"])
    out = await run(again, BASE, "cat ~/note 2>&1; echo CHECKED-'IT'", "CHECKED-IT")
    assert "private" not in out
    release(again)


async def test_demand_past_the_spares_scales_the_statefulset_up() -> None:
    before = kubectl_json("get", "statefulset", "terminal")["spec"]["replicas"]  # type: ignore[index]
    answers = [await allocated() for _ in range(3)]  # the kind overlay keeps 1 spare
    assert len({answer["terminal"] for answer in answers}) == 3
    for answer in answers:
        assert "READY-3" in await run(answer, BASE, "echo READY-$((1+2))", "READY-3")
    after = kubectl_json("get", "statefulset", "terminal")["spec"]["replicas"]  # type: ignore[index]
    assert after >= 4, (before, after)  # 3 in use + 1 spare
    for answer in answers:
        release(answer)
