"""The probe answers and paths every service shares, with no web framework behind them:
the terminal server (one per user, kept small) answers ``/healthz`` itself and must not
import Quart or prometheus_client to learn what to say (:mod:`webterm.service.health`
serves them for the Quart apps)."""

from __future__ import annotations

from typing import Final

HEALTHY: Final = {"status": "ok"}
READY: Final = {"status": "ready"}
PROBE_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})

__all__ = ["HEALTHY", "PROBE_PATHS", "READY"]
