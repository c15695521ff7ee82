"""The wire formats, in one place: control messages, close codes, tokens, allocations.

Theory of operation
-------------------
This module does no I/O, never imports trio, and never reads the clock: the current
time is always an argument. The terminal server (``webterm.pty``), the webserver's
WebSocket proxy and the tests all use it, so there is exactly one codec between
WebSocket frames and the messages below. (Longer than our other modules on purpose:
every wire format in one file is the point.)

* Binary frames are raw terminal bytes (client→server input, server→client output)
  and never pass through this module: the hot path stays free of per-frame work.
* Text frames are JSON objects with a ``type``. :func:`decode_client_message` and
  :func:`decode_server_message` turn a text frame into a frozen dataclass or raise
  :class:`MalformedMessage`; :func:`encode_message` goes the other way.
* A token authorises one client to open one terminal instance until it expires. It is
  a JWT (RFC 7519) signed by the manager alone with Ed25519 (``alg`` EdDSA, the key's
  ``kid`` in the header) over :class:`TokenClaims`; every verifier holds only a
  :class:`KeySet` of public keys, so it can check tokens but mint none. A JWT is
  base64url and dots, all HTTP "token" characters, so the token travels as the
  WebSocket subprotocol ``webterm.token.<token>`` and never appears in a URL.
* A *share token* (audience :data:`SHARE_AUDIENCE`, :class:`ShareClaims`) lets whoever
  holds a share link watch (``view``) or also type into (``type``) one terminal instance
  beside its owner; the terminal keeps the links its owner revoked.
* An :class:`Allocation` is the manager's answer to ``POST /v1/allocations``, encoded
  by the manager with :func:`encode_allocation` and read by the webserver with
  :func:`decode_allocation` (msgspec, straight into a frozen struct).

Error tree (part of :mod:`webterm.errors`; ``error_status_hint`` in brackets)::

    ProtocolError [400]
    ├── MalformedMessage      a control frame that is not a valid message
    ├── MalformedAllocation   a manager's allocation answer that is not one
    └── TokenError [401]      a token that must not open this terminal
        ├── InvalidToken      not decodable, bad signature, or impossible claims
        ├── ExpiredToken      signature fine, but past its expiry
        ├── WrongTerminal     [403] signature fine, but for another terminal/instance/audience
        └── UnknownKey        signed with a key id this verifier does not hold (unknown, retired)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import msgspec
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

if TYPE_CHECKING:  # the manager's alone, imported where it signs (see read_token)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from webterm.errors import WebtermError

__all__ = [
    "CLOSE_REASONS",
    "MAX_CONTROL_MESSAGE_BYTES",
    "MAX_FRAME_BYTES",
    "MAX_TOKEN_TTL",
    "MAX_VIEWERS",
    "SHARE_AUDIENCE",
    "SHARE_LINK",
    "SHARE_MODES",
    "SUBPROTOCOL",
    "TERMINAL_NAME",
    "TOKEN_ALGORITHM",
    "TOKEN_AUDIENCE",
    "TOKEN_SUBPROTOCOL_PREFIX",
    "Ack",
    "Allocation",
    "ClientMessage",
    "CloseCode",
    "Download",
    "Error",
    "Exit",
    "ExpiredToken",
    "Flush",
    "Hello",
    "Idle",
    "InvalidToken",
    "KeySet",
    "MalformedAllocation",
    "MalformedMessage",
    "Ping",
    "Pong",
    "ProtocolError",
    "Resize",
    "Revoke",
    "ServerMessage",
    "ShareClaims",
    "ShareMode",
    "SigningKey",
    "Size",
    "TokenClaims",
    "TokenError",
    "UnknownKey",
    "Viewer",
    "Viewers",
    "WrongTerminal",
    "client_hash",
    "decode_allocation",
    "decode_client_message",
    "decode_server_message",
    "encode_allocation",
    "encode_message",
    "key_id",
    "read_any_token",
    "read_token",
    "sign_share_token",
    "sign_token",
    "subprotocols_for",
    "token_from_subprotocols",
    "token_key_id",
    "verify_any_token",
    "verify_token",
]

SUBPROTOCOL: Final = "webterm.v1"
"""The protocol version the server selects during the WebSocket handshake."""

TOKEN_SUBPROTOCOL_PREFIX: Final = "webterm.token."
"""A client offers ``webterm.token.<token>`` beside :data:`SUBPROTOCOL`."""

MAX_FRAME_BYTES: Final = 1024 * 1024
"""Largest WebSocket message either side accepts (1 MiB, trio-websocket's default).
A paste larger than that is split by the page; a larger frame closes with 1009."""

MAX_CONTROL_MESSAGE_BYTES: Final = 4096
"""Largest text frame worth parsing: every control message fits in ~100 bytes, so
anything over 4 KiB is hostile or broken and is refused before ``json.loads``."""

MIN_COLS: Final = 2
MIN_ROWS: Final = 1
MAX_COLS: Final = 1000
MAX_ROWS: Final = 500
"""Window size bounds. A 4K screen with a 4-pixel font is ~960 columns; larger sizes
only make full-screen programs allocate absurd buffers. Sizes outside are clamped;
sizes that are not positive integers at all are refused."""

MAX_ACK_BYTES: Final = 1 << 40
"""An ``ack`` larger than a terabyte is not a byte count but garbage."""

MAX_TOKEN_TTL: Final = 24 * 3600
"""Seconds. Tokens are meant to live about a minute; a day is the hard ceiling."""

TOKEN_ALGORITHM: Final = "EdDSA"
"""The one JWT algorithm tokens are signed and verified with (pinned: no alg confusion)."""

TOKEN_AUDIENCE: Final = "webterm-terminal"
"""Every token's ``aud``: it opens a terminal (and, presented back by that terminal,
authenticates its reports to the manager)."""

SHARE_AUDIENCE: Final = "webterm-share"
"""A share token's ``aud``: it opens a terminal as a viewer beside its owner, never as
the owner, and never authenticates a report."""

ShareMode = Literal["view", "type"]
SHARE_MODES: Final[tuple[ShareMode, ...]] = ("view", "type")
"""What a share link allows: ``view`` (output only; input is refused) or ``type``."""

SHARE_LINK: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A share link's id (the manager makes 16 random base64url characters)."""

