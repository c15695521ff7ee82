"""Signed identities: only ids this server issued, for this mode, are accepted back."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webterm.webserver.identity import (
    ID_RANDOM_BYTES,
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
