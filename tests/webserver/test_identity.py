"""Signed identities: only ids this server issued, for this mode, are accepted back."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webterm.webserver.identity import (
    ID_RANDOM_BYTES,
    identify,
    issue_id,
    manager_identity,
    verified_id,
)

SECRET = b"identity-test-secret-0123456789ab"


def test_issued_ids_are_random_128_bit_and_verify() -> None:
    ids = {issue_id(SECRET, "tab") for _ in range(1000)}
    assert len(ids) == 1000
    for issued in list(ids)[:20]:
        random_part, _, mac = issued.partition(".")
        assert len(base64.urlsafe_b64decode(random_part + "==")) == ID_RANDOM_BYTES
        assert len(base64.urlsafe_b64decode(mac + "==")) >= 16
        assert verified_id(SECRET, "tab", issued) == random_part


def test_ids_are_bound_to_the_secret_and_the_mode() -> None:
    issued = issue_id(SECRET, "tab")
    assert verified_id(b"another-secret-0123456789abcdef", "tab", issued) is None
    assert verified_id(SECRET, "browser", issued) is None
    assert verified_id(SECRET, "browser", issue_id(SECRET, "browser")) is not None


@pytest.mark.parametrize(
    "presented",
    [None, 42, "", ".", "abc", "abc.", ".abc", "a" * 22 + "." + "b" * 22, "x" * 5000, ["a.b"]],
)
def test_anything_else_is_refused(presented: object) -> None:
    assert verified_id(SECRET, "tab", presented) is None


def test_every_single_character_change_is_refused() -> None:
    issued = issue_id(SECRET, "tab")
    alphabet = "ABCabc019-_"
    for i, char in enumerate(issued):
        if char == ".":
            continue
        for other in alphabet:
            if other != char:
                tampered = issued[:i] + other + issued[i + 1 :]
                assert verified_id(SECRET, "tab", tampered) is None


@given(st.text(max_size=120))
def test_arbitrary_strings_never_verify(text: str) -> None:
    assert verified_id(SECRET, "tab", text) is None


def test_manager_identities_are_namespaced() -> None:
    assert manager_identity("tab", "abc") == "tab:abc"
    assert manager_identity("browser", "abc") == "browser:abc"
    assert manager_identity("ip", "::1") == "ip:::1"


def test_identify_keeps_a_genuine_id_and_replaces_others_only_when_asked_to() -> None:
    tab = issue_id(SECRET, "tab")
    kept = identify(SECRET, "tab", presented=tab, address="10.0.0.1", issue=True)
    assert kept == (f"tab:{tab.partition('.')[0]}", tab)
    identity, fresh = identify(SECRET, "tab", presented="x.y", address="10.0.0.1", issue=True)
    assert fresh is not None
    assert identity == f"tab:{verified_id(SECRET, 'tab', fresh)}"
    nobody = identify(SECRET, "tab", presented="x.y", address="10.0.0.1", issue=False)
    assert nobody == (None, None)


def test_identify_in_browser_mode_hands_back_only_a_new_cookie() -> None:
    cookie = issue_id(SECRET, "browser")
    kept = identify(SECRET, "browser", presented=cookie, address="a", issue=True)
    assert kept == (f"browser:{cookie.partition('.')[0]}", None)
    tab = issue_id(SECRET, "tab")  # a tab's id is no browser's cookie: a fresh one is set
    identity, fresh = identify(SECRET, "browser", presented=tab, address="a", issue=True)
    assert fresh is not None
    assert identity == f"browser:{verified_id(SECRET, 'browser', fresh)}"


def test_identify_in_ip_mode_is_the_address_whatever_was_presented() -> None:
    tab = issue_id(SECRET, "tab")
    got = identify(SECRET, "ip", presented=tab, address="10.0.0.1", issue=False)
    assert got == ("ip:10.0.0.1", None)