MAX_VIEWERS: Final = 32
"""Viewer connections one terminal serves at once (its ``viewers`` list fits a
control message)."""

_MAX_TOKEN_CHARS: Final = 2048  # a real token is ~300 characters


class CloseCode(IntEnum):
    """WebSocket close codes webterm sends, with the reason each one means."""

    NORMAL = 1000  # the shell exited; the session is over
    GOING_AWAY = 1001  # the server is shutting down
    PROTOCOL_ERROR = 1002
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    UNAUTHORIZED = 4401  # missing, forged, expired or other-terminal token
    FORBIDDEN_ORIGIN = 4403  # the page's Origin is not allowed
    TERMINAL_GONE = 4404  # the terminal behind the proxy could not be reached
    SUPERSEDED = 4409  # a newer connection took this terminal over
    REVOKED = 4410  # the owner revoked the share link this viewer came with


CLOSE_REASONS: Final[dict[int, str]] = {
    CloseCode.NORMAL: "session ended",
    CloseCode.GOING_AWAY: "server shutting down",
    CloseCode.PROTOCOL_ERROR: "protocol error",
    CloseCode.MESSAGE_TOO_BIG: "message too big",
    CloseCode.INTERNAL_ERROR: "internal error",
    CloseCode.UNAUTHORIZED: "unauthorized",
    CloseCode.FORBIDDEN_ORIGIN: "origin not allowed",
    CloseCode.TERMINAL_GONE: "terminal unavailable",
    CloseCode.SUPERSEDED: "another connection took over this terminal",
    CloseCode.REVOKED: "the share link was revoked",
}


# --- errors ---------------------------------------------------------------------------


class ProtocolError(WebtermError):
    """Base of every error this module raises."""

    error_status_hint = 400


class MalformedMessage(ProtocolError, ValueError):
    """A control frame that is not a valid message; the text says why."""


class MalformedAllocation(ProtocolError, ValueError):
    """An allocation answer that is not one (not JSON, a missing or mistyped field, a
    terminal name that is not a DNS label...); the text says why."""


class TokenError(ProtocolError):
    """A token that must not open this terminal."""

    error_status_hint = 401


class InvalidToken(TokenError):
    pass


