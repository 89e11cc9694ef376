"""The configuration's value objects: frozen, typed, secrets wrapped.

:mod:`actrix.core.config` builds these from TOML and validates them; everything
else only reads them. :class:`Secret` never shows its value in ``repr``/``str``,
so settings can be logged or printed without leaking a key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, TypeVar

import attrs

ENABLE_SIGNALING: Final = 1
ENABLE_STUN: Final = 2
ENABLE_TURN: Final = 4
ENABLE_AIS: Final = 8
ENABLE_KS: Final = 16
ENABLE_ROOMS: Final = 32

SERVICE_BITS: Final = {
    "signaling": ENABLE_SIGNALING,
    "stun": ENABLE_STUN,
    "turn": ENABLE_TURN,
    "ais": ENABLE_AIS,
    "ks": ENABLE_KS,
    "rooms": ENABLE_ROOMS,
}

# The value etc/config.example.toml ships; refused at startup outside dev.
EXAMPLE_SHARED_KEY: Final = "replace-with-output-of-openssl-rand-hex-32"

LOG_LEVELS: Final = ("trace", "debug", "info", "warn", "error")

T = TypeVar("T")


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists every error found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@attrs.frozen(repr=False)
class Secret:
    """A secret string from the config; ``repr``/``str`` never reveal it."""

    value: str

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def encode(self) -> bytes:
        """The UTF-8 bytes of the secret."""
        return self.value.encode("utf-8")


# ---------------------------------------------------------------------------
# Value objects


DEFAULT_REQUEST_TIMEOUT: Final = 30.0
DEFAULT_IDLE_TIMEOUT: Final = 60.0
DEFAULT_MAX_CONNECTIONS_PER_IP: Final = 256


@attrs.frozen
class HttpBind:
    domain_name: str
    advertised_ip: str
    ip: str
    port: int
    # A request's head and body must arrive within this of its first byte.
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    # Silence allowed on a connection that is not being answered.
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    # Open TCP connections per source IP, WebSockets included.
    max_connections_per_ip: int = DEFAULT_MAX_CONNECTIONS_PER_IP


@attrs.frozen
class HttpsBind:
    domain_name: str
    advertised_ip: str
    ip: str
    port: int
    cert: Path
    key: Path
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_connections_per_ip: int = DEFAULT_MAX_CONNECTIONS_PER_IP


@attrs.frozen
class IceBind:
    domain_name: str
    ip: str
    port: int
    tcp: bool = True
    tls_port: int | None = None
    cert: Path | None = None
    key: Path | None = None
    # PROXY protocol v2 per stream listener, from proxy_trusted sources only.
    tcp_proxy_protocol: bool = False
    tls_proxy_protocol: bool = False
    proxy_trusted: tuple[str, ...] = ()


DEFAULT_ADMIN_PORT: Final = 8090


@attrs.frozen
class AdminBind:
    """``[bind.admin]``: the admin console's own listener (loopback by default)."""

    ip: str = "127.0.0.1"
    port: int = DEFAULT_ADMIN_PORT
    cert: Path | None = None
    key: Path | None = None
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_connections_per_ip: int = 64


@attrs.frozen
class RoomsBind(AdminBind):
    """``[bind.rooms]``: the room endpoints on a listener of their own.

    Same keys as ``[bind.admin]``; ``port`` is required. With workers, this
    listener is what lets rooms run beside them (worker 0 serves it).
    """

    ip: str = "0.0.0.0"  # noqa: S104  # a public service, like bind.http
    port: int = 0
    max_connections_per_ip: int = 256


@attrs.frozen
class Bind:
    http: HttpBind | None
    https: HttpsBind | None
    ice: IceBind
    admin: AdminBind | None = None
    rooms: RoomsBind | None = None


@attrs.frozen
class TurnUser:
    name: str
    password: Secret


@attrs.frozen
class AlternateServer:
    """One ``turn.alternate_servers`` entry (RFC 8489 §10 redirects)."""

    address: str  # "ip:port" / "[ipv6]:port" sent as ALTERNATE-SERVER
    # ALTERNATE-DOMAIN (§14.16) for TLS clients: the name the alternate's
    # certificate carries. None: a TLS client checks the name it first used.
    domain: str | None = None
    tls_port: int = 0  # the port TLS clients are sent to; 0: the address's


