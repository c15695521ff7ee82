"""Who may call the manager. The manager alone signs tokens (Ed25519,
:attr:`ManagerConfig.signing_key`) and publishes their public keys at ``GET /v1/keys``
(unauthenticated). Allocation and listing calls need the webserver's credential
(``Authorization: Bearer``: 401 without, 403 wrong). A terminal's report is
authenticated with the latest token a browser opened that terminal with, accepted up to
:data:`REPORT_GRACE` past its expiry, and only for the terminal and instance it names,
which must be the pool's current ones (else 403, nothing changed): a terminal can report
on itself only. Refusals are logged without the credential or token."""

from __future__ import annotations

import hmac
import logging
import time
from typing import Final

from quart import request

from webterm.manager.core import Manager
from webterm.protocol import TokenClaims, TokenError, UnknownKey, read_token
from webterm.service.errors import Refusal

log = logging.getLogger("webterm.manager")

REPORT_GRACE: Final = 24 * 3600
"""Seconds past its expiry a terminal's token still authenticates that terminal's
reports: the terminal reports with the latest token a browser sent it, possibly a
whole session (``--max-session``) ago; a day bounds it."""


def _bearer() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def require_webserver(manager: Manager) -> None:
    """Raise :class:`Refusal` unless the request carries the webserver's credential."""
    presented = _bearer()
    if presented is None:
        log.warning("refused %s %s: no credential", request.method, request.path[:80])
        raise Refusal(401, "the webserver's credential is required")
    if not hmac.compare_digest(presented.encode(), manager.config.webserver_credential):
        log.warning("refused %s %s: wrong credential", request.method, request.path[:80])
        raise Refusal(403, "wrong credential")


def terminal_claims(manager: Manager, name: str) -> TokenClaims:
    """The claims of the report's token if it speaks for terminal ``name`` as it is now,
    else raise :class:`Refusal`."""
    token = _bearer()
    if token is None:
        raise Refusal(401, "a terminal's token is required")
    try:
        claims = read_token(manager.config.public_keys, token, now=time.time(), leeway=REPORT_GRACE)
    except UnknownKey as exc:
        log.warning("refused a report for %s: %s", name[:64], exc)
        raise Refusal(401, str(exc)) from None
    except TokenError as exc:
        log.warning("refused a report for %s: %s", name[:64], exc)
        raise Refusal(401, "invalid token") from None
    current = manager.pool.terminals.get(name)
    if claims.terminal != name or current is None or current.instance != claims.instance:
        log.warning(
            "refused a report for %s: the token is for %s (instance %s)",
            name[:64], claims.terminal[:64], claims.instance[:40] or "-",
        )  # fmt: skip
        raise Refusal(403, "token is for another terminal or instance")
    return claims


__all__ = ["REPORT_GRACE", "require_webserver", "terminal_claims"]