class ExpiredToken(TokenError):
    pass


class WrongTerminal(TokenError):
    error_status_hint = 403


class UnknownKey(TokenError):
    """Signed with a key id this verifier does not know (unknown, or retired after a
    rotation); a verifier that fetches its keys refreshes them once and retries."""


# --- control messages -----------------------------------------------------------------


def _int_field(data: dict[str, Any], name: str, lo: int, hi: int) -> int:
    value = data.get(name)
    # bool is an int subclass; {"cols": true} is garbage, not 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedMessage(f"{name!r} must be an integer")
    if not lo <= value <= hi:
        raise MalformedMessage(f"{name!r} must be between {lo} and {hi}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Resize:
    """client→server: the page's terminal now has this many columns and rows."""

    cols: int
    rows: int
    type: Literal["resize"] = field(default="resize", init=False)

    def clamped(self) -> Resize:
        """The same size forced into the sane range a pty accepts from us."""
        return Resize(
            cols=min(max(self.cols, MIN_COLS), MAX_COLS),
            rows=min(max(self.rows, MIN_ROWS), MAX_ROWS),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """client→server: the page has rendered this many more output bytes (flow control)."""

    bytes: int
    type: Literal["ack"] = field(default="ack", init=False)

    def __post_init__(self) -> None:
        if not 0 <= self.bytes <= MAX_ACK_BYTES:
            raise MalformedMessage("'bytes' out of range")


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    type: Literal["ping"] = field(default="ping", init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Revoke:
    """client→server (the owner only): close the connections of share link ``link`` and
    refuse it from now on."""

    link: str
    type: Literal["revoke"] = field(default="revoke", init=False)


Role = Literal["owner", "view", "type"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """server→client: first message on every connection; ``role`` is ``owner``, or the
    share link's mode for a viewer."""

    terminal: str
    reattached: bool
    role: Role = "owner"
    type: Literal["hello"] = field(default="hello", init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Size:
    """server→viewer: the terminal's size (the owner's), after hello and on each change."""

    cols: int
    rows: int
    type: Literal["size"] = field(default="size", init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Viewer:
    """One viewer connection: its number on this terminal, its link and the link's mode."""

    id: int
    link: str
    mode: ShareMode


@dataclass(frozen=True, slots=True, kw_only=True)
class Viewers:
    """server→owner: the viewers attached now, after hello and on each change."""

    viewers: tuple[Viewer, ...]
    type: Literal["viewers"] = field(default="viewers", init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Idle:
    """server→client: the shell ends in ``seconds_left`` unless the user types."""

    seconds_left: int
    type: Literal["idle"] = field(default="idle", init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Exit:
    """server→client: the shell exited with this status; a close 1000 follows."""

    status: int
    type: Literal["exit"] = field(default="exit", init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Error:
    """server→client: a frame was refused; the connection stays up."""

    message: str
    type: Literal["error"] = field(default="error", init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong:
    type: Literal["pong"] = field(default="pong", init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Flush:
    """Ctrl-C flushed the tty's output: output received before this message and not yet
    shown may be dropped (and acknowledged), as the tty dropped what it had queued."""

    type: Literal["flush"] = field(default="flush", init=False)


MAX_FILE_BYTES: Final = (1 << 53) - 1
"""The largest ``size`` a ``download`` message names (JavaScript's largest exact integer)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Download:
    """server→client: the shell offers a file (``webterm-download FILE``); the page
    fetches ``GET /files/download/{id}`` with its token and saves it as ``name``."""

    id: str
    name: str
    size: int
    type: Literal["download"] = field(default="download", init=False)


ClientMessage = Resize | Ack | Ping | Revoke
ServerMessage = Hello | Idle | Exit | Error | Pong | Flush | Size | Viewers | Download


def encode_message(message: ClientMessage | ServerMessage) -> str:
    """The text frame for ``message`` (compact JSON, ``type`` first)."""
    if isinstance(message, Resize):
        body: dict[str, Any] = {"type": "resize", "cols": message.cols, "rows": message.rows}
    elif isinstance(message, Ack):
        body = {"type": "ack", "bytes": message.bytes}
    elif isinstance(message, Hello):
        body = {"type": "hello", "terminal": message.terminal, "reattached": message.reattached}
        if message.role != "owner":  # absent: the owner (as before there were viewers)
            body["role"] = message.role
    elif isinstance(message, Revoke):
        body = {"type": "revoke", "link": message.link}
    elif isinstance(message, Size):
        body = {"type": "size", "cols": message.cols, "rows": message.rows}
    elif isinstance(message, Viewers):
        body = {
            "type": "viewers",
            "viewers": [{"id": v.id, "link": v.link, "mode": v.mode} for v in message.viewers],
        }
    elif isinstance(message, Idle):
        body = {"type": "idle", "seconds_left": message.seconds_left}
    elif isinstance(message, Exit):
        body = {"type": "exit", "status": message.status}
    elif isinstance(message, Error):
        body = {"type": "error", "message": message.message}
    elif isinstance(message, Download):
        body = {"type": "download", "id": message.id, "name": message.name, "size": message.size}
    else:  # Ping, Pong, Flush
        body = {"type": message.type}
    return json.dumps(body, separators=(",", ":"))


def _load_object(text: str | bytes) -> dict[str, Any]:
    if len(text) > MAX_CONTROL_MESSAGE_BYTES:
        raise MalformedMessage(f"control message longer than {MAX_CONTROL_MESSAGE_BYTES} bytes")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise MalformedMessage("control message is not valid JSON") from exc
    if not isinstance(data, dict):
        raise MalformedMessage("control message must be a JSON object")
    if not isinstance(data.get("type"), str):
        raise MalformedMessage("control message has no string 'type'")
    return data


def decode_client_message(text: str | bytes) -> ClientMessage:
    """Parse a text frame a client sent. Sizes are validated, not clamped: the server
    decides what to do with a large but well-formed size (see :meth:`Resize.clamped`)."""
    data = _load_object(text)
    kind = data["type"]
    if kind == "resize":
        return Resize(
            cols=_int_field(data, "cols", 1, 1 << 16), rows=_int_field(data, "rows", 1, 1 << 16)
        )
    if kind == "ack":
        return Ack(bytes=_int_field(data, "bytes", 0, MAX_ACK_BYTES))
    if kind == "ping":
        return Ping()
    if kind == "revoke":
        return Revoke(link=_link_field(data))
    raise MalformedMessage(f"unknown message type {kind[:40]!r}")


def _link_field(data: dict[str, Any]) -> str:
    link = data.get("link")
    if not isinstance(link, str) or SHARE_LINK.fullmatch(link) is None:
        raise MalformedMessage("'link' must be a share link id")
    return link


def _viewers_field(data: dict[str, Any]) -> tuple[Viewer, ...]:
    items = data.get("viewers")
    if not isinstance(items, list) or len(items) > MAX_VIEWERS:
        raise MalformedMessage(f"'viewers' must be a list of at most {MAX_VIEWERS}")
    viewers = []
    for item in items:
        if not isinstance(item, dict) or item.get("mode") not in SHARE_MODES:
            raise MalformedMessage("a viewer needs 'id', 'link' and 'mode' (view or type)")
        viewers.append(
            Viewer(id=_int_field(item, "id", 0, 1 << 31), link=_link_field(item), mode=item["mode"])
        )
    return tuple(viewers)


def decode_server_message(text: str | bytes) -> ServerMessage:
    """Parse a text frame a server sent (used by the proxy's tests and by clients)."""
    data = _load_object(text)
    kind = data["type"]
    if kind == "hello":
        terminal, reattached = data.get("terminal"), data.get("reattached")
        if not isinstance(terminal, str) or not isinstance(reattached, bool):
            raise MalformedMessage("hello needs 'terminal' (string) and 'reattached' (bool)")
        role = data.get("role", "owner")
        if role not in ("owner", *SHARE_MODES):
            raise MalformedMessage("hello's 'role' must be owner, view or type")
        return Hello(terminal=terminal, reattached=reattached, role=role)
    if kind == "size":
        return Size(
            cols=_int_field(data, "cols", 1, 1 << 16), rows=_int_field(data, "rows", 1, 1 << 16)
        )
    if kind == "viewers":
        return Viewers(viewers=_viewers_field(data))
    if kind == "idle":
        return Idle(seconds_left=_int_field(data, "seconds_left", 0, 1 << 31))
    if kind == "exit":
        return Exit(status=_int_field(data, "status", -(1 << 31), 1 << 31))
    if kind == "error":
        message = data.get("message")
        if not isinstance(message, str):
            raise MalformedMessage("error needs a string 'message'")
        return Error(message=message)
    if kind == "pong":
        return Pong()
    if kind == "flush":
        return Flush()
    if kind == "download":
        offer_id, name = data.get("id"), data.get("name")
        if not isinstance(offer_id, str) or not isinstance(name, str):
            raise MalformedMessage("download needs 'id' and 'name' (strings) and 'size'")
        return Download(id=offer_id, name=name, size=_int_field(data, "size", 0, MAX_FILE_BYTES))
    raise MalformedMessage(f"unknown message type {kind[:40]!r}")


# --- identities and tokens ------------------------------------------------------------


def client_hash(secret: bytes, client_id: str) -> str:
    """The keyed hash of a client id that is stored on terminals and in tokens.

    Keyed with the manager's own secret so that the value written onto a pod (which
    operators and other tools can read) reveals nothing about the id and cannot be
    precomputed. 128 bits, hex: short enough for a label-safe annotation, far beyond
    guessing."""
    return hmac.new(secret, b"client\x00" + client_id.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenClaims:
    """What a token asserts: ``client`` (a :func:`client_hash`) may open ``terminal`` as
    started with ``instance`` (its pod UID) until ``expires_at`` (Unix seconds). Every
    token's audience is :data:`TOKEN_AUDIENCE`."""

    terminal: str
    instance: str
    client: str
    expires_at: int

    def __post_init__(self) -> None:
        if not self.terminal or len(self.terminal) > 253:
            raise InvalidToken("terminal name must be 1-253 characters")
        if len(self.instance) > 253 or len(self.client) > 253:
            raise InvalidToken("instance and client must be at most 253 characters")


@dataclass(frozen=True, slots=True, kw_only=True)
class ShareClaims:
    """What a share token asserts: whoever holds share link ``link`` may attach to
    ``terminal`` as started with ``instance`` as a viewer allowed to ``mode`` (``view``
    or ``type``), until ``expires_at``. Its audience is :data:`SHARE_AUDIENCE`."""

    terminal: str
    instance: str
    link: str
    mode: ShareMode
    expires_at: int

    def __post_init__(self) -> None:
        if not self.terminal or len(self.terminal) > 253 or len(self.instance) > 253:
            raise InvalidToken("terminal and instance must be 1-253 characters")
        if SHARE_LINK.fullmatch(self.link) is None:
            raise InvalidToken("link is not a share link id")
        if self.mode not in SHARE_MODES:
            raise InvalidToken("mode must be view or type")


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc
    if _b64encode(raw) != text:
        raise ValueError("not canonical base64url")
    return raw


def key_id(public: bytes) -> str:
    """A public key's id: base64url of the first 12 bytes of SHA-256 of its raw bytes."""
    return _b64encode(hashlib.sha256(public).digest()[:12])


def _public_key(raw: bytes) -> bytes:
    """``raw`` if it is a raw Ed25519 public key (32 bytes), else ValueError."""
    try:
        VerifyKey(raw)
    except (ValueError, TypeError) as exc:  # nacl's TypeError is a ValueError too
        raise ValueError("not an Ed25519 public key") from exc
    return raw


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The manager's Ed25519 private key; only the manager ever holds one."""

    private: Ed25519PrivateKey = field(repr=False)
    kid: str

    @classmethod
    def generate(cls) -> SigningKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls.of(Ed25519PrivateKey.generate())

    @classmethod
    def of(cls, private: Ed25519PrivateKey) -> SigningKey:
        return cls(private, key_id(private.public_key().public_bytes_raw()))

    @property
    def public(self) -> bytes:
        """The raw public key (32 bytes)."""
        return self.private.public_key().public_bytes_raw()

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        """A PKCS#8 PEM Ed25519 private key (``webterm keygen``, ``openssl genpkey
        -algorithm ed25519``); ValueError for anything else."""
        from cryptography.hazmat.primitives import serialization  # the manager's only
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        try:
            private = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError("not an unencrypted PEM private key") from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError("the signing key must be an Ed25519 key")
        return cls.of(private)

    def to_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def key_set(self, previous: KeySet | None = None) -> KeySet:
        """This key's public half, plus ``previous`` (retiring keys during a rotation)."""
        keys = dict(previous.keys) if previous is not None else {}
        keys[self.kid] = self.public
        return KeySet(keys)


@dataclass(frozen=True, slots=True)
class KeySet:
    """The public keys tokens may be signed with (raw, 32 bytes each), by key id. What
    every verifier holds; it can check a token, never make one. Published as a JWKS
    (RFC 8037 OKP keys)."""

    keys: Mapping[str, bytes]

    @classmethod
    def from_pem(cls, pem: bytes) -> KeySet:
        """One PEM public key (a ``--previous-public-key-file``)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            public = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError) as exc:
            raise ValueError("not a PEM public key") from exc
        if not isinstance(public, Ed25519PublicKey):
            raise ValueError("public keys must be Ed25519 keys")
        raw = public.public_bytes_raw()
        return cls({key_id(raw): raw})

    @classmethod
    def from_jwks(cls, text: str | bytes) -> KeySet:
        """Parse a JWKS document; keys that are not Ed25519 signing keys are skipped, a
        key whose ``kid`` is not its id is refused (ValueError)."""
        try:
            document = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ValueError("the key set is not JSON") from exc
        items = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(items, list):
            raise ValueError("the key set has no 'keys' list")
        keys: dict[str, bytes] = {}
        for item in items:
            if not isinstance(item, dict) or item.get("kty") != "OKP":
                continue
            if item.get("crv") != "Ed25519" or item.get("use", "sig") != "sig":
                continue
            try:
                public = _public_key(_b64decode(str(item.get("x"))))
            except ValueError as exc:
                raise ValueError("a key's 'x' is not an Ed25519 public key") from exc
            if item.get("kid") != key_id(public):
                raise ValueError("a key's 'kid' does not match the key")
            keys[key_id(public)] = public
        return cls(keys)

    def to_jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "kid": kid,
                    "x": _b64encode(public),
                    "use": "sig",
                    "alg": TOKEN_ALGORITHM,
                }
                for kid, public in self.keys.items()
            ]
        }

    def union(self, other: KeySet) -> KeySet:
        return KeySet({**self.keys, **other.keys})


def _json_segment(data: dict[str, Any]) -> str:
    return _b64encode(json.dumps(data, separators=(",", ":")).encode())


def sign_token(key: SigningKey, claims: TokenClaims) -> str:
    """A token carrying ``claims``: a JWS compact JWT signed with ``key`` (EdDSA,
    RFC 8037), its ``kid`` in the header."""
    return _sign(
        key,
        {
            "terminal": claims.terminal,
            "instance": claims.instance,
            "client": claims.client,
            "exp": claims.expires_at,
            "aud": TOKEN_AUDIENCE,
        },
    )


def sign_share_token(key: SigningKey, claims: ShareClaims) -> str:
    """A share token carrying ``claims`` (audience :data:`SHARE_AUDIENCE`), signed as
    :func:`sign_token` signs."""
    return _sign(
        key,
        {
            "terminal": claims.terminal,
            "instance": claims.instance,
            "link": claims.link,
            "mode": claims.mode,
            "exp": claims.expires_at,
            "aud": SHARE_AUDIENCE,
        },
    )


def _sign(key: SigningKey, claims: dict[str, Any]) -> str:
    header = _json_segment({"alg": TOKEN_ALGORITHM, "kid": key.kid, "typ": "JWT"})
    payload = _json_segment(claims)
    signing_input = f"{header}.{payload}"
    return f"{signing_input}.{_b64encode(key.private.sign(signing_input.encode()))}"


@dataclass(frozen=True, slots=True)
class _Jws:
    header: dict[str, Any]
    signing_input: bytes
    payload: bytes
    signature: bytes


def _split(token: str) -> _Jws:
    """A compact JWS taken apart: three canonical base64url segments, a JSON object
    header. Nothing in it is trusted yet."""
    if len(token) > _MAX_TOKEN_CHARS:
        raise InvalidToken("token too long")
    segments = token.split(".")
    try:
        if len(segments) != 3:
            raise ValueError("not three segments")
        # base64 ignores the spare low bits of a segment's last character: insist on
        # the one canonical spelling, so that a token has exactly one valid form
        header_raw, payload, signature = (_b64decode(segment) for segment in segments)
        header = json.loads(header_raw)
    except (ValueError, RecursionError) as exc:  # also UnicodeDecodeError, JSONDecodeError
        raise InvalidToken("token is not a JWT in canonical base64url") from exc
    if not isinstance(header, dict):
        raise InvalidToken("token header is not a JSON object")
    signing_input = f"{segments[0]}.{segments[1]}".encode()
    return _Jws(header, signing_input, payload, signature)


def token_key_id(token: str) -> str:
    """The ``kid`` a token names (unverified: only to pick or fetch the key)."""
    return _key_id_of(_split(token))


def _key_id_of(jws: _Jws) -> str:
    if jws.header.get("alg") != TOKEN_ALGORITHM:
        raise InvalidToken(f"token is not signed with {TOKEN_ALGORITHM}")
    if "crit" in jws.header:  # RFC 7515 4.1.11: extensions we do not implement
        raise InvalidToken("token header has critical extensions")
    kid = jws.header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("token names no key id")
    return kid


def read_token(keys: KeySet, token: str, *, now: float, leeway: float = 0) -> TokenClaims:
    """The claims of a genuine, unexpired ``token``, without binding it to a terminal:
    for callers that first need to know which terminal it names (the manager's report
    endpoints, the webserver's proxy). Check ``terminal`` and ``instance`` afterwards.

    The algorithm is pinned (EdDSA; ``none``, HMAC or anything else is refused before a
    key is looked up), the signature is verified before the claims are read, ``exp``
    and ``aud`` are required. ``leeway`` accepts a token that many seconds past its
    expiry (the manager's reports). Raises :class:`UnknownKey` for a key id not in
    ``keys``.

    Verification is PyNaCl's (libsodium's) Ed25519 over the JWS signing input, neither
    PyJWT nor ``cryptography``: every terminal server does this, and importing PyJWT
    (all of ``cryptography``'s algorithms and ``urllib``) cost each one ~0.3 s of CPU at
    start and ~2.4 MiB, ``cryptography`` alone 6.8 MiB of its 40, PyNaCl 0.8 MiB. Only
    the manager, which signs, loads ``cryptography``. The tests check both ways
    against PyJWT."""
    data = _verified_payload(keys, token)
    if data.get("aud") != TOKEN_AUDIENCE:
        raise WrongTerminal("token is for another audience")
    return _alive(_terminal_claims(data), now, leeway)


def read_any_token(keys: KeySet, token: str, *, now: float) -> TokenClaims | ShareClaims:
    """The claims of a genuine, unexpired token of either audience: an owner's
    (:class:`TokenClaims`) or a share link's (:class:`ShareClaims`), checked as
    :func:`read_token` checks; any other audience is :class:`WrongTerminal`."""
    data = _verified_payload(keys, token)
    audience = data.get("aud")
    if audience == TOKEN_AUDIENCE:
        return _alive(_terminal_claims(data), now, 0)
    if audience == SHARE_AUDIENCE:
        try:
            share = ShareClaims(
                terminal=_string(data, "terminal"),
                instance=_string(data, "instance"),
                link=_string(data, "link"),
                mode=data["mode"],
                expires_at=_expiry(data),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidToken("unreadable token claims") from exc
        return _alive(share, now, 0)
    raise WrongTerminal("token is for another audience")


def _verified_payload(keys: KeySet, token: str) -> dict[str, Any]:
    jws = _split(token)
    public = keys.keys.get(_key_id_of(jws))
    if public is None:
        raise UnknownKey("token is signed by an unknown or retired key")
    try:
        VerifyKey(public).verify(jws.signing_input, jws.signature)
    except (BadSignatureError, ValueError):  # ValueError: a signature of the wrong size
        raise InvalidToken("bad signature") from None
    try:
        data = json.loads(jws.payload)
    except (ValueError, RecursionError) as exc:  # signed by us: skew
        raise InvalidToken("unreadable token claims") from exc
    if not isinstance(data, dict) or "aud" not in data:
        raise InvalidToken("unreadable token claims")
    return data


def _string(data: dict[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string")
    return value


def _expiry(data: dict[str, Any]) -> int:
    value = data["exp"]
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("exp must be an integer")
    return value


def _terminal_claims(data: dict[str, Any]) -> TokenClaims:
    try:
        return TokenClaims(
            terminal=_string(data, "terminal"),
            instance=_string(data, "instance"),
            client=_string(data, "client"),
            expires_at=_expiry(data),
        )
    except (KeyError, TypeError) as exc:
        raise InvalidToken("unreadable token claims") from exc


_Claims = TypeVar("_Claims", TokenClaims, ShareClaims)


def _alive(claims: _Claims, now: float, leeway: float) -> _Claims:
    if now >= claims.expires_at + leeway:
        raise ExpiredToken("token expired")
    if claims.expires_at - now > MAX_TOKEN_TTL:
        raise InvalidToken("token lifetime beyond the maximum")
    return claims


def verify_token(
    keys: KeySet,
    token: str,
    *,
    terminal: str,
    instance: str,
    now: float,
    leeway: float = 0,
) -> TokenClaims:
    """The claims of ``token`` if it may open ``terminal``/``instance`` at ``now``
    (see :func:`read_token`). An empty ``instance`` in the token never matches a
    non-empty one."""
    claims = read_token(keys, token, now=now, leeway=leeway)
    if not hmac.compare_digest(claims.terminal.encode(), terminal.encode()) or not (
        hmac.compare_digest(claims.instance.encode(), instance.encode())
    ):
        raise WrongTerminal("token is for another terminal")
    return claims


def verify_any_token(
    keys: KeySet, token: str, *, terminal: str, instance: str, now: float
) -> TokenClaims | ShareClaims:
    """:func:`read_any_token`'s claims if they may open ``terminal``/``instance``."""
    claims = read_any_token(keys, token, now=now)
    if not hmac.compare_digest(claims.terminal.encode(), terminal.encode()) or not (
        hmac.compare_digest(claims.instance.encode(), instance.encode())
    ):
        raise WrongTerminal("token is for another terminal")
    return claims


def subprotocols_for(token: str) -> list[str]:
    """What a client offers in ``Sec-WebSocket-Protocol``."""
    return [SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX + token]


def token_from_subprotocols(offered: list[str] | tuple[str, ...]) -> str | None:
    """The token a client offered, or None. A client that does not offer
    :data:`SUBPROTOCOL` speaks another protocol and gets no token either."""
    if SUBPROTOCOL not in offered:
        return None
    for item in offered:
        if item.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return item[len(TOKEN_SUBPROTOCOL_PREFIX) :]
    return None


# --- allocations (manager -> webserver) -------------------------------------------------

TERMINAL_NAME: Final = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
"""Terminal names are DNS labels (pod names): they go into URLs and Kubernetes names."""


class Allocation(msgspec.Struct, frozen=True, kw_only=True):
    """The manager's answer to ``POST /v1/allocations``: the ``terminal`` the client may
    open, the ``address`` (``host:port``) it listens on, a ``token`` for it, whether
    the client held it already (``reconnect``), and the client's ``client_hash`` (the
    token's ``client`` claim, keyed with the manager's own secret: the webserver counts
    open sessions per client by it). Other fields are ignored when reading."""

    terminal: str
    address: str
    token: str
    reconnect: bool = False
    client_hash: str


_allocation_encoder: Final = msgspec.json.Encoder()
_allocation_decoder: Final = msgspec.json.Decoder(Allocation)


def encode_allocation(allocation: Allocation) -> bytes:
    """The JSON body of an allocation answer (compact, fields in declaration order)."""
    return _allocation_encoder.encode(allocation)


def decode_allocation(body: bytes | str) -> Allocation:
    """An allocation answer's body as an :class:`Allocation`, or raise
    :class:`MalformedAllocation`: its ``terminal`` must be a DNS label and its
    ``address`` a ``host:port``."""
    try:
        allocation = _allocation_decoder.decode(body)
    except msgspec.DecodeError as exc:  # ValidationError (wrong shape) is a DecodeError
        raise MalformedAllocation(f"not an allocation: {exc}") from exc
    if TERMINAL_NAME.fullmatch(allocation.terminal) is None:
        raise MalformedAllocation("'terminal' is not a terminal name")
    if ":" not in allocation.address:
        raise MalformedAllocation("'address' is not host:port")
    return allocation
