"""How a real cluster behaves in time, as one value the stand-in's parts consult.

The defaults are a real cluster's (see README.md, "Timing"): a StatefulSet controller
that acts 0.5-5 s after a change, pods that take 2-30 s from creation to a running
container, readiness/liveness/startup probes run on the pod spec's own periods and
timeouts, a watch cache that keeps about 75 s of history (older resourceVersions get
410 "too old resource version"), and bookmarks about every minute.

:meth:`Realism.fast` is the same behaviour scaled down for test suites: every delay is
still there, jittered, and still long enough to reorder events, and the watch window is
short enough for an outage of a few seconds to hit it. Nothing in it is instant.
:meth:`Realism.instant` is the old idealised stand-in, for the tests of the stand-in's
wire format that must not wait on anything (never for tests of a client's behaviour)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Final

Range = tuple[float, float]

BOOKMARK_BEFORE_TIMEOUT: Final = 2.0
"""Seconds before a watch's timeoutSeconds at which the apiserver sends a last bookmark
(cacheWatcher.nextBookmarkTime), so a client can resume from a fresh version."""


@dataclass(frozen=True, kw_only=True)
class Realism:
    controller_delay: Range = (0.5, 5.0)
    """Seconds between a change and the StatefulSet controller acting on it (informer
    lag, work queue, sync), uniform in the range per sync; changes inside it coalesce."""
    pod_start: Range = (2.0, 30.0)
    """Seconds from a pod's creation to its container running (scheduling, image pull,
    sandbox), log-uniform in the range (most starts are quick, some are slow)."""
    probes_from_spec: bool = True
    """Run readinessProbe/livenessProbe/startupProbe with the pod spec's
    initialDelaySeconds, periodSeconds, timeoutSeconds, successThreshold and
    failureThreshold (Kubernetes defaults where unset). False: the kubelet's own quick
    fixed periods (``KubeletConfig.probe_period``...), readiness only."""
    watch_window: float = 75.0
    """Seconds of change history the watch cache keeps: a watch (or an exact list, or a
    continue token) from an older resourceVersion gets 410 Expired."""
    bookmark_interval: float = 60.0
    """Seconds between BOOKMARK events on a watch that allows them (and one
    ``BOOKMARK_BEFORE_TIMEOUT`` before its timeoutSeconds)."""
    seed: int | None = None
    """Seed of the random delays (None: a fresh one per stand-in)."""
    rng: random.Random = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rng", random.Random(self.seed))
        for name in ("controller_delay", "pod_start"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name}: need 0 <= low <= high, got {(low, high)}")

    @classmethod
    def fast(cls, **overrides: object) -> Realism:
        """A real cluster's behaviour at test speed: controller 0.2-1 s, pod start
        0.5-2 s, probes from the spec, a 10 s watch window, bookmarks every 3 s."""
        base = cls(
            controller_delay=(0.2, 1.0),
            pod_start=(0.5, 2.0),
            probes_from_spec=True,
            watch_window=10.0,
            bookmark_interval=3.0,
        )
        return replace(base, **overrides)  # type: ignore[arg-type]

    @classmethod
    def instant(cls, **overrides: object) -> Realism:
        """The idealised stand-in: 20 ms controller, pods start at once, quick fixed
        probes, history kept by count only, bookmarks every 0.5 s."""
        base = cls(
            controller_delay=(0.02, 0.02),
            pod_start=(0.0, 0.0),
            probes_from_spec=False,
            watch_window=math.inf,
            bookmark_interval=0.5,
        )
        return replace(base, **overrides)  # type: ignore[arg-type]

    def controller_sync_delay(self, override: Range | None = None) -> float:
        low, high = override if override is not None else self.controller_delay
        return self.rng.uniform(low, high)

    def pod_start_delay(self) -> float:
        low, high = self.pod_start
        if high <= 0:
            return 0.0
        if low <= 0:
            return self.rng.uniform(0, high)
        return math.exp(self.rng.uniform(math.log(low), math.log(high)))


__all__ = ["BOOKMARK_BEFORE_TIMEOUT", "Range", "Realism"]
