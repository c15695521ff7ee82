"""The wire codec and tokens: round trips, and garbage never raises anything but our errors."""

from __future__ import annotations

import base64
import contextlib
import json

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from webterm.protocol import (
    MAX_FILE_BYTES,
    SHARE_AUDIENCE,
    TOKEN_AUDIENCE,
    Ack,
    Allocation,
    CloseCode,
    Download,
    Error,
    Exit,
    ExpiredToken,
    Flush,
    Hello,
    Idle,
    InvalidToken,
    KeySet,
    MalformedAllocation,
    MalformedMessage,
    Ping,
    Pong,
    ProtocolError,
    Resize,
    Revoke,
    ShareClaims,
    SigningKey,
    Size,
    TokenClaims,
    TokenError,
    UnknownKey,
    Viewer,
    Viewers,
    WrongTerminal,
    client_hash,
    decode_allocation,
    decode_client_message,
    decode_server_message,
    encode_allocation,
    encode_message,
    read_any_token,
    read_token,
    sign_share_token,
    sign_token,
    subprotocols_for,
    token_from_subprotocols,
    token_key_id,
    verify_any_token,
    verify_token,
)

SECRET = b"protocol-test-secret-0123456789"
KEY = SigningKey.generate()
KEYS = KEY.key_set()
OTHER = SigningKey.generate()
NOW = 1_999_990_000  # within a day of the claims' expiry
sizes = st.integers(1, 1 << 16)
names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=60)

client_messages = st.one_of(
    st.builds(Resize, cols=sizes, rows=sizes),
    st.builds(Ack, bytes=st.integers(0, 1 << 40)),
    st.builds(Ping),
    st.builds(Revoke, link=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)),
)
server_messages = st.one_of(
    st.builds(
        Hello,
        terminal=names,
        reattached=st.booleans(),
        role=st.sampled_from(["owner", "view", "type"]),
    ),
    st.builds(Size, cols=sizes, rows=sizes),
    st.builds(
        Viewers,
        viewers=st.lists(
            st.builds(
                Viewer,
                id=st.integers(0, 1 << 31),
                link=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
                mode=st.sampled_from(["view", "type"]),
            ),
            max_size=32,
        ).map(tuple),
    ),
    st.builds(Idle, seconds_left=st.integers(0, 1 << 31)),
    st.builds(Exit, status=st.integers(-(1 << 31), 1 << 31)),
    st.builds(Error, message=st.text(max_size=200)),
    st.builds(Pong),
    st.builds(Flush),
    st.builds(Download, id=names, name=names, size=st.integers(0, MAX_FILE_BYTES)),
)


@given(client_messages)
def test_client_messages_round_trip(message: Resize | Ack | Ping | Revoke) -> None:
    assert decode_client_message(encode_message(message)) == message


@given(server_messages)
def test_server_messages_round_trip(
    message: Hello | Idle | Exit | Error | Pong | Flush | Size | Viewers | Download,
) -> None:
    assert decode_server_message(encode_message(message)) == message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_garbage_text_raises_only_malformed(garbage: str | bytes) -> None:
    for decode in (decode_client_message, decode_server_message):
        with contextlib.suppress(MalformedMessage):
            decode(garbage)


@given(
    st.sampled_from(
        [
            "resize",
            "ack",
            "ping",
            "hello",
            "idle",
            "exit",
            "error",
            "pong",
            "flush",
            "download",
            "x",
            "revoke",
            "size",
            "viewers",
        ]
    ),
    st.dictionaries(
        st.sampled_from(
            [
                "cols",
                "rows",
                "bytes",
                "terminal",
                "reattached",
                "seconds_left",
                "status",
                "message",
                "id",
                "name",
                "size",
                "role",
                "link",
                "viewers",
            ]
        ),
        json_values,
    ),
)
def test_wrong_field_types_raise_only_malformed(kind: str, fields: dict[str, object]) -> None:
    text = json.dumps({**fields, "type": kind})
    for decode in (decode_client_message, decode_server_message):
        with contextlib.suppress(MalformedMessage):
            decode(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"resize","cols":true,"rows":5}',
        '{"type":"resize","cols":0,"rows":5}',
        '{"type":"ack","bytes":-1}',
        '{"type":"ack","bytes":1.5}',
        "[1]",
        '"resize"',
        '{"type":"resize"}',
        "x" * 5000,
        '{"type":"launch-missiles"}',
        '{"type":"revoke"}',
        '{"type":"revoke","link":"has space"}',
        '{"type":"revoke","link":""}',
    ],
)
def test_specific_malformed_client_messages(text: str) -> None:
    with pytest.raises(MalformedMessage):
        decode_client_message(text)