@attrs.frozen
class TurnConfig:
    advertised_ip: str
    advertised_port: int
    relay_port_range: tuple[int, int]
    realm: str
    # The REST secret new credentials are minted with (the first listed).
    static_auth_secret: Secret | None = None
    users: tuple[TurnUser, ...] = ()
    peer_allow: tuple[str, ...] = ()
    software: str = "actrix"
    max_allocations_per_user: int = 32
    max_allocations_total: int = 20000
    allocation_rate_per_ip: float = 10.0
    allocation_burst_per_ip: int = 20
    max_lifetime: int = 3600
    default_lifetime: int = 600
    nonce_lifetime: int = 3600
    relay_ipv6_ip: str | None = None
    stream_idle_timeout: float = 30.0
    request_rate_per_ip: int = 2000  # STUN requests/s per source IP on UDP; 0: no limit
    # RFC 8489 PASSWORD-ALGORITHM numbers offered, in preference order
    # (2 = SHA-256, 1 = MD5); RFC 5389 clients always use MD5.
    password_algorithms: tuple[int, ...] = (2, 1)
    userhash: bool = True  # accept USERHASH (RFC 8489 §14.4) in place of USERNAME
    # Every REST secret accepted (rotation: new first, old ones until they age out).
    static_auth_secrets: tuple[Secret, ...] = ()
    user_bandwidth: int = 0  # relayed bytes/s per principal, both ways; 0: no cap
    realm_bandwidth: int = 0  # relayed bytes/s per realm; 0: no cap
    # One info line per deleted allocation (accounting); ~100 µs each with the
    # JSON observer, which doubles an Allocate/Refresh-0 cycle: off by default.
    allocation_log: bool = False
    alternate_servers: tuple[AlternateServer, ...] = ()  # targets of 300 redirects
    redirect_above: int = 0  # redirect new allocations beyond this many; 0: never
    tcp_relay: bool = True  # RFC 6062 TCP allocations (REQUESTED-TRANSPORT TCP)

    @property
    def rest_secrets(self) -> tuple[Secret, ...]:
        """The REST secrets accepted, the minting one first."""
        if self.static_auth_secrets:
            return self.static_auth_secrets
        secret = self.static_auth_secret
        return () if secret is None else (secret,)


@attrs.frozen
class LogConfig:
    output: str = "console"
    rotate: bool = False
    path: Path = Path("logs")


@attrs.frozen
class TracingConfig:
    enable: bool = False
    service_name: str = "actrix"
    endpoint: str = "http://127.0.0.1:4317"


@attrs.frozen
class MetricsConfig:
    token: Secret | None = None
    allow: tuple[str, ...] = ()


@attrs.frozen
class ObservabilityConfig:
    filter_level: str = "info"
    log: LogConfig = LogConfig()
    tracing: TracingConfig = TracingConfig()
    metrics: MetricsConfig = MetricsConfig()

    @property
    def level(self) -> str:
        """The head of ``filter_level`` (``info`` of ``info,actrix=debug``)."""
        return self.filter_level.split(",", 1)[0].strip().lower()


@attrs.frozen
class KsClientConfig:
    """A remote KS (``dependencies.ks``): our HTTP client talks to ``endpoint``."""

    endpoint: str
    timeout_seconds: float
    enable_tls: bool = False
    tls_domain: str | None = None
    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None


@attrs.frozen
class KsStorageConfig:
    backend: str = "sqlite"
    key_ttl_seconds: int = 3600


@attrs.frozen
class KsConfig:
    tolerance_seconds: int = 3600
    kek: Secret | None = None
    kek_env: str | None = None
    kek_file: Path | None = None
    storage: KsStorageConfig = KsStorageConfig()
    cleanup_interval_seconds: int = 300


@attrs.frozen
class AisConfig:
    token_ttl_secs: int = 3600
    signaling_heartbeat_interval_secs: int = 30
    register_rate_per_second: float = 0.5
    register_burst: int = 100
    ks: KsClientConfig | None = None


