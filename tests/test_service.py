"""The service kit's pure parts (webterm.service): the error body, the Host guard."""

from __future__ import annotations

from webterm.service.asgi import refuse_early
from webterm.service.errors import MAX_RETRY_AFTER, Refusal, error_body, error_headers
from webterm.service.hostguard import WRONG_HOST, HostGuard


def test_the_error_body_has_a_clamped_retry_after_only_with_a_delay() -> None:
    assert error_body("no") == {"error": "no"}
    assert error_body("busy", 0) == {"error": "busy", "retry_after": 1}
    assert error_body("busy", 10**6) == {"error": "busy", "retry_after": MAX_RETRY_AFTER}
    assert error_headers(503, 5) == {"Retry-After": "5"}
    assert error_headers(413, 5) == {"Connection": "close"}
    assert error_headers(400) == {}


def test_a_refusal_is_answered_with_its_own_status() -> None:
    refusal = Refusal(429, "slow down", 3)
    assert (refusal.error_status_hint, refusal.message, refusal.retry_after) == (
        429,
        "slow down",
        3,
    )
    assert Refusal.error_status_hint == 400  # the class's, for the error tree


def test_the_host_guard_is_active_on_loopback_only() -> None:
    guard = HostGuard("127.0.0.1", ["https://portal.example:8443"])
    assert guard.allows_host("localhost:8080")
    assert guard.allows_host("portal.example")
    assert guard.allows_host(None)
    assert not guard.allows_host("evil.example:8080")
    assert not guard.allows_host("localhost, evil.example")
    assert HostGuard("0.0.0.0").allows_host("evil.example")


def scope(kind: str, host: bytes) -> dict[str, object]:
    return {"type": kind, "path": "/", "headers": [(b"host", host)]}


def test_the_host_guard_reads_every_host_line() -> None:
    guard = HostGuard("::1")
    assert guard.allows(scope("http", b"[::1]:80"))
    twice = {"type": "http", "headers": [(b"host", b"localhost"), (b"Host", b"evil.example")]}
    assert not guard.allows(twice)
    assert guard.allows({"type": "lifespan"})


async def test_an_early_refusal_is_the_json_error_or_a_close_before_the_handshake() -> None:
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await refuse_early(scope("http", b"x"), send, Refusal(503, "busy", 7))
    start, body = sent
    assert start["status"] == 503
    assert (b"retry-after", b"7") in start["headers"]  # type: ignore[operator]
    assert body["body"] == b'{"error":"busy","retry_after":7}'
    sent.clear()
    await HostGuard("127.0.0.1").refuse(scope("websocket", b"evil.example"), send)
    assert sent == [{"type": "websocket.close", "code": 1008}]
    sent.clear()
    await HostGuard("127.0.0.1").refuse(scope("http", b"evil.example"), send)
    assert sent[1]["body"] == b'{"error":"' + WRONG_HOST.encode() + b'"}'