def test_resize_clamps_to_sane_bounds() -> None:
    assert Resize(cols=60000, rows=60000).clamped() == Resize(cols=1000, rows=500)
    assert Resize(cols=1, rows=1).clamped() == Resize(cols=2, rows=1)


def claims(**overrides: object) -> TokenClaims:
    base: dict[str, object] = {
        "terminal": "terminal-3",
        "instance": "uid-7",
        "client": client_hash(SECRET, "c"),
        "expires_at": 2_000_000_000,
    }
    return TokenClaims(**{**base, **overrides})  # type: ignore[arg-type]


@given(terminal=names, instance=st.text(max_size=40), client=st.text(max_size=40))
def test_token_round_trip(terminal: str, instance: str, client: str) -> None:
    token = sign_token(KEY, claims(terminal=terminal, instance=instance, client=client))
    assert token_from_subprotocols(subprotocols_for(token)) == token
    assert all(c.isalnum() or c in "-_." for c in token)  # a JWT: base64url and dots
    assert token_key_id(token) == KEY.kid
    got = verify_token(KEYS, token, terminal=terminal, instance=instance, now=NOW)
    assert (got.terminal, got.instance, got.client) == (terminal, instance, client)


@given(st.data())
def test_any_character_change_is_refused(data: st.DataObject) -> None:
    token = sign_token(KEY, claims())
    raw = bytearray(token.encode())
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = ord(data.draw(st.sampled_from("ABCxyz019-_.").filter(lambda c: ord(c) != raw[i])))
    with pytest.raises(ProtocolError):
        verify_token(KEYS, raw.decode(), terminal="terminal-3", instance="uid-7", now=NOW)


def test_token_is_bound_to_terminal_instance_key_and_time() -> None:
    token = sign_token(KEY, claims())
    with pytest.raises(WrongTerminal):
        verify_token(KEYS, token, terminal="terminal-4", instance="uid-7", now=NOW)
    with pytest.raises(WrongTerminal):  # the recycled pod has a new UID
        verify_token(KEYS, token, terminal="terminal-3", instance="uid-8", now=NOW)
    with pytest.raises(ExpiredToken):
        verify_token(KEYS, token, terminal="terminal-3", instance="uid-7", now=2_000_000_000)
    with pytest.raises(UnknownKey):  # another manager's key, or a retired one
        verify_token(OTHER.key_set(), token, terminal="terminal-3", instance="uid-7", now=NOW)
    with pytest.raises(InvalidToken):  # a day is the longest a token may live
        verify_token(KEYS, token, terminal="terminal-3", instance="uid-7", now=1_000_000_000)


def test_a_key_id_naming_another_key_does_not_verify() -> None:
    """A token signed by another key but naming ours in its header."""
    forged = jwt.encode(
        {"terminal": "terminal-3", "instance": "uid-7", "client": "c", "exp": 2_000_000_000,
         "aud": TOKEN_AUDIENCE},
        OTHER.private, algorithm="EdDSA", headers={"kid": KEY.kid},
    )  # fmt: skip
    with pytest.raises(InvalidToken, match="bad signature"):
        verify_token(KEYS, forged, terminal="terminal-3", instance="uid-7", now=NOW)


def test_tokens_are_standard_jwts_both_ways_against_pyjwt() -> None:
    """PyJWT, an independent implementation, reads our tokens and makes tokens we read."""
    ours = sign_token(KEY, claims())
    public = KEY.private.public_key()
    assert jwt.get_unverified_header(ours) == {"alg": "EdDSA", "kid": KEY.kid, "typ": "JWT"}
    decoded = jwt.decode(
        ours, public, algorithms=["EdDSA"], audience=TOKEN_AUDIENCE,
        options={"require": ["exp", "aud"], "verify_exp": False},
    )  # fmt: skip
    assert decoded == {
        "terminal": "terminal-3", "instance": "uid-7", "client": claims().client,
        "exp": 2_000_000_000, "aud": TOKEN_AUDIENCE,
    }  # fmt: skip
    theirs = jwt.encode(decoded, KEY.private, algorithm="EdDSA", headers={"kid": KEY.kid})
    got = verify_token(KEYS, theirs, terminal="terminal-3", instance="uid-7", now=NOW)
    assert got == claims()


def test_critical_header_extensions_are_refused() -> None:
    body = {"terminal": "terminal-3", "instance": "uid-7", "client": "c", "exp": 2_000_000_000,
            "aud": TOKEN_AUDIENCE}  # fmt: skip
    token = jwt.encode(
        body, KEY.private, algorithm="EdDSA", headers={"kid": KEY.kid, "crit": ["exp"]}
    )
    with pytest.raises(InvalidToken, match="critical"):
        verify_token(KEYS, token, terminal="terminal-3", instance="uid-7", now=NOW)


