"""The DNS-rebinding guard's rules (webterm.hosts): pure functions."""

from __future__ import annotations

import pytest

from webterm.hosts import host_name, listens_on_loopback_only, origin_hosts, rebinding_safe


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        ("127.0.0.1", True),
        ("127.0.0.42", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.1.2.3", False),
        ("terminal.example", False),
    ],
)
def test_which_bind_addresses_are_loopback_only(bind: str, expected: bool) -> None:
    assert listens_on_loopback_only(bind) is expected


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("Localhost:8080", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]:8080", "::1"),
        ("evil.example.:80", "evil.example"),
    ],
)
def test_host_name(header: str, name: str) -> None:
    assert host_name(header) == name


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, True),  # HTTP/1.0 without Host: not a browser
        ("127.0.0.1:8080", True),
        ("192.168.1.20:8080", True),  # any address literal: no DNS to rebind
        ("[::1]:8080", True),
        ("localhost:8080", True),
        ("LOCALHOST", True),
        ("webterm.localhost:8080", True),  # RFC 6761: always loopback
        ("evil.example:8080", False),
        ("localhost.evil.example:8080", False),
        ("127.0.0.1.evil.example", False),
        ("127.0.0.1:8080, evil.example:8080", False),  # two Host headers, joined
        ("", False),
    ],
)
def test_rebinding_safe_hosts(header: str | None, expected: bool) -> None:
    assert rebinding_safe(header) is expected


def test_allowed_origins_name_hosts_that_are_served_too() -> None:
    allowed = origin_hosts(["https://Portal.example:8443", "not a url", "http://[::1]:1"])
    assert allowed == frozenset({"portal.example", "::1"})
    assert rebinding_safe("portal.example:8443", allowed)
    assert not rebinding_safe("evil.example", allowed)
