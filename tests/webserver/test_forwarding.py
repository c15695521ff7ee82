"""Forwarded headers are believed only from trusted proxies; hosts and origins compared
the way browsers send them."""

from __future__ import annotations

import pytest

from webterm.config import ConfigError
from webterm.webserver.forwarding import (
    TrustedProxies,
    is_secure,
    joined_headers,
    limit_key,
    public_host,
    remote_address,
    same_origin,
)

TRUSTED = TrustedProxies(["10.0.0.0/8", "192.0.2.1", "fd00::/8"])
NOBODY = TrustedProxies([])


def test_trusted_proxies_are_addresses_or_networks() -> None:
    assert "10.1.2.3" in TRUSTED
    assert "192.0.2.1" in TRUSTED
    assert "fd00::5" in TRUSTED
    assert "192.0.2.2" not in TRUSTED
    assert "11.0.0.1" not in TRUSTED
    assert "not-an-ip" not in TRUSTED
    assert None not in TRUSTED
    assert not NOBODY
    assert TRUSTED
    with pytest.raises(ConfigError):
        TrustedProxies(["10.0.0.0/33"])
    with pytest.raises(ConfigError):
        TrustedProxies(["proxy.example.org"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.5", None, "203.0.113.5"),
        ("203.0.113.5", "198.51.100.1", "203.0.113.5"),  # a stranger's header: ignored
        ("10.0.0.1", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.1", "198.51.100.1, 10.9.9.9", "198.51.100.1"),  # our proxies are skipped
        ("10.0.0.1", "6.6.6.6, 198.51.100.1, 10.9.9.9", "198.51.100.1"),  # spoofed left hop
        ("10.0.0.1", "10.1.1.1, 10.2.2.2", "10.1.1.1"),  # all trusted: the first
        ("10.0.0.1", "garbage", "invalid"),
        ("10.0.0.1", " , ", "10.0.0.1"),
        ("10.0.0.1", "2001:db8::1", "2001:db8::1"),
        (None, "198.51.100.1", "unknown"),
        # a dual-stack socket: IPv4 clients and proxies arrive IPv4-mapped
        ("::ffff:203.0.113.5", None, "203.0.113.5"),
        ("::ffff:10.0.0.1", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.1", "::ffff:198.51.100.1, ::ffff:10.9.9.9", "198.51.100.1"),
    ],
)
def test_remote_address(peer: str | None, forwarded: str | None, expected: str) -> None:
    assert remote_address(peer, forwarded, TRUSTED) == expected


def test_ipv6_limits_count_a_slash_64_as_one_address() -> None:
    assert limit_key("2001:db8:1:2:aaaa::1") == limit_key("2001:db8:1:2:bbbb::9")
    assert limit_key("2001:db8:1:3::1") != limit_key("2001:db8:1:2::1")
    assert limit_key("203.0.113.5") == "203.0.113.5"


def test_ipv4_mapped_addresses_are_limited_as_the_ipv4_address_they_are() -> None:
    # not all of IPv4 in one ::/64 bucket behind a dual-stack socket
    assert limit_key("::ffff:203.0.113.5") == "203.0.113.5"
    assert limit_key("::ffff:203.0.113.5") != limit_key("::ffff:198.51.100.1")


def test_header_lines_are_joined_in_order() -> None:
    raw = [(b"X-Forwarded-For", b"6.6.6.6"), (b"Host", b"a"), (b"x-forwarded-for", b"1.2.3.4")]
    assert joined_headers(raw) == {"x-forwarded-for": "6.6.6.6, 1.2.3.4", "host": "a"}
    assert limit_key("invalid") == "invalid"


def test_scheme_comes_from_the_connection_or_a_trusted_proxy() -> None:
    assert is_secure("https", None, "203.0.113.5", NOBODY)
    assert not is_secure("http", "https", "203.0.113.5", TRUSTED)
    assert is_secure("http", "https", "10.0.0.1", TRUSTED)
    assert is_secure("http", "HTTPS, http", "10.0.0.1", TRUSTED)
    assert not is_secure("http", "http", "10.0.0.1", TRUSTED)


@pytest.mark.parametrize(
    ("host", "forwarded", "peer", "expected"),
    [
        ("example.org", None, "203.0.113.5", "example.org"),
        ("example.org:8080", None, "203.0.113.5", "example.org:8080"),
        ("127.0.0.1:80", None, "203.0.113.5", "127.0.0.1:80"),
        ("[::1]:8080", None, "203.0.113.5", "[::1]:8080"),
        ("example.org", "term.example.org", "203.0.113.5", "example.org"),  # not trusted
        ("example.org", "term.example.org", "10.0.0.1", "term.example.org"),
        ("example.org", "a.example, b.example", "10.0.0.1", "a.example"),
        (None, None, "203.0.113.5", None),
        ("", None, "203.0.113.5", None),
        ("evil.example/path", None, "203.0.113.5", None),
        ("user@evil.example", None, "203.0.113.5", None),
        ("a b", None, "203.0.113.5", None),
        ("example.org\r\nX-Injected: 1", None, "203.0.113.5", None),
        ("example.org:99999999", None, "203.0.113.5", None),
    ],
)
def test_public_host(
    host: str | None, forwarded: str | None, peer: str, expected: str | None
) -> None:
    assert public_host(host, forwarded, peer, TRUSTED) == expected


@pytest.mark.parametrize(
    ("origin", "host", "expected"),
    [
        ("http://example.org", "example.org", True),
        ("https://example.org", "example.org", True),  # TLS may end at a proxy
        ("https://Example.ORG:8443", "example.org:8443", True),
        ("https://example.org:8443", "example.org", False),
        ("https://example.org", "example.org:8443", False),
        ("https://evil.example", "example.org", False),
        ("https://example.org.evil.example", "example.org", False),
        ("null", "example.org", False),
        ("file://", "example.org", False),
        ("ftp://example.org", "example.org", False),
        ("http://[::1", "example.org", False),
    ],
)
def test_same_origin(origin: str, host: str, expected: bool) -> None:
    assert same_origin(origin, host) is expected
