"""The ``webterm`` command line: settings come from the config dataclasses, every flag
reads ``WEBTERM_<FLAG>``, and a setting that cannot work is a usage error (exit 2 and a
message), never a traceback."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tests.credentials import CREDENTIAL, KEY, KEY_SOURCE, KEYS_ENV
from webterm import cli
from webterm.config import ManagerConfig, PtyConfig, UpConfig, WebserverConfig

SECRET = "cli-test-secret-0123456789"


@pytest.fixture
def key_files(tmp_path: Path) -> dict[str, str]:
    """The environment naming a signing key and the webserver's credential in files,
    and the public keys a terminal server needs."""
    (tmp_path / "signing-key.pem").write_bytes(KEY.to_pem())
    (tmp_path / "credential").write_bytes(CREDENTIAL)
    return {
        "WEBTERM_SIGNING_KEY_FILE": str(tmp_path / "signing-key.pem"),
        "WEBTERM_WEBSERVER_CREDENTIAL_FILE": str(tmp_path / "credential"),
        "WEBTERM_MANAGER_CREDENTIAL_FILE": str(tmp_path / "credential"),
        **KEYS_ENV,
    }


def commands() -> list[click.Command]:
    return list(cli.main.commands.values())  # type: ignore[attr-defined]


def test_every_flag_reads_its_environment_variable() -> None:
    for command in [cli.main, *commands()]:
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                flag = next(o for o in param.opts if o.startswith("--"))
                if flag == "--version":
                    continue
                assert param.envvar == "WEBTERM_" + flag[2:].replace("-", "_").upper(), flag


@pytest.fixture
def configs(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """What each command would serve, instead of serving it."""
    seen: list[object] = []
    monkeypatch.setattr(cli, "_run", lambda serve, config: seen.append(config))
    monkeypatch.setattr("webterm.pty.privacy.hide_from_same_user", lambda: None)
    monkeypatch.setenv("WEBTERM_SECRET", SECRET)
    return seen


def test_without_flags_each_service_gets_its_configs_defaults(
    configs: list[object], key_files: dict[str, str]
) -> None:
    runner = CliRunner()
    for args in (["up"], ["manager"], ["webserver", "--manager-url", "http://m"], ["pty"]):
        result = runner.invoke(cli.main, args, env={"WEBTERM_SECRET": SECRET, **key_files})
        assert result.exit_code == 0, result.output
    up, manager, webserver, pty = configs
    secret = SECRET.encode()
    assert up == UpConfig()
    assert isinstance(manager, ManagerConfig)
    assert manager.signing_key.kid == KEY.kid
    assert dataclasses.replace(manager, signing_key=KEY) == ManagerConfig(
        secret=secret, signing_key=KEY, webserver_credential=CREDENTIAL
    )
    assert webserver == WebserverConfig(
        secret=secret, manager_url="http://m", manager_credential=CREDENTIAL, keys=KEY_SOURCE
    )
    assert isinstance(pty, PtyConfig)
    assert dataclasses.replace(pty, name="n") == PtyConfig(keys=KEY_SOURCE, name="n")


def test_settings_from_the_environment_and_flags(
    configs: list[object], key_files: dict[str, str]
) -> None:
    env = {
        **key_files,
        "WEBTERM_MAX_TERMINALS": "7",
        "WEBTERM_IDENTITY": "ip",
        "WEBTERM_SHELL": "sh -c 'exec cat'",
        "WEBTERM_CLIENT_RATE": "2/5",
        "WEBTERM_TRUSTED_PROXY": "10.0.0.1 10.0.0.2",
        "WEBTERM_SCROLLBACK": "4096",
    }
    runner = CliRunner()
    for args in (
        ["up", "--spares", "3"],
        ["webserver", "--manager-url", "http://m"],
        ["pty", "--name", "t-0"],
    ):
        result = runner.invoke(cli.main, args, env={"WEBTERM_SECRET": SECRET, **env})
        assert result.exit_code == 0, result.output
    up, webserver, pty = configs
    assert isinstance(up, UpConfig)
    assert isinstance(webserver, WebserverConfig)
    assert isinstance(pty, PtyConfig)
    assert (up.spares, up.max_terminals, up.identity) == (3, 7, "ip")
    assert up.shell == ("sh", "-c", "exec cat")
    assert webserver.client_rate == (2.0, 5)
    assert webserver.trusted_proxies == ("10.0.0.1", "10.0.0.2")
    assert (pty.name, pty.scrollback_bytes) == ("t-0", 4096)


def test_a_choice_outside_the_literal_is_refused(configs: list[object]) -> None:
    result = CliRunner().invoke(cli.main, ["manager", "--backend", "docker"])
    assert result.exit_code == 2
    assert "'local', 'kubernetes'" in result.output
    assert not configs


def webterm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webterm", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["manager", "--secret-file", "/nonexistent/secret"], "cannot read secret file"),
        (["token", "--terminal", "t-0", "--signing-key-file", "/nonexistent"], "signing key"),
        (["manager"], "no secret"),
        (["manager", "--signing-key-file", "/nonexistent"], "cannot read signing key"),
        (["webserver", "--manager-url", "http://m", "--manager-credential-file", "/nonexistent"],
         "cannot read manager credential"),
        (["pty"], "no public keys"),
    ],
)  # fmt: skip
def test_a_bad_secret_file_is_a_usage_error(
    args: list[str], message: str, key_files: dict[str, str]
) -> None:
    env = {k: v for k, v in key_files.items() if k != "WEBTERM_PUBLIC_KEYS"}
    if "--signing-key-file" in args:
        env["WEBTERM_SECRET"] = SECRET
    if args[0] == "webserver":
        env["WEBTERM_SECRET"] = SECRET
    result = webterm(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_password_file_is_a_usage_error(tmp_path: Path, key_files: dict[str, str]) -> None:
    args = ["webserver", "--manager-url", "http://m", "--access", "password",
            "--manager-credential-file", key_files["WEBTERM_MANAGER_CREDENTIAL_FILE"]]  # fmt: skip
    for path, message in [
        (tmp_path / "missing", "cannot read password file"),
        (tmp_path, "is a directory"),
    ]:
        result = webterm(*args, "--access-password-file", str(path), env={"WEBTERM_SECRET": SECRET})
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr
    (tmp_path / "empty").write_text("\n")
    result = webterm(
        *args, "--access-password-file", str(tmp_path / "empty"), env={"WEBTERM_SECRET": SECRET}
    )
    assert result.returncode == 2
    assert "--access password needs" in result.stderr


def test_impossible_token_claims_are_a_usage_error(key_files: dict[str, str]) -> None:
    result = webterm(
        "token",
        "--terminal",
        "x" * 300,
        "--signing-key-file",
        key_files["WEBTERM_SIGNING_KEY_FILE"],
    )
    assert result.returncode == 2
    assert "terminal name must be" in result.stderr
    assert "Traceback" not in result.stderr
