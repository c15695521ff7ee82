"""The ``webterm`` command: one subcommand per service, see ARCHITECTURE.md (CLI).

Every flag also reads ``WEBTERM_<FLAG_IN_CAPS>`` (``--max-terminals`` ↔
``WEBTERM_MAX_TERMINALS``). Each service runs in one trio nursery; SIGINT or SIGTERM
cancels it and the service's own shielded cleanup closes connections and children."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import trio

from webterm import __version__
from webterm.config import (
    PUBLIC_KEYS_ENV,
    ConfigError,
    KeySource,
    ManagerConfig,
    PtyConfig,
    SandboxConfig,
    UpConfig,
    WebserverConfig,
    load_credential,
    load_secret,
)
from webterm.protocol import KeySet

F = TypeVar("F", bound=Callable[..., Any])
ConfigT = TypeVar("ConfigT")

ServeFn = Callable[..., Awaitable[None]]


def option(*decls: str, **attrs: Any) -> Callable[[F], F]:
    """``click.option`` whose environment variable is ``WEBTERM_<FLAG_IN_CAPS>``."""
    long = next(d for d in decls if d.startswith("--"))
    attrs.setdefault("envvar", "WEBTERM_" + long[2:].replace("-", "_").upper())
    attrs.setdefault("show_default", True)
    attrs.setdefault("show_envvar", True)
    return click.option(*decls, **attrs)


def _shell(value: str | None) -> tuple[str, ...] | None:
    return tuple(shlex.split(value)) if value else None


def _rate(_: click.Context, __: click.Parameter, value: str) -> tuple[float, int]:
    """``RATE/BURST``, e.g. ``5/60``: a token bucket refilled RATE times a second."""
    try:
        rate, burst = value.split("/")
        return float(rate), int(burst)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not RATE/BURST, e.g. 5/60") from None


SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def _size(_: click.Context, __: click.Parameter, value: str) -> int:
    """A size in bytes: a number with an optional K, M or G (binary: 1M = 1 MiB)."""
    text = value.strip().upper().removesuffix("IB").removesuffix("B")
    unit = text[-1:] if text[-1:] in SIZE_UNITS else ""
    try:
        number = float(text[: len(text) - len(unit)])
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a size such as 512M or 1G") from None
    if number < 0:
        raise click.BadParameter("a size cannot be negative")
    return int(number * SIZE_UNITS[unit])


def _secret(secret_file: str | None) -> bytes:
    try:
        return load_secret(secret_file)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


def secret_option(purpose: str) -> Callable[[F], F]:
    return option(
        "--secret-file",
        type=click.Path(dir_okay=False),
        default=None,
        help=f"File holding this service's own secret, {purpose} (else WEBTERM_SECRET).",
    )


def _credential(path: str, what: str) -> bytes:
    try:
        return load_credential(path, what)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


def _key_source(public_keys_file: str | None, keys_url: str | None) -> KeySource | None:
    """``--public-keys-file``, else ``--keys-url``, else the JWKS in WEBTERM_PUBLIC_KEYS."""
    if public_keys_file is not None:
        return KeySource(file=public_keys_file)
    if keys_url is not None:
        return KeySource(url=keys_url)
    document = os.environ.get(PUBLIC_KEYS_ENV)
    if document:
        try:
            return KeySource(keys=KeySet.from_jwks(document))
        except ValueError as exc:
            raise click.UsageError(f"{PUBLIC_KEYS_ENV}: {exc}") from exc
    return None


def public_keys_options(func: F) -> F:
    func = option(
        "--keys-url",
        default=None,
        help="URL of the manager's public keys (JWKS), fetched at start and on an "
        "unknown key id (default: the manager URL's /v1/keys).",
    )(func)
    return option(
        "--public-keys-file",
        type=click.Path(dir_okay=False),
        default=None,
        help="JWKS file with the manager's public keys (e.g. a ConfigMap); "
        "re-read on an unknown key id.",
    )(func)


identity_option = option(
    "--identity",
    type=click.Choice(["tab", "browser", "ip"]),
    default="tab",
    help="What makes a client: each tab, each browser (cookie), or each remote address.",
)


async def run_until_signalled(serve: ServeFn, config: object) -> None:
    """Run ``serve(config, task_status=...)`` until it returns or SIGINT/SIGTERM arrives;
    a signal cancels it, and the service's cleanup runs under that cancellation."""
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

            async def service() -> None:
                await serve(config)
                nursery.cancel_scope.cancel()

            nursery.start_soon(service)
            async for signum in signals:
                logging.getLogger("webterm").info(
                    "received %s, shutting down", signal.Signals(signum).name
                )
                nursery.cancel_scope.cancel()
                break