def test_the_algorithm_is_pinned() -> None:
    """No alg confusion: ``none``, or HMAC keyed with the (public) key's bytes."""
    body = {"terminal": "terminal-3", "instance": "uid-7", "client": "c", "exp": 2_000_000_000,
            "aud": TOKEN_AUDIENCE}  # fmt: skip
    public_raw = KEY.private.public_key().public_bytes_raw()
    unsigned = jwt.encode(body, None, algorithm="none", headers={"kid": KEY.kid})
    hmaced = jwt.encode(body, public_raw, algorithm="HS256", headers={"kid": KEY.kid})
    for token in (unsigned, hmaced, unsigned.rstrip(".") + ".", unsigned + "x"):
        with pytest.raises(InvalidToken):
            verify_token(KEYS, token, terminal="terminal-3", instance="uid-7", now=NOW)


@pytest.mark.parametrize("missing", ["exp", "aud", "terminal", "instance"])
def test_expiry_audience_and_claims_are_required(missing: str) -> None:
    body = {"terminal": "terminal-3", "instance": "uid-7", "client": "c", "exp": 2_000_000_000,
            "aud": TOKEN_AUDIENCE}  # fmt: skip
    del body[missing]
    token = jwt.encode(body, KEY.private, algorithm="EdDSA", headers={"kid": KEY.kid})
    with pytest.raises(InvalidToken):
        verify_token(KEYS, token, terminal="terminal-3", instance="uid-7", now=NOW)


def test_another_audience_is_refused() -> None:
    body = {"terminal": "terminal-3", "instance": "uid-7", "client": "c", "exp": 2_000_000_000,
            "aud": "manager"}  # fmt: skip
    token = jwt.encode(body, KEY.private, algorithm="EdDSA", headers={"kid": KEY.kid})
    with pytest.raises(WrongTerminal, match="audience"):
        verify_token(KEYS, token, terminal="terminal-3", instance="uid-7", now=NOW)


@given(st.text(max_size=3000))
def test_garbage_tokens_raise_only_token_errors(garbage: str) -> None:
    with pytest.raises(ProtocolError):
        verify_token(KEYS, garbage, terminal="t", instance="", now=NOW)


def test_impossible_claims_are_a_token_error() -> None:
    with pytest.raises(InvalidToken):
        claims(terminal="")
    with pytest.raises(InvalidToken):
        claims(client="x" * 254)


def signed(payload: bytes) -> str:
    """A token whose signature is genuine (our key) over ``payload`` as its claims."""
    header = base64.urlsafe_b64encode(json.dumps({"alg": "EdDSA", "kid": KEY.kid}).encode()).rstrip(
        b"="
    )
    body = base64.urlsafe_b64encode(payload).rstrip(b"=")
    signing_input = header + b"." + body
    signature = base64.urlsafe_b64encode(KEY.private.sign(signing_input)).rstrip(b"=")
    return (signing_input + b"." + signature).decode()


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff not json",
        b"[1, 2]",
        b'{"terminal": "terminal-3"}',
        b'{"terminal": "", "instance": "", "client": "", "exp": 2000000000, "aud": "webterm-terminal"}',
        b'{"terminal": "terminal-3", "instance": "", "client": "", "exp": 2e9, "aud": "webterm-terminal"}',
        b'{"terminal": 3, "instance": "", "client": "", "exp": 2000000000, "aud": "webterm-terminal"}',
    ],
)
def test_a_genuine_but_unreadable_payload_is_an_invalid_token(payload: bytes) -> None:
    for read in (
        lambda token: read_token(KEYS, token, now=NOW),
        lambda token: verify_token(KEYS, token, terminal="terminal-3", instance="", now=NOW),
    ):
        with pytest.raises(InvalidToken):
            read(signed(payload))


def test_token_errors_carry_a_status_hint() -> None:
    token = sign_token(KEY, claims())
    with pytest.raises(TokenError) as refused:
        verify_token(KEYS, token, terminal="terminal-4", instance="uid-7", now=NOW)
    assert refused.value.error_status_hint == 403
    with pytest.raises(TokenError) as refused:
        verify_token(KEYS, token, terminal="terminal-3", instance="uid-7", now=2_000_000_000)
    assert refused.value.error_status_hint == 401
    with pytest.raises(UnknownKey) as refused:
        verify_token(OTHER.key_set(), token, terminal="terminal-3", instance="uid-7", now=NOW)
    assert refused.value.error_status_hint == 401


