"""Service settings as frozen dataclasses, built by ``webterm.cli`` from flags and
``WEBTERM_*`` environment variables, and by tests directly.

Each setting is declared once, here: its type and its default. The command line takes
both from the field (a ``Literal`` field's values are its flag's choices). Every field
has a default that is what ``webterm up`` wants on one machine, except the keys and
secrets each service must be given. Who holds what (none of it ever reaches a terminal
but public keys):

* manager: the Ed25519 signing key (signs every token), its own ``secret`` (keys the
  client hashes written on terminals), and the webserver's credential (to check it);
* webserver: its own ``secret`` (signs identity ids and cookies), the credential it
  presents to the manager, and the public keys (checks tokens in its proxy);
* terminal server: the public keys only."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from webterm.errors import WebtermError
from webterm.protocol import KeySet, SigningKey

IdentityMode = Literal["tab", "browser", "ip"]
AddressMode = Literal["proxy", "nodeport"]
BackendName = Literal["local", "kubernetes"]
AccessMode = Literal["none", "password", "header"]
SandboxMode = Literal["auto", "bwrap", "none"]
SandboxNetwork = Literal["none", "host"]

SECRET_ENV: Final = "WEBTERM_SECRET"
PUBLIC_KEYS_ENV: Final = "WEBTERM_PUBLIC_KEYS"
"""A JWKS document itself, for a terminal server given neither a keys file nor URL
(how ``webterm up``'s manager hands its terminals the public keys)."""
MIN_SECRET_BYTES: Final = 16
"""A shorter secret makes the HMACs guessable; refuse to start with one."""


class ConfigError(WebtermError):
    """A setting that cannot work; the message says which and why."""


def read_secret_file(path: str | os.PathLike[str], what: str) -> bytes:
    """The stripped contents of a file holding ``what`` (a secret, a password)."""
    try:
        return Path(path).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc.strerror}") from exc


def load_secret(secret_file: str | os.PathLike[str] | None) -> bytes:
    """A service's own secret (the webserver's ids, the manager's client hashes):
    ``--secret-file`` if given, else ``WEBTERM_SECRET``."""
    if secret_file is not None:
        raw = read_secret_file(secret_file, "secret")
    else:
        raw = os.environ.get(SECRET_ENV, "").strip().encode()
    if not raw:
        raise ConfigError(f"no secret: set {SECRET_ENV} or pass --secret-file")
    if len(raw) < MIN_SECRET_BYTES:
        raise ConfigError(f"the secret must be at least {MIN_SECRET_BYTES} bytes")
    return raw


def generate_secret() -> bytes:
    """A fresh random secret (for ``webterm up`` and tests)."""
    return secrets.token_urlsafe(32).encode()


def load_credential(path: str | os.PathLike[str], what: str) -> bytes:
    """A bearer credential from a file (the webserver's, to the manager), at least
    :data:`MIN_SECRET_BYTES` bytes, surrounding whitespace stripped."""
    try:
        raw = Path(path).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    if len(raw) < MIN_SECRET_BYTES:
        raise ConfigError(f"the {what} must be at least {MIN_SECRET_BYTES} bytes")
    if not all(0x21 <= byte <= 0x7E for byte in raw):
        raise ConfigError(f"the {what} must be printable ASCII without spaces")
    return raw


@dataclass(frozen=True, kw_only=True)
class KeySource:
    """Where a verifier gets the manager's public keys: given (``webterm up``), a JWKS
    file (re-read on an unknown key id), or a URL (the manager's ``/v1/keys``)."""

    keys: KeySet | None = None
    file: str | None = None
    url: str | None = None


