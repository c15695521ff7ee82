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
  ``base64url(hmac_sha256(secret, payload) || payload)`` without padding, where the
  payload is compact JSON of :class:`TokenClaims`. Base64url characters are all HTTP
  "token" characters, so the token travels as the WebSocket subprotocol
  ``webterm.token.<token>`` and never appears in a URL.
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
        └── WrongTerminal     [403] signature fine, but for another terminal/instance/audience
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final, Literal

import msgspec

from webterm.errors import WebtermError

__all__ = [
    "CLOSE_REASONS",
    "MAX_CONTROL_MESSAGE_BYTES",
    "MAX_FRAME_BYTES",
    "MAX_TOKEN_TTL",
    "SUBPROTOCOL",
    "TERMINAL_NAME",
    "TOKEN_SUBPROTOCOL_PREFIX",
    "Ack",
    "Allocation",
    "ClientMessage",
    "CloseCode",
    "Error",
    "Exit",
    "ExpiredToken",
    "Flush",
    "Hello",
    "Idle",
    "InvalidToken",
    "MalformedAllocation",
    "MalformedMessage",
    "Ping",
    "Pong",
    "ProtocolError",
    "Resize",
    "ServerMessage",
    "TokenClaims",
    "TokenError",
    "WrongTerminal",
    "client_hash",
    "decode_allocation",
    "decode_client_message",
    "decode_server_message",
    "encode_allocation",
    "encode_message",
    "read_token",
    "sign_token",
    "subprotocols_for",
    "token_from_subprotocols",
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

_SIGNATURE_BYTES: Final = 32  # HMAC-SHA256
_MAX_TOKEN_CHARS: Final = 2048  # a real token is ~200 characters


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
class Hello:
    """server→client: first message on every connection."""

    terminal: str
    reattached: bool
    type: Literal["hello"] = field(default="hello", init=False)


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


ClientMessage = Resize | Ack | Ping
ServerMessage = Hello | Idle | Exit | Error | Pong | Flush


def encode_message(message: ClientMessage | ServerMessage) -> str:
    """The text frame for ``message`` (compact JSON, ``type`` first)."""
    if isinstance(message, Resize):
        body: dict[str, Any] = {"type": "resize", "cols": message.cols, "rows": message.rows}
    elif isinstance(message, Ack):
        body = {"type": "ack", "bytes": message.bytes}
    elif isinstance(message, Hello):
        body = {"type": "hello", "terminal": message.terminal, "reattached": message.reattached}
    elif isinstance(message, Idle):
        body = {"type": "idle", "seconds_left": message.seconds_left}
    elif isinstance(message, Exit):
        body = {"type": "exit", "status": message.status}
    elif isinstance(message, Error):
        body = {"type": "error", "message": message.message}
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
    raise MalformedMessage(f"unknown message type {kind[:40]!r}")


def decode_server_message(text: str | bytes) -> ServerMessage:
    """Parse a text frame a server sent (used by the proxy's tests and by clients)."""
    data = _load_object(text)
    kind = data["type"]
    if kind == "hello":
        terminal, reattached = data.get("terminal"), data.get("reattached")
        if not isinstance(terminal, str) or not isinstance(reattached, bool):
            raise MalformedMessage("hello needs 'terminal' (string) and 'reattached' (bool)")
        return Hello(terminal=terminal, reattached=reattached)
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
    raise MalformedMessage(f"unknown message type {kind[:40]!r}")


# --- identities and tokens ------------------------------------------------------------


def client_hash(secret: bytes, client_id: str) -> str:
    """The keyed hash of a client id that is stored on terminals and in tokens.

    Keyed with the shared secret so that the value written onto a pod (which operators
    and other tools can read) reveals nothing about the id and cannot be precomputed.
    128 bits, hex: short enough for a label-safe annotation, far beyond guessing."""
    return hmac.new(secret, b"client\x00" + client_id.encode(), hashlib.sha256).hexdigest()[:32]


Audience = Literal["terminal", "manager"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenClaims:
    """What a token asserts.

    ``audience`` is ``"terminal"`` for a browser opening a terminal, ``"manager"`` for a
    terminal server calling the manager (recycle), so one kind never serves as the other.
    ``expires_at`` is in Unix seconds."""

    terminal: str
    instance: str
    client: str
    expires_at: int
    audience: Audience = "terminal"

    def __post_init__(self) -> None:
        if not self.terminal or len(self.terminal) > 253:
            raise InvalidToken("terminal name must be 1-253 characters")
        if len(self.instance) > 253 or len(self.client) > 253:
            raise InvalidToken("instance and client must be at most 253 characters")


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if len(text) > _MAX_TOKEN_CHARS:
        raise InvalidToken("token too long")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken("token is not base64url") from exc
    # Base64 ignores the spare low bits of the last character: insist on the one
    # canonical spelling so that a token has exactly one valid form.
    if _b64encode(raw) != text:
        raise InvalidToken("token is not canonical base64url")
    return raw


def sign_token(secret: bytes, claims: TokenClaims) -> str:
    """A token carrying ``claims``, signed with ``secret``."""
    payload = json.dumps(
        {
            "t": claims.terminal,
            "i": claims.instance,
            "c": claims.client,
            "e": claims.expires_at,
            "a": claims.audience,
        },
        separators=(",", ":"),
    ).encode()
    signature = hmac.new(secret, payload, hashlib.sha256).digest()
    return _b64encode(signature + payload)


def read_token(secret: bytes, token: str, *, now: float, audience: Audience) -> TokenClaims:
    """The claims of a genuine, unexpired ``token`` for ``audience``, without binding it
    to a terminal: for callers that first need to know which terminal it names (the
    manager's recycle endpoint, the webserver's proxy). Check ``terminal`` afterwards."""
    claims = _decode(secret, token)
    if claims.audience != audience:
        raise WrongTerminal("token is for another audience")
    _check_lifetime(claims, now)
    return claims


def _decode(secret: bytes, token: str) -> TokenClaims:
    """The claims of a token signed with ``secret``. The signature is compared in
    constant time before anything in the payload is trusted."""
    raw = _b64decode(token)
    if len(raw) <= _SIGNATURE_BYTES:
        raise InvalidToken("token too short")
    signature, payload = raw[:_SIGNATURE_BYTES], raw[_SIGNATURE_BYTES:]
    expected = hmac.new(secret, payload, hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise InvalidToken("bad signature")
    try:
        data = json.loads(payload)
        return TokenClaims(
            terminal=data["t"],
            instance=data["i"],
            client=data["c"],
            expires_at=int(data["e"]),
            audience=data["a"],
        )
    except (ValueError, KeyError, TypeError) as exc:  # signed by us, so a version skew
        raise InvalidToken("unreadable token payload") from exc


def _check_lifetime(claims: TokenClaims, now: float) -> None:
    if now >= claims.expires_at:
        raise ExpiredToken("token expired")
    if claims.expires_at - now > MAX_TOKEN_TTL:
        raise InvalidToken("token lifetime beyond the maximum")


def verify_token(
    secret: bytes,
    token: str,
    *,
    terminal: str,
    instance: str,
    now: float,
    audience: Audience = "terminal",
) -> TokenClaims:
    """The claims of ``token`` if it may open ``terminal``/``instance`` at ``now``.

    The signature is compared in constant time before anything in the payload is
    trusted. An empty ``instance`` in the token never matches a non-empty one."""
    claims = _decode(secret, token)
    if claims.audience != audience:
        raise WrongTerminal("token is for another audience")
    if not hmac.compare_digest(claims.terminal.encode(), terminal.encode()) or not (
        hmac.compare_digest(claims.instance.encode(), instance.encode())
    ):
        raise WrongTerminal("token is for another terminal")
    _check_lifetime(claims, now)
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
    open, the ``address`` (``host:port``) it listens on, a ``token`` for it, and whether
    the client held it already (``reconnect``). Other fields are ignored when reading."""

    terminal: str
    address: str
    token: str
    reconnect: bool = False


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
