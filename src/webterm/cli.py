"""The ``webterm`` command: one subcommand per service (docs/architecture.md, CLI).

Every flag also reads ``WEBTERM_<FLAG_IN_CAPS>`` (``--max-terminals`` ↔
``WEBTERM_MAX_TERMINALS``). Each service runs in one trio nursery; SIGINT or SIGTERM
cancels it and the service's own shielded cleanup closes connections and children.
(Longer than our other modules: it is mostly the flag declarations, one per setting,
each beside its command, which is where a reader looks for them.)"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import click
import trio

from webterm import __version__
from webterm.config import (
    PUBLIC_KEYS_ENV,
    ConfigError,
    KeySource,
    ManagerConfig,
    PtyConfig,
    SandboxNetwork,
    UpConfig,
    WebserverConfig,
    load_credential,
    load_secret,
    read_secret_file,
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


def setting(config: type, name: str, *flags: str, **attrs: Any) -> Callable[[F], F]:
    """The flag for field ``name`` of the dataclass ``config``: ``--max-terminals`` for
    ``max_terminals`` unless ``flags`` name it, its default the field's, an ``int`` or
    ``float`` field's type, and a ``Literal`` field's values as its choices. The value
    reaches the command as keyword ``name``, ready for ``config(**settings)``."""
    field = next(f for f in dataclasses.fields(config) if f.name == name)
    hint = get_type_hints(config)[name]
    if field.default is not dataclasses.MISSING:
        attrs.setdefault("default", field.default)
    if get_origin(hint) is Literal:
        attrs.setdefault("type", click.Choice(get_args(hint)))
    elif hint in (int, float):
        attrs.setdefault("type", hint)
    return option(*(flags or ("--" + name.replace("_", "-"),)), name, **attrs)


def _shell(_: click.Context, __: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    return tuple(shlex.split(value)) if value else None


def shell_setting(config: type, help: str) -> Callable[[F], F]:
    """``--shell``: a command line, split as a shell would (the field is a tuple)."""
    return setting(config, "shell", callback=_shell, type=str, default=None, help=help)


def repeated_setting(config: type, name: str, flag: str, help: str) -> Callable[[F], F]:
    """A setting given by repeating ``flag`` (a tuple field): ``--allowed-origin``..."""
    return setting(config, name, flag, multiple=True, help=help)


def _rate(_: click.Context, __: click.Parameter, value: str) -> tuple[float, int]:
    """``RATE/BURST``, e.g. ``5/60``: a token bucket refilled RATE times a second."""
    try:
        rate, burst = value.split("/")
        return float(rate), int(burst)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not RATE/BURST, e.g. 5/60") from None


def rate_setting(name: str, help: str) -> Callable[[F], F]:
    rate, burst = getattr(WebserverConfig, name)
    return setting(
        WebserverConfig, name, default=f"{rate:g}/{burst}", type=str, callback=_rate, help=help
    )


@contextmanager
def _usage_errors() -> Iterator[None]:
    """A setting that cannot work is a usage error (exit status 2, the reason shown),
    also when a service raises it from inside its nurseries (in exception groups)."""
    try:
        yield
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


SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def _size(_: click.Context, __: click.Parameter, value: str | int) -> int:
    """A size in bytes: a number with an optional K, M or G (binary: 1M = 1 MiB)."""
    text = str(value).strip().upper().removesuffix("IB").removesuffix("B")
    unit = text[-1:] if text[-1:] in SIZE_UNITS else ""
    try:
        number = float(text[: len(text) - len(unit)])
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a size such as 512M or 1G") from None
    if number < 0:
        raise click.BadParameter("a size cannot be negative")
    return int(number * SIZE_UNITS[unit])


def _storage_limits(
    _: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[tuple[str, int], ...]:
    """``PATH=SIZE`` pairs, e.g. ``/home/user=1000M``."""
    limits = []
    for value in values:
        path, equals, size = value.rpartition("=")
        if not equals or not path.startswith("/"):
            raise click.BadParameter(f"{value!r} is not PATH=SIZE, e.g. /home/user=1000M")
        limits.append((path, _size(_, param, size)))
    return tuple(limits)


def size_setting(config: type, name: str, default: str, help: str) -> Callable[[F], F]:
    """A size in bytes, written as ``512M``, ``1G`` or a number of bytes."""
    return setting(config, name, type=str, default=default, callback=_size, help=help)


def _secret(secret_file: str | None) -> bytes:
    with _usage_errors():
        return load_secret(secret_file)


def secret_option(purpose: str) -> Callable[[F], F]:
    return option(
        "--secret-file",
        type=click.Path(dir_okay=False),
        default=None,
        help=f"File holding this service's own secret, {purpose} (else WEBTERM_SECRET).",
    )


def _credential(path: str, what: str) -> bytes:
    with _usage_errors():
        return load_credential(path, what)


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


identity_help = "What makes a client: each tab, each browser (cookie), or each remote address."
address_mode_help = "How browsers reach terminals: through the webserver, or a NodePort."


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
    with _usage_errors():
        trio.run(run_until_signalled, serve, config)


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
@setting(UpConfig, "host", help="Address the page is served on.")
@setting(UpConfig, "port")
@setting(UpConfig, "spares", help="Terminals kept started and free.")
@setting(UpConfig, "max_terminals", help="Never more terminals than this.")
@setting(UpConfig, "identity", help=identity_help)
@shell_setting(UpConfig, help="Shell command for terminals (default: login shell).")
@setting(UpConfig, "idle_timeout", help="Seconds without input before a terminal ends.")
@size_setting(
    UpConfig,
    "max_upload",
    "100M",
    "Largest file a page may upload into its shell's current directory (0: no uploads).",
)
@setting(
    UpConfig,
    "sandbox",
    help="Run each shell in a bubblewrap sandbox; auto: unless --host is loopback.",
)
@setting(
    UpConfig,
    "sandbox_network",
    type=click.Choice(get_args(SandboxNetwork)),
    show_default="none off loopback, host on loopback",
    help="Sandboxed shells' network: none (a loopback of their own) or the host's.",
)
@size_setting(
    UpConfig,
    "sandbox_tmpfs_size",
    "256M",
    "Size of each sandbox's $HOME and of its /tmp (tmpfs, in RAM).",
)
@size_setting(
    UpConfig, "sandbox_memory", "512M", "Memory per sandboxed process (RLIMIT_AS; 0: no limit)."
)
@setting(UpConfig, "sandbox_processes", help="Processes and threads per sandbox (RLIMIT_NPROC).")
@setting(UpConfig, "sandbox_open_files", help="Open files per sandboxed process.")
def up(**settings: Any) -> None:
    """Run webterm on this machine: webserver + manager + terminal processes.

    Off loopback, every shell runs in a bubblewrap sandbox of its own (docs/sandbox.md)."""
    from webterm.up import serve

    _hide_keys_from_terminals()
    with _usage_errors():
        config = UpConfig(**settings)
    _run(serve, config)


@main.command()
@setting(WebserverConfig, "manager_url", required=True, help="Base URL of the manager's HTTP API.")
@setting(WebserverConfig, "host")
@setting(WebserverConfig, "port")
@setting(WebserverConfig, "identity", help=identity_help)
@setting(WebserverConfig, "address_mode", help=address_mode_help)
@setting(WebserverConfig, "public_host", help="Host browsers dial in nodeport mode.")
@repeated_setting(
    WebserverConfig,
    "trusted_proxies",
    "--trusted-proxy",
    help="Address whose X-Forwarded-For is believed (repeatable; env: space-separated).",
)
@repeated_setting(
    WebserverConfig,
    "allowed_origins",
    "--allowed-origin",
    help="Extra Origin allowed (repeatable); on loopback, its host name is served too.",
)
@setting(
    WebserverConfig,
    "access",
    help="Gate for the page: none (public), a shared password, or a trusted proxy's header.",
)
@option(
    "--access-password-file",
    default=None,
    type=click.Path(dir_okay=False),
    help="File with the shared password (else WEBTERM_ACCESS_PASSWORD).",
)
@setting(WebserverConfig, "access_header", help="Header a trusted proxy sets.")
@setting(WebserverConfig, "max_per_address", help="Terminals per source address (0: no limit).")
@rate_setting("client_rate", help="Terminal requests per client: RATE per second / BURST.")
@rate_setting("address_rate", help="Terminal requests per source address: RATE per second / BURST.")
@option(
    "--manager-credential-file",
    required=True,
    type=click.Path(dir_okay=False),
    help="File with the bearer credential this webserver presents to the manager.",
)
@public_keys_options
@secret_option("signing identity ids and cookies")
def webserver(
    access_password_file: str | None,
    secret_file: str | None,
    manager_credential_file: str,
    public_keys_file: str | None,
    keys_url: str | None,
    **settings: Any,
) -> None:
    """The browser-facing service: page, API, WebSocket proxy."""
    from webterm.webserver.app import serve

    with _usage_errors():
        if access_password_file is not None:
            password = read_secret_file(access_password_file, "password")
        else:
            password = os.environ.get("WEBTERM_ACCESS_PASSWORD", "").encode()
        config = WebserverConfig(
            secret=_secret(secret_file),
            access_password=password or None,
            manager_credential=_credential(manager_credential_file, "manager credential"),
            keys=_key_source(public_keys_file, keys_url),
            **settings,
        )
    _run(serve, config)


@main.command()
@setting(ManagerConfig, "backend")
@setting(ManagerConfig, "namespace")
@setting(ManagerConfig, "statefulset")
@setting(ManagerConfig, "spares")
@setting(ManagerConfig, "max_terminals")
@setting(ManagerConfig, "host")
@setting(ManagerConfig, "port")
@setting(
    ManagerConfig, "kubeconfig", help="Kubeconfig file (default: in-cluster, else KUBECONFIG)."
)
@setting(ManagerConfig, "context", help="Kubeconfig context.")
@setting(ManagerConfig, "ready_timeout", help="Seconds a new terminal may take to become ready.")
@setting(ManagerConfig, "address_mode", help=address_mode_help)
@setting(ManagerConfig, "public_host", help="Host browsers dial in nodeport mode.")
@setting(ManagerConfig, "stale_after", help="Recycle an in-use terminal unconnected this long.")
@setting(ManagerConfig, "token_ttl", help="Seconds a terminal token is valid.")
@shell_setting(ManagerConfig, help="Shell command for local terminals.")
@setting(ManagerConfig, "idle_timeout", help="Idle timeout for local terminals.")
@size_setting(
    ManagerConfig, "max_upload", "100M", "Largest upload into a local terminal (0: none)."
)
@setting(
    ManagerConfig,
    "resync_period",
    help="Seconds between full reconciles of the pods against the pool's decisions.",
)
@setting(
    ManagerConfig,
    "watch_timeout",
    help="Seconds a pod watch may stay silent before it is restarted (half-open sockets).",
)
@setting(
    ManagerConfig,
    "leader_elect",
    "--leader-elect/--no-leader-elect",
    envvar="WEBTERM_LEADER_ELECT",
    help="Elect one active manager with a coordination.k8s.io Lease (run 2 replicas).",
)
@setting(ManagerConfig, "lease_name", help="The Lease used for leader election.")
@setting(ManagerConfig, "lease_duration", help="Seconds a leader's lease lasts.")
@setting(
    ManagerConfig,
    "renew_deadline",
    help="Seconds the leader keeps trying to renew before it steps down (and exits).",
)
@setting(ManagerConfig, "retry_period", help="Seconds between lease attempts.")
@setting(
    ManagerConfig,
    "pod_name",
    help="This manager's pod (downward API): the leader labels it webterm.dev/leader=true.",
)
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
    secret_file: str | None,
    signing_key_file: str,
    previous_public_key_files: tuple[str, ...],
    webserver_credential_file: str,
    **settings: Any,
) -> None:
    """The terminal pool and its backend."""
    from webterm.keys import load_public_key, load_signing_key
    from webterm.manager.app import serve

    if settings.get("backend") == "local":
        _hide_keys_from_terminals()
    with _usage_errors():
        previous = KeySet({})
        for path in previous_public_key_files:
            previous = previous.union(load_public_key(path))
        config = ManagerConfig(
            secret=_secret(secret_file),
            signing_key=load_signing_key(signing_key_file),
            previous_keys=previous,
            webserver_credential=_credential(webserver_credential_file, "webserver credential"),
            **settings,
        )
    _run(serve, config)


@main.command()
@setting(PtyConfig, "host")
@setting(PtyConfig, "port")
@setting(
    PtyConfig,
    "name",
    default=None,
    help="Terminal name (default: the hostname, i.e. the pod name).",
)
@setting(PtyConfig, "instance", help="Instance id (the pod UID).")
@shell_setting(PtyConfig, help="Shell command (default: login shell, else bash, else sh).")
@setting(PtyConfig, "idle_timeout", help="Seconds without input before the shell ends.")
@setting(PtyConfig, "idle_warning", help="Seconds of warnings before an idle end.")
@setting(
    PtyConfig, "scrollback_bytes", "--scrollback", help="Bytes of output replayed on reattach."
)
@setting(PtyConfig, "manager_url", help="Manager to ask for a recycle when the shell ends.")
@repeated_setting(
    PtyConfig, "allowed_origins", "--allowed-origin", help="Allowed WebSocket Origin (repeatable)."
)
@setting(PtyConfig, "max_session", help="Seconds a session may last (0: no limit).")
@setting(PtyConfig, "max_processes", help="Process limit for the shell (NPROC).")
@setting(PtyConfig, "max_open_files", help="Open-file limit for the shell.")
@size_setting(
    PtyConfig,
    "max_upload",
    "100M",
    "Largest file a page may upload into the shell's current directory (0: no uploads).",
)
@setting(
    PtyConfig,
    "storage_limits",
    "--storage-limit",
    multiple=True,
    type=str,
    default=(),
    callback=_storage_limits,
    metavar="PATH=SIZE",
    help="Uploads onto PATH's filesystem keep what is under PATH below SIZE, for storage "
    "whose limit the filesystem does not show (a Kubernetes emptyDir's sizeLimit). "
    "Repeatable.",
)
@public_keys_options
def pty(
    name: str | None, public_keys_file: str | None, keys_url: str | None, **settings: Any
) -> None:
    """One terminal server: a shell on a pty, over a WebSocket. It holds public keys
    only (it can check a token, never make one)."""
    from webterm.keys import KEYS_PATH
    from webterm.pty.privacy import hide_from_same_user
    from webterm.pty.server import serve

    hide_from_same_user()  # the shell shares our uid: keep it out of our tokens
    keys = _key_source(public_keys_file, keys_url)
    if keys is None and settings.get("manager_url"):
        keys = KeySource(url=str(settings["manager_url"]).rstrip("/") + KEYS_PATH)
    if keys is None:
        raise click.UsageError(
            f"no public keys: pass --public-keys-file, --keys-url or --manager-url "
            f"(or set {PUBLIC_KEYS_ENV})"
        )
    with _usage_errors():
        config = PtyConfig(keys=keys, name=name or socket.gethostname(), **settings)
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
    from webterm.protocol import MAX_TOKEN_TTL, TokenClaims, TokenError, sign_token

    if not 0 < ttl <= MAX_TOKEN_TTL:
        raise click.UsageError(f"--ttl must be between 1 and {MAX_TOKEN_TTL}")
    with _usage_errors():
        key = load_signing_key(signing_key_file)
    try:
        claims = TokenClaims(
            terminal=terminal, instance=instance, client=client, expires_at=int(time.time()) + ttl
        )
    except (TokenError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
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
        with _usage_errors():
            key = load_signing_key(public_of)
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