def test_subprotocol_token_needs_the_protocol_too() -> None:
    assert token_from_subprotocols(["webterm.token.abc"]) is None
    assert token_from_subprotocols(["webterm.v1"]) is None
    assert token_from_subprotocols(["webterm.v1", "webterm.token.abc"]) == "abc"


def test_client_hash_is_keyed_and_stable() -> None:
    assert client_hash(SECRET, "a") == client_hash(SECRET, "a")
    assert client_hash(SECRET, "a") != client_hash(SECRET, "b")
    assert client_hash(SECRET, "a") != client_hash(b"other-secret-0123456789", "a")
    assert len(client_hash(SECRET, "a")) == 32


def test_close_codes_match_the_contract() -> None:
    assert (CloseCode.UNAUTHORIZED, CloseCode.SUPERSEDED, CloseCode.NORMAL) == (4401, 4409, 1000)


def test_read_token_checks_signature_and_expiry_but_not_the_terminal() -> None:
    token = sign_token(KEY, claims())
    got = read_token(KEYS, token, now=NOW)
    assert (got.terminal, got.instance) == ("terminal-3", "uid-7")
    with pytest.raises(UnknownKey):
        read_token(OTHER.key_set(), token, now=NOW)
    with pytest.raises(ExpiredToken):
        read_token(KEYS, token, now=2_000_000_001)
    # the manager's reports: accepted up to `leeway` seconds past the expiry
    assert read_token(KEYS, token, now=2_000_000_001, leeway=60).terminal == "terminal-3"
    with pytest.raises(ExpiredToken):
        read_token(KEYS, token, now=2_000_000_060, leeway=60)


def test_key_sets_round_trip_as_jwks_and_pem() -> None:
    both = KEY.key_set(OTHER.key_set())
    document = both.to_jwks()
    assert {k["kid"] for k in document["keys"]} == {KEY.kid, OTHER.kid}
    assert all(
        (k["kty"], k["crv"], k["use"], k["alg"]) == ("OKP", "Ed25519", "sig", "EdDSA")
        for k in document["keys"]
    )
    assert set(KeySet.from_jwks(json.dumps(document)).keys) == {KEY.kid, OTHER.kid}
    assert set(KeySet.from_pem(KEY.public_pem()).keys) == {KEY.kid}
    assert SigningKey.from_pem(KEY.to_pem()).kid == KEY.kid
    assert len(KEY.kid) == 16  # base64url of 12 bytes


def test_a_jwks_whose_kid_lies_is_refused() -> None:
    document = KEY.key_set().to_jwks()
    document["keys"][0]["kid"] = OTHER.kid
    with pytest.raises(ValueError, match="kid"):
        KeySet.from_jwks(json.dumps(document))


def test_a_signing_key_must_be_ed25519() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="Ed25519"):
        SigningKey.from_pem(pem)
    with pytest.raises(ValueError, match="PEM"):
        SigningKey.from_pem(b"not a key")


# --- allocations ------------------------------------------------------------------------

terminal_names = st.from_regex(r"\A[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?\Z")


@given(
    st.builds(
        Allocation,
        terminal=terminal_names,
        address=st.builds("{}:{}".format, st.ip_addresses().map(str), st.integers(1, 65535)),
        token=st.text(max_size=300),
        reconnect=st.booleans(),
        client_hash=st.text(max_size=40),
    )
)
def test_allocations_round_trip(allocation: Allocation) -> None:
    assert decode_allocation(encode_allocation(allocation)) == allocation


def test_allocation_wire_format_is_the_managers_contract() -> None:
    allocation = Allocation(
        terminal="terminal-0", address="10.0.0.5:7681", token="abc", reconnect=True,
        client_hash="0123abcd",
    )  # fmt: skip
    assert json.loads(encode_allocation(allocation)) == {
        "terminal": "terminal-0",
        "address": "10.0.0.5:7681",
        "token": "abc",
        "reconnect": True,
        "client_hash": "0123abcd",
    }
    # fields the webserver does not read are skipped; a missing 'reconnect' is a first
    read = decode_allocation(
        b'{"terminal":"t-1","address":"h:1","token":"x","instance":"u","extra":[1],'
        b'"client_hash":"c"}'
    )
    assert read == Allocation(
        terminal="t-1", address="h:1", token="x", reconnect=False, client_hash="c"
    )