def _run(serve: ServeFn, config: object) -> None:
    """Run a service; a :class:`ConfigError` it raises (from inside its nurseries, so
    wrapped in exception groups) becomes a usage error: its message and exit code 2."""
    try:
        trio.run(run_until_signalled, serve, config)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    except BaseExceptionGroup as group:
        errors = _leaves(group)
        if errors and all(isinstance(e, ConfigError) for e in errors):
            raise click.UsageError(str(errors[0])) from None
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        leaves += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return leaves


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="webterm")
@option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def main(log_level: str) -> None:
    """webterm: a real Linux shell in the browser, one terminal per user.

    \b
    Commands:
      up         everything on one machine (webserver + manager + local terminals)
      webserver  the browser-facing service
      manager    the terminal pool (local processes or a Kubernetes StatefulSet)
      pty        one terminal server (what each terminal pod runs)
      token      print a token that opens a terminal (operators, debugging)
      keygen     write a new signing key for the manager
    """
    _setup_logging(log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)


@main.command()
@option("--host", default="127.0.0.1", help="Address the page is served on.")
@option("--port", default=8080, type=int)
@option("--spares", default=2, type=int, help="Terminals kept started and free.")
@option("--max-terminals", default=20, type=int, help="Never more terminals than this.")
@identity_option
@option("--shell", default=None, help="Shell command for terminals (default: login shell).")
@option(
    "--idle-timeout",
    default=600.0,
    type=float,
    help="Seconds without input before a terminal ends.",
)
@option(
    "--sandbox",
    default="auto",
    type=click.Choice(["auto", "bwrap", "none"]),
    help="Run each shell in a bubblewrap sandbox; auto: unless --host is loopback.",
)
@option(
    "--sandbox-network",
    default=None,
    type=click.Choice(["none", "host"]),
    show_default="none off loopback, host on loopback",
    help="Sandboxed shells' network: none (a loopback of their own) or the host's.",
)
@option(
    "--sandbox-tmpfs-size",
    default="256M",
    callback=_size,
    help="Size of each sandbox's $HOME and of its /tmp (tmpfs, in RAM).",
)
@option(
    "--sandbox-memory",
    default="512M",
    callback=_size,
    help="Memory per sandboxed process (RLIMIT_AS; 0: no limit).",
)
@option(
    "--sandbox-processes",
    default=1024,
    type=int,
    help="Processes and threads per sandbox (RLIMIT_NPROC).",
)
@option("--sandbox-open-files", default=4096, type=int, help="Open files per sandboxed process.")
def up(
    host: str,
    port: int,
    spares: int,
    max_terminals: int,
    identity: str,
    shell: str | None,
    idle_timeout: float,
    sandbox: str,
    sandbox_network: str | None,
    sandbox_tmpfs_size: int,
    sandbox_memory: int,
    sandbox_processes: int,
    sandbox_open_files: int,
) -> None:
    """Run webterm on this machine: webserver + manager + terminal processes.

    Off loopback, every shell runs in a bubblewrap sandbox of its own (docs/sandbox.md)."""
    from webterm.up import serve

    _hide_keys_from_terminals()
    try:
        limits = SandboxConfig(
            tmpfs_bytes=sandbox_tmpfs_size,
            memory_bytes=sandbox_memory or None,
            processes=sandbox_processes,
            open_files=sandbox_open_files,
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    config = UpConfig(
        host=host,
        port=port,
        spares=spares,
        max_terminals=max_terminals,
        identity=identity,  # type: ignore[arg-type]
        shell=_shell(shell),
        idle_timeout=idle_timeout,
        sandbox=sandbox,  # type: ignore[arg-type]
        sandbox_network=sandbox_network,  # type: ignore[arg-type]
        sandbox_limits=limits,
    )
    _run(serve, config)


@main.command()
@option("--manager-url", required=True, help="Base URL of the manager's HTTP API.")
@option("--host", default="127.0.0.1")
@option("--port", default=8080, type=int)
@identity_option
@option("--address-mode", default="proxy", type=click.Choice(["proxy", "nodeport"]))
@option("--public-host", default=None, help="Host browsers dial in nodeport mode.")
@option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    help="Address whose X-Forwarded-For is believed (repeatable; env: space-separated).",
)
@option(
    "--allowed-origin",
    "allowed_origins",
    multiple=True,
    help="Extra Origin allowed (repeatable); on loopback, its host name is served too.",
)
@option(
    "--access",
    default="none",
    type=click.Choice(["none", "password", "header"]),
    help="Gate for the page: none (public), a shared password, or a trusted proxy's header.",
)
@option(
    "--access-password-file",
    default=None,
    type=click.Path(dir_okay=False),
    help="File with the shared password (else WEBTERM_ACCESS_PASSWORD).",
)
@option("--access-header", default="X-Forwarded-User", help="Header a trusted proxy sets.")
@option(
    "--max-per-address", default=5, type=int, help="Terminals per source address (0: no limit)."
)
@option(
    "--client-rate",
    default="1/10",
    callback=_rate,
    help="Terminal requests per client: RATE per second / BURST.",
)
@option(
    "--address-rate",
    default="5/60",
    callback=_rate,
    help="Terminal requests per source address: RATE per second / BURST.",
)
@option(
    "--manager-credential-file",
    required=True,
    type=click.Path(dir_okay=False),
    help="File with the bearer credential this webserver presents to the manager.",
)
@public_keys_options
@secret_option("signing identity ids and cookies")
def webserver(
    manager_url: str,
    host: str,
    port: int,
    identity: str,
    address_mode: str,
    public_host: str | None,
    trusted_proxies: tuple[str, ...],
    allowed_origins: tuple[str, ...],
    access: str,
    access_password_file: str | None,
    access_header: str,
    max_per_address: int,
    client_rate: tuple[float, int],
    address_rate: tuple[float, int],
    manager_credential_file: str,
    public_keys_file: str | None,
    keys_url: str | None,
    secret_file: str | None,
) -> None:
    """The browser-facing service: page, API, WebSocket proxy."""
    from webterm.webserver.app import serve

    password = os.environ.get("WEBTERM_ACCESS_PASSWORD", "").encode() or None
    if access_password_file is not None:
        with open(access_password_file, "rb") as f:
            password = f.read().strip() or None
    try:
        config = WebserverConfig(
            secret=_secret(secret_file),
            manager_url=manager_url,
            manager_credential=_credential(manager_credential_file, "manager credential"),
            keys=_key_source(public_keys_file, keys_url),
            host=host,
            port=port,
            identity=identity,  # type: ignore[arg-type]
            address_mode=address_mode,  # type: ignore[arg-type]
            public_host=public_host,
            trusted_proxies=trusted_proxies,
            allowed_origins=allowed_origins,
            access=access,  # type: ignore[arg-type]
            access_password=password,
            access_header=access_header,
            max_per_address=max_per_address,
            client_rate=client_rate,
            address_rate=address_rate,
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    _run(serve, config)


@main.command()
@option("--backend", default="local", type=click.Choice(["local", "kubernetes"]))
@option("--namespace", default="webterm")
@option("--statefulset", default="terminal")
@option("--spares", default=2, type=int)
@option("--max-terminals", default=20, type=int)
@option("--host", default="127.0.0.1")
@option("--port", default=8081, type=int)
@option(
    "--kubeconfig", default=None, help="Kubeconfig file (default: in-cluster, else KUBECONFIG)."
)
@option("--context", default=None, help="Kubeconfig context.")
@option(
    "--ready-timeout",
    default=120.0,
    type=float,
    help="Seconds a new terminal may take to become ready.",
)
@option("--address-mode", default="proxy", type=click.Choice(["proxy", "nodeport"]))
@option("--public-host", default=None, help="Host browsers dial in nodeport mode.")
@option(
    "--stale-after",
    default=300.0,
    type=float,
    help="Recycle an in-use terminal unconnected this long.",
)
@option("--token-ttl", default=60, type=int, help="Seconds a terminal token is valid.")
@option("--shell", default=None, help="Shell command for local terminals.")
@option("--idle-timeout", default=600.0, type=float, help="Idle timeout for local terminals.")
@option(
    "--signing-key-file",
    required=True,
    type=click.Path(dir_okay=False),
    help="PEM Ed25519 private key that signs every token (webterm keygen writes one).",
)
@option(
    "--previous-public-key-file",
    "previous_public_key_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="PEM public key of a retiring signing key, still published and accepted "
    "during a rotation (repeatable).",
)
@option(
    "--webserver-credential-file",
    required=True,
    type=click.Path(dir_okay=False),
    help="File with the bearer credential the webserver presents (allocation calls).",
)
@secret_option("keying the client hashes written on terminals")
def manager(
    backend: str,
    namespace: str,
    statefulset: str,
    spares: int,
    max_terminals: int,
    host: str,
    port: int,
    kubeconfig: str | None,
    context: str | None,
    ready_timeout: float,
    address_mode: str,
    public_host: str | None,
    stale_after: float,
    token_ttl: int,
    shell: str | None,
    idle_timeout: float,
    signing_key_file: str,
    previous_public_key_files: tuple[str, ...],
    webserver_credential_file: str,
    secret_file: str | None,
) -> None:
    """The terminal pool and its backend."""
    from webterm.keys import load_public_key, load_signing_key
    from webterm.manager.app import serve

    if backend == "local":
        _hide_keys_from_terminals()
    try:
        previous = KeySet({})
        for path in previous_public_key_files:
            previous = previous.union(load_public_key(path))
        config = ManagerConfig(
            secret=_secret(secret_file),
            signing_key=load_signing_key(signing_key_file),
            previous_keys=previous,
            webserver_credential=_credential(webserver_credential_file, "webserver credential"),
            backend=backend,  # type: ignore[arg-type]
            namespace=namespace,
            statefulset=statefulset,
            spares=spares,
            max_terminals=max_terminals,
            host=host,
            port=port,
            kubeconfig=kubeconfig,
            context=context,
            ready_timeout=ready_timeout,
            address_mode=address_mode,  # type: ignore[arg-type]
            public_host=public_host,
            stale_after=stale_after,
            token_ttl=token_ttl,
            shell=_shell(shell),
            idle_timeout=idle_timeout,
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    _run(serve, config)


@main.command()
@option("--host", default="0.0.0.0")
@option("--port", default=7681, type=int)
@option("--name", default=None, help="Terminal name (default: the hostname, i.e. the pod name).")
@option("--instance", default=None, help="Instance id (default: WEBTERM_INSTANCE, the pod UID).")
@option("--shell", default=None, help="Shell command (default: login shell, else bash, else sh).")
@option(
    "--idle-timeout", default=600.0, type=float, help="Seconds without input before the shell ends."
)
@option("--idle-warning", default=60.0, type=float, help="Seconds of warnings before an idle end.")
@option("--scrollback", default=256 * 1024, type=int, help="Bytes of output replayed on reattach.")
@option("--manager-url", default=None, help="Manager to ask for a recycle when the shell ends.")
@option(
    "--allowed-origin",
    "allowed_origins",
    multiple=True,
    help="Allowed WebSocket Origin (repeatable).",
)
@option("--max-session", default=0.0, type=float, help="Seconds a session may last (0: no limit).")
@option("--max-processes", default=1024, type=int, help="Process limit for the shell (NPROC).")
@option("--max-open-files", default=4096, type=int, help="Open-file limit for the shell.")
@public_keys_options
def pty(
    host: str,
    port: int,
    name: str | None,
    instance: str | None,
    shell: str | None,
    idle_timeout: float,
    idle_warning: float,
    scrollback: int,
    manager_url: str | None,
    allowed_origins: tuple[str, ...],
    max_session: float,
    max_processes: int,
    max_open_files: int,
    public_keys_file: str | None,
    keys_url: str | None,
) -> None:
    """One terminal server: a shell on a pty, over a WebSocket. It holds public keys
    only (it can check a token, never make one)."""
    from webterm.keys import KEYS_PATH
    from webterm.pty.privacy import hide_from_same_user
    from webterm.pty.server import serve

    hide_from_same_user()  # the shell shares our uid: keep it out of our tokens
    keys = _key_source(public_keys_file, keys_url)
    if keys is None and manager_url:
        keys = KeySource(url=manager_url.rstrip("/") + KEYS_PATH)
    if keys is None:
        raise click.UsageError(
            f"no public keys: pass --public-keys-file, --keys-url or --manager-url "
            f"(or set {PUBLIC_KEYS_ENV})"
        )
    config = PtyConfig(
        keys=keys,
        name=name or socket.gethostname(),
        instance=instance if instance is not None else os.environ.get("WEBTERM_INSTANCE", ""),
        host=host,
        port=port,
        shell=_shell(shell),
        idle_timeout=idle_timeout,
        idle_warning=idle_warning,
        scrollback_bytes=scrollback,
        manager_url=manager_url,
        allowed_origins=allowed_origins,
        max_session=max_session,
        max_processes=max_processes,
        max_open_files=max_open_files,
    )
    _run(serve, config)


@main.command()
@option("--terminal", required=True, help="Terminal name (pod name).")
@option("--instance", default="", help="Instance id the terminal was started with (pod UID).")
@option("--client", default="operator", help="Client claim (terminals do not check it).")
@option("--ttl", default=60, type=int, help="Seconds until the token expires.")
@option(
    "--signing-key-file",
    required=True,
    type=click.Path(dir_okay=False),
    help="The manager's PEM Ed25519 private key.",
)
def token(terminal: str, instance: str, client: str, ttl: int, signing_key_file: str) -> None:
    """Print a token that opens TERMINAL (offer it as subprotocol webterm.token.<token>)."""
    from webterm.keys import load_signing_key
    from webterm.protocol import MAX_TOKEN_TTL, TokenClaims, sign_token

    if not 0 < ttl <= MAX_TOKEN_TTL:
        raise click.UsageError(f"--ttl must be between 1 and {MAX_TOKEN_TTL}")
    try:
        key = load_signing_key(signing_key_file)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    claims = TokenClaims(
        terminal=terminal, instance=instance, client=client, expires_at=int(time.time()) + ttl
    )
    click.echo(sign_token(key, claims))


@main.command()
@option(
    "--out",
    default=None,
    type=click.Path(dir_okay=False, writable=True),
    help="Write the private key here (mode 0600) instead of standard output.",
)
@option(
    "--public-of",
    default=None,
    type=click.Path(dir_okay=False, exists=True),
    help="Print the public key (PEM) of this existing private key instead (rotation).",
)
@option(
    "--jwks",
    is_flag=True,
    default=False,
    help="With --public-of: print it as a JWKS (a --public-keys-file) instead of PEM.",
)
def keygen(out: str | None, public_of: str | None, jwks: bool) -> None:
    """Write a new Ed25519 signing key for the manager (PEM, PKCS#8)."""
    import json

    from webterm.keys import load_signing_key
    from webterm.protocol import SigningKey

    if public_of is not None:
        try:
            key = load_signing_key(public_of)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from exc
        if jwks:
            click.echo(json.dumps(key.key_set().to_jwks()))
        else:
            click.echo(key.public_pem().decode(), nl=False)
        return
    pem = SigningKey.generate().to_pem()
    if out is None:
        click.echo(pem.decode(), nl=False)
        return
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:  # an existing key is never overwritten
        raise click.UsageError(f"cannot create {out}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _hide_keys_from_terminals() -> None:
    """Local terminals' shells run as our user: make this process, which holds the
    signing key, off limits to them (see :mod:`webterm.pty.privacy`)."""
    from webterm.pty.privacy import hide_from_same_user

    hide_from_same_user()


__all__ = ["main", "run_until_signalled"]
