"""``/healthz``, ``/readyz`` and ``/metrics``, one implementation for the services.

``/healthz`` answers :data:`HEALTHY` while the process serves; ``/readyz`` answers
:data:`READY` when the service can do its job (or another status it names), else a 503
with the reason; ``/metrics``
is the service's own Prometheus registry. The Quart apps get the three routes from
:func:`add_probes`; the terminal server answers ``/healthz`` with :data:`HEALTHY`
itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from quart import Response
from quart_trio import QuartTrio

from webterm.service.answers import json_response
from webterm.service.status import HEALTHY, PROBE_PATHS, READY


def metrics_answer(registry: CollectorRegistry) -> tuple[bytes, str]:
    """``(body, content type)`` of a scrape of ``registry``."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def add_probes(
    app: QuartTrio,
    registry: CollectorRegistry,
    readiness: Callable[[], Awaitable[dict[str, str]]],
) -> None:
    """The three probe routes on ``app``; ``/readyz`` answers what ``readiness()``
    returns (:data:`READY`, or another status), or the :class:`Refusal` it raises."""

    async def healthz() -> Response:
        return json_response(HEALTHY)

    async def readyz() -> Response:
        return json_response(await readiness())

    async def metrics() -> Response:
        body, content_type = metrics_answer(registry)
        return Response(body, content_type=content_type)

    app.add_url_rule("/healthz", "healthz", healthz, methods=["GET"])
    app.add_url_rule("/readyz", "readyz", readyz, methods=["GET"])
    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])


__all__ = ["HEALTHY", "PROBE_PATHS", "READY", "add_probes", "metrics_answer"]