@pytest.mark.parametrize(
    "body",
    [
        b"<html>not json</html>",
        b'["terminal-0"]',
        b'{"terminal": "Bad Name!", "address": "x:1", "token": "t", "client_hash": "h"}',
        b'{"terminal": "-starts-with-a-dash", "address": "x:1", "token": "t", "client_hash": "h"}',
        b'{"terminal": "terminal-0\\n", "address": "x:1", "token": "t", "client_hash": "h"}',
        b'{"terminal": "terminal-0", "address": "no-port", "token": "t", "client_hash": "h"}',
        b'{"terminal": "terminal-0", "address": "x:1", "client_hash": "h"}',
        b'{"terminal": "terminal-0", "address": "x:1", "token": 5, "client_hash": "h"}',
        b'{"terminal": 0, "address": "x:1", "token": "t", "client_hash": "h"}',
        b'{"terminal": "terminal-0", "address": "x:1", "token": "t", "reconnect": "yes",'
        b' "client_hash": "h"}',
        b'{"terminal": "terminal-0", "address": "x:1", "token": "t"}',  # no client hash
        b"",
    ],
)
def test_malformed_allocations_raise_malformed_allocation(body: bytes) -> None:
    with pytest.raises(MalformedAllocation):
        decode_allocation(body)


@given(st.one_of(st.binary(max_size=300), json_values.map(json.dumps)))
def test_garbage_allocations_raise_only_malformed_allocation(garbage: bytes | str) -> None:
    with contextlib.suppress(MalformedAllocation):
        decode_allocation(garbage)


# --- share tokens -------------------------------------------------------------------------


def share_claims(**overrides: object) -> ShareClaims:
    fields: dict[str, object] = {"terminal": "terminal-3", "instance": "uid-7", "link": "L1nk_-",
                                 "mode": "view", "expires_at": 2_000_000_000, **overrides}  # fmt: skip
    return ShareClaims(**fields)  # type: ignore[arg-type]


def test_share_tokens_round_trip_and_are_standard_jwts() -> None:
    token = sign_share_token(KEY, share_claims(mode="type"))
    assert read_any_token(KEYS, token, now=NOW) == share_claims(mode="type")
    assert (
        verify_any_token(KEYS, token, terminal="terminal-3", instance="uid-7", now=NOW).link
        == "L1nk_-"
    )
    decoded = jwt.decode(
        token, KEY.private.public_key(), algorithms=["EdDSA"], audience=SHARE_AUDIENCE
    )
    assert decoded == {"terminal": "terminal-3", "instance": "uid-7", "link": "L1nk_-",
                       "mode": "type", "exp": 2_000_000_000, "aud": SHARE_AUDIENCE}  # fmt: skip
    # read_any_token reads an owner's token too
    owner = sign_token(KEY, claims())
    assert isinstance(read_any_token(KEYS, owner, now=NOW), TokenClaims)


def test_a_share_token_is_no_owners_token_and_is_bound_like_one() -> None:
    token = sign_share_token(KEY, share_claims())
    with pytest.raises(WrongTerminal, match="audience"):
        read_token(KEYS, token, now=NOW)  # never an owner's, never a report's credential
    with pytest.raises(WrongTerminal):
        verify_any_token(KEYS, token, terminal="terminal-3", instance="uid-8", now=NOW)
    with pytest.raises(WrongTerminal):
        verify_any_token(KEYS, token, terminal="terminal-4", instance="uid-7", now=NOW)
    with pytest.raises(ExpiredToken):
        read_any_token(KEYS, token, now=2_000_000_000)
    with pytest.raises(UnknownKey):
        read_any_token(OTHER.key_set(), token, now=NOW)
    other = jwt.encode({"terminal": "terminal-3", "instance": "uid-7", "exp": 2_000_000_000,
                        "aud": "webterm-elsewhere"}, KEY.private, algorithm="EdDSA",
                       headers={"kid": KEY.kid})  # fmt: skip
    with pytest.raises(WrongTerminal, match="audience"):
        read_any_token(KEYS, other, now=NOW)


@pytest.mark.parametrize(
    "body",
    [
        {"link": "L"},  # no mode
        {"link": "L", "mode": "admin"},
        {"link": "a b", "mode": "view"},
        {"link": 5, "mode": "view"},
        {"mode": "view"},
    ],
)
def test_impossible_share_claims_are_invalid(body: dict[str, object]) -> None:
    payload = {"terminal": "terminal-3", "instance": "uid-7", "exp": 2_000_000_000,
               "aud": SHARE_AUDIENCE, **body}  # fmt: skip
    token = jwt.encode(payload, KEY.private, algorithm="EdDSA", headers={"kid": KEY.kid})
    with pytest.raises(InvalidToken):
        read_any_token(KEYS, token, now=NOW)
