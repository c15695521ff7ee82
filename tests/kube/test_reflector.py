"""The reflector's timing rules under trio's fake clock (``autojump_clock``): the backoff
grows from 0.8 s to 30 s and is reset by a healthy watch; a watch that ends cleanly at
once with nothing in it is backed off like an error. A scripted stand-in for the
:class:`~webterm.manager.kube.client.KubeClient` plays each watch; times are virtual,
so every number below is exact up to the ±20 % jitter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import trio
import trio.testing

from webterm.manager.kube.client import KubeError
from webterm.manager.kube.pods import Pod, PodInfo, PodList, pod_decoder, pod_list_decoder
from webterm.manager.kube.reflector import (
    BACKOFF_MAX,
    BACKOFF_START,
    HEALTHY_AFTER,
    SHORT_WATCH,
    ReflectorStats,
    reflect,
)


@dataclass
class Watch:
    """One scripted watch: it lasts ``lasts`` seconds, delivers ``events`` pod events at
    its start, then ends cleanly, or with a KubeError if ``fails``."""

    lasts: float = 0.0
    events: int = 0
    fails: bool = False


@dataclass
class ScriptedApi:
    watches: list[Watch]
    list_failures: int = 0
    listed_at: list[float] = field(default_factory=list)
    started_at: list[float] = field(default_factory=list)  # each watch's start
    ended_at: list[float] = field(default_factory=list)  # each watch's end
    done: trio.Event = field(default_factory=trio.Event)

    async def list_pods(self, selector: str) -> PodList:
        self.listed_at.append(trio.current_time())
        if self.list_failures:
            self.list_failures -= 1
            raise KubeError(503, "ServiceUnavailable", "try later")
        return pod_list_decoder.decode(b'{"metadata": {"resourceVersion": "1"}, "items": []}')

    async def watch_pods(
        self, selector: str, resource_version: str, timeout_seconds: int
    ) -> AsyncIterator[list[tuple[str, Pod]]]:
        self.started_at.append(trio.current_time())
        if not self.watches:
            self.done.set()
            await trio.sleep_forever()
        watch = self.watches.pop(0)
        if watch.events:
            pod = pod_decoder.decode(
                b'{"metadata": {"name": "terminal-0", "resourceVersion": "2"}}'
            )
            yield [("MODIFIED", pod)] * watch.events
        await trio.sleep(watch.lasts)
        self.ended_at.append(trio.current_time())
        if watch.fails:
            raise KubeError(0, "WatchBroken", "connection reset")


async def play(api: ScriptedApi) -> ReflectorStats:
    """Run the reflector until the script is over."""
    stats = ReflectorStats()

    async def on_listed(pods: dict[str, PodInfo]) -> None:
        pass

    def on_event(kind: str, pod: PodInfo) -> None:
        pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: reflect(api, "app=t", on_listed, on_event, stats=stats))  # type: ignore[arg-type]
        await api.done.wait()
        nursery.cancel_scope.cancel()
    return stats


def gaps(api: ScriptedApi) -> list[float]:
    """The pause before each watch after the first: its start minus the last one's end."""
    return [start - end for start, end in zip(api.started_at[1:], api.ended_at, strict=False)]


def assert_pauses(pauses: list[float], backoffs: list[float]) -> None:
    """Each pause is its backoff, give or take the jitter (0 is resumed at once)."""
    assert len(pauses) == len(backoffs)
    for pause, backoff in zip(pauses, backoffs, strict=True):
        assert 0.8 * backoff - 1e-9 <= pause <= 1.2 * backoff + 1e-9, (pauses, backoffs)


def doubling(n: int, start: float = BACKOFF_START) -> list[float]:
    return [min(start * 2**i, BACKOFF_MAX) for i in range(n)]


async def test_errors_back_off_doubling_to_the_cap(autojump_clock: trio.testing.MockClock) -> None:
    api = ScriptedApi([Watch(fails=True)] * 9)
    stats = await play(api)
    expected = doubling(9)
    assert expected[-3:] == [BACKOFF_MAX] * 3
    assert_pauses(gaps(api), expected)
    assert stats.watch_errors == 9


async def test_a_healthy_watch_resets_the_backoff(autojump_clock: trio.testing.MockClock) -> None:
    api = ScriptedApi(
        [Watch(fails=True)] * 4
        + [Watch(lasts=HEALTHY_AFTER + 1, fails=True)]  # broke, but after a healthy while
        + [Watch(fails=True)]
        + [Watch(lasts=HEALTHY_AFTER + 1)]  # ended on time after a healthy while
        + [Watch(fails=True)]
    )
    await play(api)
    assert_pauses(gaps(api), [*doubling(4), *doubling(2), 0.0, BACKOFF_START])


async def test_a_watch_ending_on_time_resumes_at_once_and_keeps_the_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    api = ScriptedApi([Watch(fails=True)] * 3 + [Watch(lasts=60)] + [Watch(fails=True)])
    await play(api)
    assert gaps(api)[3] == 0  # resumed at once
    assert_pauses(gaps(api), [*doubling(3), 0.0, doubling(4)[-1]])


async def test_a_short_empty_watch_is_backed_off_like_an_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    short = SHORT_WATCH / 2
    api = ScriptedApi(
        [Watch(lasts=short)] * 3  # a server ending every watch at once: backed off
        + [Watch(lasts=short, events=1)]  # brief, but it brought news: resumed at once
        + [Watch(lasts=SHORT_WATCH)]  # not short: resumed at once
        + [Watch(lasts=short)]
    )
    stats = await play(api)
    assert_pauses(gaps(api), [*doubling(3), 0.0, 0.0, doubling(4)[-1]])
    assert stats.watch_errors == 4
    assert stats.events == 1


async def test_a_failing_list_is_backed_off_too(autojump_clock: trio.testing.MockClock) -> None:
    api = ScriptedApi([], list_failures=4)
    await play(api)
    pauses = [b - a for a, b in zip(api.listed_at, api.listed_at[1:], strict=False)]
    assert_pauses(pauses, doubling(4))