@dataclass(frozen=True, kw_only=True)
class PtyConfig:
    keys: KeySource  # the manager's public keys: verify the browsers' tokens
    name: str
    instance: str = ""
    host: str = "0.0.0.0"
    port: int = 7681
    shell: tuple[str, ...] | None = None  # None: the user's login shell, else bash, else sh
    idle_timeout: float = 600.0  # seconds without user input before the shell is ended
    idle_warning: float = 60.0  # seconds before the end during which `idle` warnings go out
    scrollback_bytes: int = 256 * 1024  # replayed to a reattaching client
    manager_url: str | None = None  # where to ask for a recycle after exit / idle timeout
    allowed_origins: tuple[str, ...] = ()  # empty: no Origin check (behind the proxy)
    home: str | None = None  # the shell's HOME; None: the server's own
    max_session: float = 0.0  # seconds a session may last whatever the activity; 0: no limit
    max_processes: int | None = 1024  # RLIMIT_NPROC for the shell (fork bombs)
    max_open_files: int | None = 4096  # RLIMIT_NOFILE for the shell
    max_upload: int = 100 * 1024 * 1024  # bytes: the largest file uploaded into the shell's cwd
    storage_limits: tuple[tuple[str, int], ...] = ()  # (PATH, bytes): uploads keep du(PATH) below


MiB: Final = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class SandboxConfig:
    """How each local terminal's shell is sandboxed (:mod:`webterm.manager.sandbox`).
    The defaults are the terminal pod's limits (k8s/base/terminal.yaml); ``None``: no
    limit of that kind."""

    network: SandboxNetwork = "none"
    tmpfs_bytes: int = 256 * MiB  # each of $HOME and /tmp (RAM-backed)
    memory_bytes: int | None = 512 * MiB  # RLIMIT_AS, per process
    processes: int = 1024  # RLIMIT_NPROC, per terminal (own host uid when root)
    open_files: int = 4096  # RLIMIT_NOFILE, per process
    bwrap: str = "bwrap"

    def __post_init__(self) -> None:
        if self.tmpfs_bytes < MiB:
            raise ConfigError("--sandbox-tmpfs-size must be at least 1M")
        if self.memory_bytes is not None and self.memory_bytes < 16 * MiB:
            raise ConfigError("--sandbox-memory must be at least 16M (or 0: no limit)")
        if self.processes < 8:
            raise ConfigError("--sandbox-processes must be at least 8")
        if self.open_files < 64:
            raise ConfigError("--sandbox-open-files must be at least 64")


@dataclass(frozen=True, kw_only=True)
class ManagerConfig:
    secret: bytes = field(repr=False)  # keys the client hashes; the manager's alone
    signing_key: SigningKey = field(repr=False)
    webserver_credential: bytes = field(repr=False)  # what the webserver presents
    previous_keys: KeySet = field(default_factory=lambda: KeySet({}))  # retiring keys
    backend: BackendName = "local"
    host: str = "127.0.0.1"
    port: int = 8081
    spares: int = 2
    max_terminals: int = 20
    token_ttl: int = 60  # seconds a terminal token stays valid for the first connect
    stale_after: float = 300.0  # in-use with no connection this long: recycled
    # local backend
    terminal_host: str = "127.0.0.1"
    shell: tuple[str, ...] | None = PtyConfig.shell
    idle_timeout: float = PtyConfig.idle_timeout
    max_upload: int = PtyConfig.max_upload
    sandbox: SandboxConfig | None = None  # None: shells run as this user, unconfined
    # kubernetes backend
    namespace: str = "webterm"
    statefulset: str = "terminal"
    kubeconfig: str | None = None
    context: str | None = None
    ready_timeout: float = 120.0
    delete_grace_period: int = 1
    address_mode: AddressMode = "proxy"
    public_host: str | None = None
    resync_period: float = 30.0  # seconds between full reconciles of cache and desired state
    watch_timeout: float = 150.0  # a watch silent this long is dead (bookmarks: ~1/min)
    # high availability (kubernetes backend): one leader, elected with a Lease
    leader_elect: bool = False
    lease_name: str = "webterm-manager"
    lease_duration: float = 15.0  # client-go's defaults: 15 s, 10 s, 2 s
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    pod_name: str | None = None  # this manager's own pod: the leader labels it
    leader_identity: str | None = None  # default: <hostname>_<random>

    def __post_init__(self) -> None:
        if self.leader_elect and not (
            0 < self.retry_period < self.renew_deadline < self.lease_duration
        ):
            raise ConfigError("need 0 < --retry-period < --renew-deadline < --lease-duration")
        if self.spares < 0:
            raise ConfigError("--spares must be >= 0")
        if self.max_terminals < 1:
            raise ConfigError("--max-terminals must be >= 1")
        if self.spares > self.max_terminals:
            raise ConfigError("--spares cannot exceed --max-terminals")

    @property
    def public_keys(self) -> KeySet:
        """What ``GET /v1/keys`` publishes and reports are checked with."""
        return self.signing_key.key_set(self.previous_keys)