@attrs.frozen
class ConnectionRateLimit:
    enabled: bool = True
    per_minute: int = 5
    burst_size: int = 10
    max_concurrent_per_ip: int = 100


@attrs.frozen
class MessageRateLimit:
    enabled: bool = True
    per_second: int = 10
    burst_size: int = 50


@attrs.frozen
class AisClientConfig:
    endpoint: str
    timeout_seconds: float = 30.0


@attrs.frozen
class SignalingConfig:
    ws_path: str = "/signaling"
    connection_rate: ConnectionRateLimit = ConnectionRateLimit()
    message_rate: MessageRateLimit = MessageRateLimit()
    max_message_size: int = 65536
    heartbeat_timeout_secs: int = 300
    max_acl_principals: int = 256
    reconnect_window_secs: int = 30
    ks: KsClientConfig | None = None
    ais: AisClientConfig | None = None


DEFAULT_PG_POOL_SIZE: Final = 4
DEFAULT_PG_STATEMENT_TIMEOUT: Final = 5.0
DEFAULT_PG_CONNECT_TIMEOUT: Final = 5
DEFAULT_PG_SCHEMA_PREFIX: Final = "actrix_"


@attrs.frozen
class PostgresConfig:
    """How to reach the shared PostgreSQL (``[storage]`` with backend postgresql).

    ``dsn`` (a libpq URI or ``key=value`` string) and the separate keys
    combine; a separate key wins. The password is a :class:`Secret` whatever
    its source (``password``, ``password_file``, ``password_env``).
    """

    dsn: Secret | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: Secret | None = None
    dbname: str | None = None
    sslmode: str | None = None
    pool_size: int = DEFAULT_PG_POOL_SIZE
    statement_timeout: float = DEFAULT_PG_STATEMENT_TIMEOUT
    connect_timeout: int = DEFAULT_PG_CONNECT_TIMEOUT
    schema_prefix: str = DEFAULT_PG_SCHEMA_PREFIX


@attrs.frozen
class StorageConfig:
    """``[storage]``: SQLite files under ``sqlite_path`` (default) or PostgreSQL."""

    backend: str = "sqlite"
    postgresql: PostgresConfig | None = None


DEFAULT_REDIS_PORT: Final = 6379
DEFAULT_REDIS_KEY_PREFIX: Final = "actrix:"
DEFAULT_REDIS_CONNECT_TIMEOUT: Final = 5.0
DEFAULT_REDIS_REPLY_TIMEOUT: Final = 5.0


