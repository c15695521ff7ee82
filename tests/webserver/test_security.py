"""The Content-Security-Policy the page runs under, per address mode."""

from __future__ import annotations

from webterm.webserver.security import (
    CONTENT_SECURITY_POLICY,
    connect_sources,
    content_security_policy,
)


def directives(policy: str) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in policy.split(";"))


def test_the_policy_allows_only_our_own_scripts() -> None:
    policy = directives(CONTENT_SECURITY_POLICY)
    assert policy["script-src"] == "'self' 'wasm-unsafe-eval'"  # WebAssembly, not eval
    assert policy["default-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert "'unsafe-eval'" not in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in policy["script-src"]


def test_connect_src_per_mode() -> None:
    assert connect_sources("proxy", "example.org:8080", None) == (
        "'self' ws://example.org:8080 wss://example.org:8080"
    )
    assert connect_sources("proxy", None, None) == "'self'"
    assert connect_sources("nodeport", "example.org", "nodes.example.org") == (
        "'self' ws://nodes.example.org:*"
    )
    assert connect_sources("nodeport", "example.org", None) == "'self' ws:"
    policy = directives(content_security_policy(connect_sources("proxy", "h:1", None)))
    assert policy["connect-src"] == "'self' ws://h:1 wss://h:1"