@dataclass(frozen=True, kw_only=True)
class WebserverConfig:
    secret: bytes = field(repr=False)  # signs identity ids and cookies; the webserver's alone
    manager_url: str
    manager_credential: bytes = field(repr=False)  # presented on every call to the manager
    keys: KeySource | None = None  # None: the manager's /v1/keys
    host: str = "127.0.0.1"
    port: int = 8080
    identity: IdentityMode = "tab"
    address_mode: AddressMode = "proxy"
    public_host: str | None = None
    trusted_proxies: tuple[str, ...] = ()  # X-Forwarded-For is believed only from these
    allowed_origins: tuple[str, ...] = ()  # besides the page's own origin
    access: AccessMode = "none"  # who may use the page at all
    access_password: bytes | None = field(default=None, repr=False)  # access == "password"
    access_header: str = "X-Forwarded-User"  # access == "header": set by a trusted proxy
    max_per_address: int = 5  # terminals one source address may hold (0: no limit)
    # terminal requests: (per second, burst). A page asks once per load and once per
    # reconnect, so ten in a burst covers a flaky network; an address may be a shared NAT.
    client_rate: tuple[float, int] = (1.0, 10)
    address_rate: tuple[float, int] = (5.0, 60)

    def __post_init__(self) -> None:
        for rate, burst in (self.client_rate, self.address_rate):
            if rate <= 0 or burst < 1:
                raise ConfigError("a rate limit needs a positive rate and a burst of at least 1")
        if self.access == "password" and not self.access_password:
            raise ConfigError(
                "--access password needs --access-password-file or WEBTERM_ACCESS_PASSWORD"
            )
        if self.access == "header" and not self.trusted_proxies:
            raise ConfigError("--access header needs --trusted-proxy (who sets the header)")


@dataclass(frozen=True, kw_only=True)
class UpConfig:
    """``webterm up``: the webserver's and the manager's settings that it passes on."""

    host: str = WebserverConfig.host
    port: int = WebserverConfig.port
    spares: int = ManagerConfig.spares
    max_terminals: int = ManagerConfig.max_terminals
    identity: IdentityMode = WebserverConfig.identity
    shell: tuple[str, ...] | None = ManagerConfig.shell
    idle_timeout: float = ManagerConfig.idle_timeout
    max_upload: int = ManagerConfig.max_upload
    sandbox: SandboxMode = "auto"  # auto: bwrap unless the page is on loopback only
    sandbox_network: SandboxNetwork | None = None  # None: none off loopback, host on it
    sandbox_tmpfs_size: int = SandboxConfig.tmpfs_bytes
    sandbox_memory: int = 512 * MiB  # 0: no limit
    sandbox_processes: int = SandboxConfig.processes
    sandbox_open_files: int = SandboxConfig.open_files

    def __post_init__(self) -> None:
        self.sandbox_limits  # noqa: B018 - refuse impossible limits at once, not at start

    @property
    def sandbox_limits(self) -> SandboxConfig:
        """The sandbox limits (its ``network`` is chosen by :func:`webterm.up.serve`)."""
        return SandboxConfig(
            tmpfs_bytes=self.sandbox_tmpfs_size,
            memory_bytes=self.sandbox_memory or None,
            processes=self.sandbox_processes,
            open_files=self.sandbox_open_files,
        )