@attrs.frozen
class RedisConfig:
    """``[redis]``: the shared actor directory (absent: one process, in memory).

    ``host`` starting with ``/`` is a unix socket path. The password is a
    :class:`Secret` whatever its source (``url``, ``password``,
    ``password_file``, ``password_env``); ``url`` itself is not kept.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_REDIS_PORT
    db: int = 0
    password: Secret | None = None
    key_prefix: str = DEFAULT_REDIS_KEY_PREFIX
    connect_timeout: float = DEFAULT_REDIS_CONNECT_TIMEOUT
    reply_timeout: float = DEFAULT_REDIS_REPLY_TIMEOUT

    tls: bool = False
    tls_ca: Path | None = None
    # Read again before each new try after Redis refused the password.
    password_file: Path | None = None

    @property
    def unix(self) -> bool:
        return self.host.startswith("/")


MAX_WORKERS: Final = 64


@attrs.frozen
class ClusterConfig:
    """``[cluster]``: worker processes on this box and this node's name.

    ``node_id`` names the node in the shared directory, ``/health`` and logs
    (default: host name and process id); each process adds a random part, so
    a restarted process never takes its predecessor's sessions for its own.
    """

    workers: int = 1
    node_id: str | None = None


@attrs.frozen
class PersistentRoom:
    """A ``[[services.rooms.room]]`` entry: exists from startup, never dropped."""

    name: str
    realm_id: int
    max_peers: int
    metadata: str | None = None  # compact JSON object text


@attrs.frozen
class RoomsConfig:
    """``[services.rooms]`` (rooms.md §7); times in seconds."""

    max_frame_json: int = 65536
    default_max_peers: int = 100
    max_rooms: int = 10000
    max_connections: int = 10000
    max_connections_per_ip: int = 100
    message_rate: float = 20.0
    message_burst: int = 50
    ping_interval: float = 30.0
    heartbeat_interval: int = 30
    idle_timeout_json: float = 60.0
    idle_timeout_binary: float = 90.0
    stale_timeout: float = 300.0
    empty_room_ttl: float = 300.0
    cleanup_interval: float = 60.0
    ice_ttl: int = 3600
    token_max_ttl: int = 86400
    allow_anonymous: bool = False
    anonymous_realm_id: int = 0
    api_token: Secret | None = None
    json_ws_alias: bool = False
    binary_root_alias: bool = False
    rooms: tuple[PersistentRoom, ...] = ()


@attrs.frozen
class Services:
    ks: KsConfig | None = None
    ais: AisConfig | None = None
    signaling: SignalingConfig | None = None
    rooms: RoomsConfig | None = None


@attrs.frozen
class AdminConfig:
    """``[admin]``: the control API and console (issue 14); off by default."""

    enabled: bool = False
    # Also serve /admin on the main HTTP(S) site (in addition to bind.admin
    # when that table is given; instead of it when it is not).
    on_main_site: bool = False
    session_ttl: int = 8 * 3600  # seconds a console login lasts
    max_sessions: int = 256
    login_max_failures: int = 10  # failed logins per IP within login_window
    login_window: int = 300  # seconds
    audit_retention_days: int = 90
    audit_max_rows: int = 100_000


@attrs.frozen
class DiscoveryConfig:
    """``[discovery]``: LAN announcements (see :mod:`actrix.core.discovery`)."""

    mdns: bool = False
    instance: str | None = None  # default: the config's ``name``
    interfaces: tuple[str, ...] = ()  # addresses to announce on; () = all


@attrs.frozen
class Settings:
    """The whole validated configuration of one daemon."""

    enable: int
    name: str
    env: str
    location_tag: str
    sqlite_path: Path
    actrix_shared_key: Secret
    bind: Bind
    turn: TurnConfig
    observability: ObservabilityConfig = ObservabilityConfig()
    services: Services = Services()
    storage: StorageConfig = StorageConfig()
    redis: RedisConfig | None = None
    admin: AdminConfig = AdminConfig()
    cluster: ClusterConfig = ClusterConfig()
    discovery: DiscoveryConfig = DiscoveryConfig()
    user: str | None = None
    group: str | None = None
    pid: str | None = None
    warnings: tuple[str, ...] = ()
    source: Path | None = None

    def enabled(self, bit: int) -> bool:
        """Whether the service with this enable bit is switched on."""
        return bool(self.enable & bit)

    @property
    def enabled_services(self) -> tuple[str, ...]:
        """Names of the enabled services (STUN is folded into TURN when both)."""
        names = [name for name, bit in SERVICE_BITS.items() if self.enable & bit]
        if "turn" in names and "stun" in names:
            names.remove("stun")
        return tuple(names)

    @property
    def http_services_enabled(self) -> bool:
        """Whether any service needs the HTTP(S) listener."""
        return bool(
            self.enable & (ENABLE_SIGNALING | ENABLE_AIS | ENABLE_KS | ENABLE_ROOMS)
        )

    @property
    def uses_https(self) -> bool:
        """The site listens with TLS: always outside dev, or in dev without http."""
        return self.env != "dev" or self.bind.http is None

    @property
    def admin_bind(self) -> AdminBind | None:
        """The admin listener: ``bind.admin``, its default, or None (main site only)."""
        if not self.admin.enabled:
            return None
        if self.bind.admin is not None:
            return self.bind.admin
        return None if self.admin.on_main_site else AdminBind()

    @property
    def site_bind(self) -> HttpBind | HttpsBind | None:
        """The table the HTTP(S) site listens with (``bind.https`` or ``bind.http``)."""
        return self.bind.https if self.uses_https else self.bind.http


TURN_DRAIN_FLAG = "turn.draining"


def turn_drain_flag(sqlite_path: Path) -> Path:
    """The file whose existence drains TURN (``actrix turn drain`` creates it)."""
    return sqlite_path / TURN_DRAIN_FLAG
