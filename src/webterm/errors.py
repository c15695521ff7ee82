"""The base of every error webterm raises on purpose, and the tree below it.

Callers decide by type, never by message text: the message is for people (logs, error
bodies), the type and :attr:`WebtermError.error_status_hint` are for code. Each error is
defined beside the code that raises it and derives from one of these bases::

    WebtermError                     error_status_hint 500
    ├── ConfigError                  webterm.config: a setting that cannot work
    │   └── SandboxUnavailable       webterm.manager.sandbox: bwrap missing or blocked
    ├── ProtocolError                webterm.protocol: 400
    │   ├── MalformedMessage         a control frame that is not a valid message
    │   ├── MalformedAllocation      a manager's allocation answer that is not one
    │   └── TokenError               401: a token that must not open this terminal
    │       ├── InvalidToken         undecodable, forged, or claims that cannot be
    │       ├── ExpiredToken         genuine but past its expiry
    │       ├── WrongTerminal        403: genuine, but for another terminal or audience
    │       └── UnknownKey           signed by a key the verifier does not hold
    ├── ExchangeError                webterm.http1: 502, no usable HTTP answer
    │   ├── NoAnswer                 closed before a byte: safe to send again
    │   └── BrokenAnswer             cut off, or not HTTP
    ├── PoolError                    webterm.manager.pool: 409, the pool is unchanged
    │   ├── IllegalTransition        no such event in this terminal's state
    │   ├── UnknownTerminal          not one of the pool's terminals (any more)
    │   └── UnknownClient            404: this client holds no terminal
    ├── ClaimLost                    webterm.manager.backend: 409, another manager won
    ├── Unconfirmed                  webterm.manager.backend: 503, a recycle not yet durable
    ├── KubeError                    webterm.manager.kube.client: 502, the API said no
    │   ├── Conflict                 409
    │   ├── NotFound                 404
    │   └── Gone                     410: an expired resourceVersion
    ├── ReportError                  webterm.pty.report: 502, the manager did not answer
    ├── FileError                    webterm.pty.files: 400, a file transfer refused
    │   ├── BadFileName              a name with a path, a control character or ``..``
    │   ├── TooLarge                 413: over --max-upload
    │   ├── NoSpace                  507: more than the filesystem has free
    │   ├── NameTaken                409: every candidate name exists
    │   ├── NotWritable              403: the shell's user may not write there
    │   ├── WriteFailed              500: the filesystem failed otherwise
    │   └── NoDirectory              409: no shell, or its directory is gone
    ├── FetchError                   webterm.keys: 502, no public keys from the keys URL
    └── Refusal                      webterm.service.errors: a request's answer instead
        │                            of going on (its status, message, retry_after)
        └── ManagerError             webterm.webserver.managerclient: 503 (or 429), no
            │                        allocation from the manager
            ├── ManagerUnavailable   it could not be reached
            ├── ManagerRefused       it refused (its 429 stays 429)
            └── ManagerAnsweredBadly it answered 200 with something else

As in h11 (``ProtocolError.error_status_hint``), the hint is the HTTP status a service
answers with when this error ends a request; a service may know better and override it.
"""

from __future__ import annotations

__all__ = ["WebtermError"]


class WebtermError(Exception):
    """Base of webterm's errors. ``error_status_hint``: the HTTP status to answer with."""

    error_status_hint: int = 500
