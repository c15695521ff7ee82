"""``webterm keygen`` and ``webterm token``: the operator's side of the keys, as a
subprocess (the real CLI)."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from pathlib import Path

from webterm.keys import load_signing_key
from webterm.protocol import KeySet, verify_token


def webterm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webterm", *args], capture_output=True, text=True, check=False
    )


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    key_file = tmp_path / "signing-key.pem"
    assert webterm("keygen", "--out", str(key_file)).returncode == 0
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert webterm("keygen", "--out", str(key_file)).returncode != 0  # never overwritten


def test_public_halves_and_tokens_match_the_key(tmp_path: Path) -> None:
    key_file = tmp_path / "signing-key.pem"
    key_file.write_text(webterm("keygen").stdout)
    key = load_signing_key(str(key_file))
    pem = webterm("keygen", "--public-of", str(key_file)).stdout
    assert set(KeySet.from_pem(pem.encode()).keys) == {key.kid}
    jwks = webterm("keygen", "--public-of", str(key_file), "--jwks").stdout
    keys = KeySet.from_jwks(jwks)
    assert set(keys.keys) == {key.kid}
    assert "PRIVATE" not in pem + jwks
    token = webterm(
        "token", "--terminal", "demo", "--instance", "1", "--signing-key-file", str(key_file)
    ).stdout.strip()
    claims = verify_token(keys, token, terminal="demo", instance="1", now=time.time())
    assert claims.expires_at <= time.time() + 60


def test_a_manager_without_its_key_or_the_webserver_credential_does_not_start(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "signing-key.pem"
    key_file.write_text(webterm("keygen").stdout)
    (tmp_path / "short").write_text("too-short")
    base = ["manager", "--port", "0", "--secret-file", str(key_file)]
    missing = webterm(*base, "--webserver-credential-file", str(tmp_path / "short"))
    assert missing.returncode == 2
    assert "--signing-key-file" in missing.stderr
    short = webterm(*base, "--signing-key-file", str(key_file),
                    "--webserver-credential-file", str(tmp_path / "short"))  # fmt: skip
    assert short.returncode == 2
    assert "at least 16 bytes" in short.stderr
    not_a_key = webterm(*base, "--signing-key-file", str(tmp_path / "short"),
                        "--webserver-credential-file", str(key_file))  # fmt: skip
    assert not_a_key.returncode == 2
    assert "signing key" in not_a_key.stderr
