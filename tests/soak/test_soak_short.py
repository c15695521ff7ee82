"""The chaos soak in about a minute of faults (``nox -s soak`` is the long one): clients
at work while the harness kills the manager, cuts watches (reset and half-open), takes
the API away (503 + Retry-After, refused connections), deletes pods and slows the
StatefulSet controller; every invariant of ``tests/soak/soak.py`` must hold."""

from __future__ import annotations

from pathlib import Path

from tests.soak.soak import SoakConfig, run_soak


async def test_a_short_chaos_soak_breaks_no_invariant(tmp_path: Path) -> None:
    result = await run_soak(SoakConfig.short(), tmp_path)
    print(result.report())
    assert result.allocations > 0
    assert sum(result.faults.values()) > 0
    assert not result.violations, result.report()
    assert result.converge_seconds is not None
