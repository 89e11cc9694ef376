"""The TOML configuration: parsing into frozen typed objects, and validation.

Every problem is collected with its dotted key (``turn.advertised_ip: not an IP
address``) so that ``actrix check`` can print them all at once. Unknown keys are
errors (the original silently ignored them). Secret values are wrapped in
:class:`Secret`, whose ``repr`` never shows the value, so they cannot reach a log by
accident.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from actrix.core.admin_config import (
    admin_problems,
    read_admin,
    read_admin_bind,
    read_rooms_bind,
)
from actrix.core.discovery import read_discovery
from actrix.core.redis_config import read_cluster, read_redis
from actrix.core.services_config import read_services
from actrix.core.settings import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS_PER_IP,
    DEFAULT_REQUEST_TIMEOUT,
    ENABLE_AIS,
    ENABLE_KS,
    ENABLE_ROOMS,
    ENABLE_SIGNALING,
    ENABLE_STUN,
    ENABLE_TURN,
    EXAMPLE_SHARED_KEY,
    LOG_LEVELS,
    SERVICE_BITS,
    AdminConfig,
    AisClientConfig,
    AisConfig,
    Bind,
    ClusterConfig,
    ConfigError,
    ConnectionRateLimit,
    DiscoveryConfig,
    HttpBind,
    HttpsBind,
    IceBind,
    KsClientConfig,
    KsConfig,
    KsStorageConfig,
    LogConfig,
    MessageRateLimit,
    MetricsConfig,
    ObservabilityConfig,
    PersistentRoom,
    PostgresConfig,
    RoomsConfig,
    Secret,
    Services,
    Settings,
    SignalingConfig,
    StorageConfig,
    TracingConfig,
    TurnConfig,
    TurnUser,
)
from actrix.core.storage_config import read_storage
from actrix.core.toml_table import Table, read_table

# Bounds of bind.http*.request_timeout / idle_timeout, in seconds: below one
# second honest clients on slow links fail; Twisted's 12 h is what we replace.
MIN_HTTP_TIMEOUT: Final = 1.0
MAX_HTTP_TIMEOUT: Final = 3600.0

__all__ = [
    "ENABLE_AIS",
    "ENABLE_KS",
    "ENABLE_ROOMS",
    "ENABLE_SIGNALING",
    "ENABLE_STUN",
    "ENABLE_TURN",
    "LOG_LEVELS",
    "SERVICE_BITS",
    "AisClientConfig",
    "AisConfig",
    "Bind",
    "ConfigError",
    "ConnectionRateLimit",
    "HttpBind",
    "HttpsBind",
    "IceBind",
    "KsClientConfig",
    "KsConfig",
    "KsStorageConfig",
    "LogConfig",
    "MessageRateLimit",
    "MetricsConfig",
    "ObservabilityConfig",
    "PersistentRoom",
    "PostgresConfig",
    "RoomsConfig",
    "Secret",
    "Services",
    "Settings",
    "SignalingConfig",
    "StorageConfig",
    "TracingConfig",
    "TurnConfig",
    "TurnUser",
    "load_config",
    "parse_config",
]


def _read_site_limits(t: Table) -> dict[str, Any]:
    """The slow-client limits both ``bind.http`` and ``bind.https`` accept."""
    return {
        "request_timeout": t.number(
            "request_timeout",
            DEFAULT_REQUEST_TIMEOUT,
            minimum=MIN_HTTP_TIMEOUT,
            maximum=MAX_HTTP_TIMEOUT,
        ),
        "idle_timeout": t.number(
            "idle_timeout",
            DEFAULT_IDLE_TIMEOUT,
            minimum=MIN_HTTP_TIMEOUT,
            maximum=MAX_HTTP_TIMEOUT,
        ),
        "max_connections_per_ip": t.integer(
            "max_connections_per_ip",
            DEFAULT_MAX_CONNECTIONS_PER_IP,
            minimum=1,
            maximum=65535,
        ),
    }


def _read_http(t: Table) -> HttpBind:
    return HttpBind(
        domain_name=t.string("domain_name", required=True),
        advertised_ip=t.string("advertised_ip", required=True),
        ip=t.ip("ip"),
        port=t.port("port"),
        **_read_site_limits(t),
    )


def _read_https(t: Table) -> HttpsBind:
    return HttpsBind(
        domain_name=t.string("domain_name", required=True),
        advertised_ip=t.string("advertised_ip", required=True),
        ip=t.ip("ip"),
        port=t.port("port"),
        cert=t.path("cert", required=True) or Path(),
        key=t.path("key", required=True) or Path(),
        **_read_site_limits(t),
    )


def _read_ice(t: Table) -> IceBind:
    tls_port = t.port("tls_port", required=False, default=-1)
    cert = t.path("cert")
    key = t.path("key")
    if tls_port >= 0 and (cert is None or key is None):
        t.error("tls_port", "needs bind.ice.cert and bind.ice.key")
    tcp_proxy = t.boolean("tcp_proxy_protocol", False)
    tls_proxy = t.boolean("tls_proxy_protocol", False)
    trusted = t.string_list("proxy_trusted")
    for entry in trusted:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            t.error("proxy_trusted", f"{entry!r} is not an IP network")
    if (tcp_proxy or tls_proxy) and not trusted:
        t.error("proxy_trusted", "PROXY protocol is on but no network is trusted")
    return IceBind(
        domain_name=t.string("domain_name", required=True),
        ip=t.ip("ip"),
        port=t.port("port"),
        tcp=t.boolean("tcp", True),
        tls_port=None if tls_port < 0 else tls_port,
        cert=cert,
        key=key,
        tcp_proxy_protocol=tcp_proxy,
        tls_proxy_protocol=tls_proxy,
        proxy_trusted=trusted,
    )


def _read_bind(t: Table) -> Bind:
    http = read_table(t, "http", _read_http)
    https = read_table(t, "https", _read_https)
    ice = read_table(t, "ice", _read_ice, required=True)
    return Bind(
        http=http,
        https=https,
        ice=ice or IceBind(domain_name="", ip="", port=0),
        admin=read_table(t, "admin", read_admin_bind),
        rooms=read_table(t, "rooms", read_rooms_bind),
    )


def _parse_port_range(t: Table, name: str) -> tuple[int, int]:
    default = (49152, 65535)
    raw = t.string(name, "49152-65535")
    if not t.has(name):
        return default
    start_s, sep, end_s = raw.partition("-")
    try:
        start, end = int(start_s), int(end_s)
    except ValueError:
        t.error(name, "expected 'start-end', e.g. '49152-65535'")
        return default
    if not sep or not (1 <= start <= 65535 and 1 <= end <= 65535):
        t.error(name, "ports must be within 1-65535 as 'start-end'")
        return default
    if start > end:
        t.error(name, f"start {start} > end {end}")
        return default
    return (start, end)


def _read_turn_users(t: Table) -> tuple[TurnUser, ...]:
    users = t.table("users")
    if users is None:
        return ()
    result = []
    for name in users.names():
        password = users.secret(name)
        if password is not None:
            if not password.value:
                users.error(name, "password must not be empty")
            result.append(TurnUser(name=name, password=password))
    users.finish()
    return tuple(result)


_PASSWORD_ALGORITHMS: Final = {"sha256": 2, "md5": 1}


def _read_password_algorithms(t: Table) -> tuple[int, ...]:
    names = (
        t.string_list("password_algorithms")
        if t.has("password_algorithms")
        else (
            "sha256",
            "md5",
        )
    )
    numbers = []
    for name in names:
        number = _PASSWORD_ALGORITHMS.get(name)
        if number is None:
            t.error("password_algorithms", f"{name!r} is not one of sha256, md5")
        elif number in numbers:
            t.error("password_algorithms", f"{name!r} listed twice")
        else:
            numbers.append(number)
    if not names:
        t.error("password_algorithms", "must name at least one algorithm")
    return tuple(numbers) or (2, 1)


def _read_turn(t: Table) -> TurnConfig:
    peer_allow = t.string_list("peer_allow")
    for entry in peer_allow:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            t.error("peer_allow", f"{entry!r} is not an IP network")
    software = t.string("software", "actrix")
    if len(software.encode()) > 763:
        t.error("software", "longer than 763 bytes (RFC 5389 §15.10)")
    relay6 = t.opt_string("relay_ipv6_ip")
    if relay6 is not None:
        try:
            if ipaddress.ip_address(relay6).version != 6:
                t.error("relay_ipv6_ip", "not an IPv6 address")
        except ValueError:
            t.error("relay_ipv6_ip", "not an IP address")
    rest_secrets = t.secret_list("static_auth_secret")
    return TurnConfig(
        advertised_ip=t.string("advertised_ip", required=True),
        advertised_port=t.port("advertised_port", required=False, default=3478),
        relay_port_range=_parse_port_range(t, "relay_port_range"),
        realm=t.string("realm", "actor-rtc.local", required=True),
        static_auth_secrets=rest_secrets,
        static_auth_secret=rest_secrets[0] if rest_secrets else None,
        users=_read_turn_users(t),
        peer_allow=peer_allow,
        software=software,
        max_allocations_per_user=t.integer("max_allocations_per_user", 32, minimum=1),
        max_allocations_total=t.integer("max_allocations_total", 20000, minimum=1),
        allocation_rate_per_ip=t.number("allocation_rate_per_ip", 10.0, minimum=0.01),
        allocation_burst_per_ip=t.integer("allocation_burst_per_ip", 20, minimum=1),
        max_lifetime=t.integer("max_lifetime", 3600, minimum=60),
        default_lifetime=t.integer("default_lifetime", 600, minimum=60),
        nonce_lifetime=t.integer("nonce_lifetime", 3600, minimum=10),
        relay_ipv6_ip=relay6,
        stream_idle_timeout=t.number("stream_idle_timeout", 30.0, minimum=1.0),
        request_rate_per_ip=t.integer("request_rate_per_ip", 2000, minimum=0),
        password_algorithms=_read_password_algorithms(t),
        userhash=t.boolean("userhash", True),
        user_bandwidth=t.integer("user_bandwidth", 0, minimum=0),
        realm_bandwidth=t.integer("realm_bandwidth", 0, minimum=0),
        allocation_log=t.boolean("allocation_log", False),
        alternate_servers=t.alternate_servers("alternate_servers"),
        redirect_above=t.integer("redirect_above", 0, minimum=0),
        tcp_relay=t.boolean("tcp_relay", True),
    )


def _read_log(t: Table) -> LogConfig:
    output = t.string("output", "console")
    if output not in ("console", "file"):
        t.error("output", "must be 'console' or 'file'")
    return LogConfig(
        output=output,
        rotate=t.boolean("rotate", False),
        path=t.path("path") or Path("logs"),
    )


def _read_tracing(t: Table) -> TracingConfig:
    enable = t.boolean("enable", False)
    endpoint = t.string("endpoint", "http://127.0.0.1:4317")
    if enable and not endpoint.startswith(("http://", "https://")):
        t.error("endpoint", "must start with http:// or https://")
    if enable:
        t.error("enable", "OpenTelemetry export is not built into actrix")
    return TracingConfig(
        enable=enable,
        service_name=t.string("service_name", "actrix"),
        endpoint=endpoint,
    )


def _read_metrics(t: Table) -> MetricsConfig:
    allow = t.string_list("allow")
    for entry in allow:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            t.error("allow", f"{entry!r} is not an IP network")
    token = t.secret("token")
    if token is not None and len(token.value) < 16:
        t.error("token", "shorter than 16 characters")
    return MetricsConfig(token=token, allow=allow)


def _read_observability(t: Table) -> ObservabilityConfig:
    level = t.string("filter_level", "info")
    head = level.split(",", 1)[0].strip().lower()
    if head not in LOG_LEVELS:
        t.error("filter_level", f"must start with one of {', '.join(LOG_LEVELS)}")
    return ObservabilityConfig(
        filter_level=level,
        log=read_table(t, "log", _read_log) or LogConfig(),
        tracing=read_table(t, "tracing", _read_tracing) or TracingConfig(),
        metrics=read_table(t, "metrics", _read_metrics) or MetricsConfig(),
    )


def check_cluster(s: Settings) -> list[str]:
    """Problems of ``[cluster]`` with the rest (also after ``--workers``)."""
    workers = s.cluster.workers
    problems = []
    if workers > 1 and s.redis is None:
        problems.append(
            f"cluster.workers: {workers} workers share the actor directory and "
            "the bus through Redis; add a [redis] table (or set workers = 1)"
        )
    if workers > 1 and s.enabled(ENABLE_ROOMS) and s.bind.rooms is None:
        problems.append(
            "cluster.workers: rooms keep their membership in one process; give"
            " them their own listener [bind.rooms] (worker 0 serves it), or run"
            " rooms (enable bit 32) with workers = 1"
        )
    if workers > 1 and s.admin.enabled and s.admin.on_main_site:
        problems.append(
            "admin.on_main_site: with workers the console's login sessions live"
            " in the one worker that serves it; use its own listener [bind.admin]"
            " (worker 0 serves it), or workers = 1"
        )
    return problems


def _check_rules(s: Settings, problems: list[str], warnings: list[str]) -> None:
    problems.extend(check_cluster(s))
    if s.bind.rooms is not None and not s.enabled(ENABLE_ROOMS):
        problems.append("bind.rooms: rooms (enable bit 32) are not enabled")
    key = s.actrix_shared_key.value
    if "default" in key.lower() or "change" in key.lower():
        problems.append(
            "actrix_shared_key: must not contain 'default' or 'change'; "
            "generate a random one"
        )
    if len(key) < 16:
        problems.append("actrix_shared_key: shorter than 16 characters")
    if key == EXAMPLE_SHARED_KEY:
        warnings.append(
            "Warning: actrix_shared_key: still the example value; the daemon "
            "refuses to start with it unless env is dev"
        )
    if s.enabled(ENABLE_TURN) or s.enabled(ENABLE_STUN):
        try:
            ipaddress.ip_address(s.turn.advertised_ip)
        except ValueError:
            problems.append("turn.advertised_ip: not an IP address")
        if not s.turn.realm.strip():
            problems.append("turn.realm: must not be blank")
    if s.turn.default_lifetime > s.turn.max_lifetime:
        problems.append(
            f"turn.default_lifetime: {s.turn.default_lifetime} exceeds "
            f"turn.max_lifetime {s.turn.max_lifetime}"
        )
    if s.enabled(ENABLE_KS) and s.services.ks is None:
        problems.append("services.ks: required when KS (enable bit 16) is on")
    if s.enabled(ENABLE_AIS):
        if s.services.ais is None:
            problems.append("services.ais: required when AIS (enable bit 8) is on")
        elif s.services.ais.ks is None and not s.enabled(ENABLE_KS):
            problems.append(
                "services.ais.dependencies.ks: required when the local KS is off"
            )
    if s.enabled(ENABLE_SIGNALING):
        sig = s.services.signaling
        if sig is None:
            problems.append(
                "services.signaling: required when signaling (enable bit 1) is on"
            )
        else:
            if sig.ks is None and not s.enabled(ENABLE_KS):
                problems.append(
                    "services.signaling.dependencies.ks: required when the local "
                    "KS is off"
                )
            if sig.ais is None and not s.enabled(ENABLE_AIS):
                problems.append(
                    "services.signaling.dependencies.ais: required when the local "
                    "AIS is off"
                )
    rooms = s.services.rooms
    if rooms is not None and rooms.allow_anonymous and s.env != "dev":
        problems.append(
            "services.rooms.allow_anonymous: only allowed when env is 'dev'"
        )
    site = s.site_bind
    sig = s.services.signaling
    if (
        s.enabled(ENABLE_SIGNALING)
        and site is not None
        and sig is not None
        and sig.connection_rate.enabled
        and site.max_connections_per_ip < sig.connection_rate.max_concurrent_per_ip
    ):
        table = "bind.https" if s.uses_https else "bind.http"
        warnings.append(
            f"Warning: {table}.max_connections_per_ip: "
            f"{site.max_connections_per_ip} is below services.signaling.server."
            f"rate_limit.connection.max_concurrent_per_ip "
            f"{sig.connection_rate.max_concurrent_per_ip}; the site refuses "
            "those WebSocket clients before signaling can answer 429"
        )
    if s.env != "dev":
        if s.bind.https is None:
            problems.append(f"bind.https: required when env is {s.env!r}")
        elif s.bind.https.port == 0 and s.env == "prod":
            problems.append("bind.https.port: must not be 0 in prod")
        if s.env == "prod":
            if s.observability.log.output == "console":
                warnings.append(
                    "Warning: observability.log.output: console logging in prod"
                )
            elif not s.observability.log.rotate:
                warnings.append(
                    "Warning: observability.log.rotate: file logs are not rotated"
                )
    elif s.http_services_enabled and s.bind.http is None and s.bind.https is None:
        problems.append("bind.http: required (no HTTP or HTTPS binding configured)")
    problems.extend(
        admin_problems(
            s.admin,
            s.admin_bind,
            s.env,
            s.http_services_enabled and s.site_bind is not None,
        )
    )
    for key_name in ("user", "group", "pid"):
        if getattr(s, key_name) is not None:
            warnings.append(
                f"Warning: {key_name}: ignored; use twistd --uid/--gid/--pidfile "
                "or the systemd unit"
            )


def parse_config(data: Mapping[str, Any], source: Path | None = None) -> Settings:
    """Validate a decoded TOML document.

    Raises:
        ConfigError: with every problem found, each prefixed by its dotted key.
    """
    problems: list[str] = []
    top = Table(data, "", problems)
    enable = top.integer("enable", 6, minimum=0, maximum=63)
    env = top.string("env", "dev", required=True)
    if top.has("env") and env not in ("dev", "prod", "test"):
        top.error("env", "must be 'dev', 'prod' or 'test'")
    sqlite_path = top.string("sqlite_path", required=True, non_blank=True)
    settings = Settings(
        enable=enable,
        name=top.string("name", required=True, non_blank=True),
        env=env,
        location_tag=top.string("location_tag", required=True),
        sqlite_path=Path(sqlite_path),
        actrix_shared_key=top.secret("actrix_shared_key", required=True)
        or Secret("x" * 16),
        bind=read_table(top, "bind", _read_bind, required=True)
        or Bind(None, None, IceBind("", "", 0)),
        turn=read_table(top, "turn", _read_turn, required=True)
        or TurnConfig("", 0, (49152, 65535), "actor-rtc.local"),
        observability=read_table(top, "observability", _read_observability)
        or ObservabilityConfig(),
        services=read_table(top, "services", read_services) or Services(),
        storage=read_table(top, "storage", read_storage) or StorageConfig(),
        redis=read_table(top, "redis", read_redis),
        admin=read_table(top, "admin", read_admin) or AdminConfig(),
        cluster=read_table(top, "cluster", read_cluster) or ClusterConfig(),
        discovery=read_table(top, "discovery", read_discovery) or DiscoveryConfig(),
        user=top.opt_string("user"),
        group=top.opt_string("group"),
        pid=top.opt_string("pid"),
        source=source,
    )
    if top.has("supervisor"):
        top.skip("supervisor")
        top.error("supervisor", "the supervisor integration is not supported")
    top.finish()
    warnings: list[str] = []
    _check_rules(settings, problems, warnings)
    if problems:
        raise ConfigError(problems)
    return attrs.evolve(settings, warnings=tuple(warnings))


def load_config(path: Path) -> Settings:
    """Read and validate a TOML file.

    Raises:
        ConfigError: the file is missing, unreadable, not TOML, or invalid.
    """
    try:
        text = path.read_bytes()
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror or e}"]) from e
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: not UTF-8 text"]) from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: invalid TOML: {e}"]) from e
    return parse_config(data, source=path)
