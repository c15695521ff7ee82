"""The keys and credentials the tests' services share (what ``webterm up`` generates):
one manager signing key, its public key set (all a terminal may hold), the webserver's
credential to the manager, and a token factory standing in for the manager."""

from __future__ import annotations

import hashlib
import json
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from webterm.config import PUBLIC_KEYS_ENV, KeySource
from webterm.protocol import (
    ShareClaims,
    ShareMode,
    SigningKey,
    TokenClaims,
    sign_share_token,
    sign_token,
)

KEY = SigningKey.of(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"webterm tests").digest()))
"""The same in every process (tests that spawn helpers share it); tests only."""
KEYS = KEY.key_set()
KEY_SOURCE = KeySource(keys=KEYS)
CREDENTIAL = b"webserver-credential-0123456789"
AUTH = {"Authorization": "Bearer " + CREDENTIAL.decode()}
MANAGER_SECRET = b"manager-test-secret-0123456789"
WEBSERVER_SECRET = b"webserver-test-secret-0123456789"
KEYS_ENV = {PUBLIC_KEYS_ENV: json.dumps(KEYS.to_jwks())}
"""The environment a terminal server needs: the public keys, nothing that signs."""


def manager_keys() -> dict[str, object]:
    """The ``ManagerConfig`` fields for the shared key and credential."""
    return {"secret": MANAGER_SECRET, "signing_key": KEY, "webserver_credential": CREDENTIAL}


def token(
    terminal: str,
    instance: str = "",
    *,
    client: str = "client",
    ttl: int = 60,
    key: SigningKey = KEY,
) -> str:
    """A token as the manager signs it."""
    claims = TokenClaims(
        terminal=terminal, instance=instance, client=client, expires_at=int(time.time()) + ttl
    )
    return sign_token(key, claims)


def share_token(
    terminal: str,
    instance: str = "",
    *,
    link: str = "link-a",
    mode: ShareMode = "view",
    ttl: int = 3600,
    key: SigningKey = KEY,
) -> str:
    """A share link's token as the manager signs it."""
    claims = ShareClaims(
        terminal=terminal,
        instance=instance,
        link=link,
        mode=mode,
        expires_at=int(time.time()) + ttl,
    )
    return sign_share_token(key, claims)
