"""The ``[services.*]`` tables of the configuration: KS, AIS, signaling and rooms.

Read into the frozen value objects of :mod:`actrix.core.settings`; every problem
carries its dotted key (see :mod:`actrix.core.config`).
"""

from __future__ import annotations

import json

import attrs

from actrix.core.settings import (
    AisClientConfig,
    AisConfig,
    ConnectionRateLimit,
    KsClientConfig,
    KsConfig,
    KsStorageConfig,
    MessageRateLimit,
    PersistentRoom,
    RoomsConfig,
    Services,
    SignalingConfig,
)
from actrix.core.toml_table import Table, read_table


def _read_url(t: Table, name: str) -> str:
    value = t.string(name, required=True)
    if t.has(name) and not value.startswith(("http://", "https://")):
        t.error(name, "must start with http:// or https://")
    return value.rstrip("/")


def _read_ks_client(t: Table) -> KsClientConfig:
    enable_tls = t.boolean("enable_tls", False)
    tls_domain = t.opt_string("tls_domain")
    client_cert = t.path("client_cert")
    client_key = t.path("client_key")
    if enable_tls and not tls_domain:
        t.error("tls_domain", "required when enable_tls is true")
    if (client_cert is None) != (client_key is None):
        t.error("client_cert", "client_cert and client_key must be given together")
    return KsClientConfig(
        endpoint=_read_url(t, "endpoint"),
        timeout_seconds=float(t.integer("timeout_seconds", 30, required=True)),
        enable_tls=enable_tls,
        tls_domain=tls_domain,
        ca_cert=t.path("ca_cert"),
        client_cert=client_cert,
        client_key=client_key,
    )


def _read_ks_storage(t: Table) -> KsStorageConfig:
    backend = t.string("backend", "sqlite", required=True)
    if backend not in ("sqlite", "postgres"):
        t.error("backend", "must be 'sqlite' or 'postgres'")
    elif backend == "postgres":
        t.error(
            "backend",
            "not supported here; set [storage] backend = 'postgresql' for every store",
        )
    if backend == "sqlite" and t.table("sqlite", required=True) is not None:
        read_table(t, "sqlite", lambda s: None)
    else:
        t.skip("sqlite")
    if t.has("postgres"):
        t.skip("postgres")
    return KsStorageConfig(
        backend=backend,
        key_ttl_seconds=t.integer("key_ttl_seconds", 3600, required=True, minimum=0),
    )


def _read_ks(t: Table) -> KsConfig:
    return KsConfig(
        tolerance_seconds=t.integer("tolerance_seconds", 3600, minimum=0),
        kek=t.secret("kek"),
        kek_env=t.opt_string("kek_env"),
        kek_file=t.path("kek_file"),
        storage=read_table(t, "storage", _read_ks_storage) or KsStorageConfig(),
        cleanup_interval_seconds=t.integer("cleanup_interval_seconds", 300, minimum=1),
    )


def _read_ais(t: Table) -> AisConfig:
    server = t.table("server")
    ttl, heartbeat, rate, burst = 3600, 30, 0.5, 100
    if server is not None:
        ttl = server.integer("token_ttl_secs", 3600, minimum=60)
        heartbeat = server.integer(
            "signaling_heartbeat_interval_secs", 30, minimum=1, maximum=3600
        )
        rate = server.number("register_rate_per_second", 0.5, minimum=0.001)
        burst = server.integer("register_burst", 100, minimum=1)
        server.finish()
    deps = t.table("dependencies")
    ks = None
    if deps is not None:
        ks = read_table(deps, "ks", _read_ks_client)
        deps.finish()
    return AisConfig(
        token_ttl_secs=ttl,
        signaling_heartbeat_interval_secs=heartbeat,
        register_rate_per_second=rate,
        register_burst=burst,
        ks=ks,
    )


def _read_connection_rate(t: Table) -> ConnectionRateLimit:
    return ConnectionRateLimit(
        enabled=t.boolean("enabled", True),
        per_minute=t.integer("per_minute", 5, minimum=1),
        burst_size=t.integer("burst_size", 10, minimum=1),
        max_concurrent_per_ip=t.integer("max_concurrent_per_ip", 100, minimum=1),
    )


def _read_message_rate(t: Table) -> MessageRateLimit:
    return MessageRateLimit(
        enabled=t.boolean("enabled", True),
        per_second=t.integer("per_second", 10, minimum=1),
        burst_size=t.integer("burst_size", 50, minimum=1),
    )


def _read_ais_client(t: Table) -> AisClientConfig:
    return AisClientConfig(
        endpoint=_read_url(t, "endpoint"),
        timeout_seconds=float(t.integer("timeout_seconds", 30, minimum=1)),
    )


def _read_signaling(t: Table) -> SignalingConfig:
    result = SignalingConfig()
    server = t.table("server")
    if server is not None:
        ws_path = server.string("ws_path", "/signaling", required=True)
        rate = server.table("rate_limit")
        connection, message = ConnectionRateLimit(), MessageRateLimit()
        if rate is not None:
            connection = (
                read_table(rate, "connection", _read_connection_rate) or connection
            )
            message = read_table(rate, "message", _read_message_rate) or message
            rate.finish()
        result = attrs.evolve(
            result,
            ws_path=ws_path,
            connection_rate=connection,
            message_rate=message,
            max_message_size=server.integer(
                "max_message_size", 65536, minimum=1024, maximum=16 * 1024 * 1024
            ),
            heartbeat_timeout_secs=server.integer(
                "heartbeat_timeout_secs", 300, minimum=10
            ),
            max_acl_principals=server.integer(
                "max_acl_principals", 256, minimum=1, maximum=10000
            ),
            reconnect_window_secs=server.integer(
                "reconnect_window_secs", 30, minimum=0, maximum=3600
            ),
        )
        server.finish()
    deps = t.table("dependencies")
    if deps is not None:
        result = attrs.evolve(
            result,
            ks=read_table(deps, "ks", _read_ks_client),
            ais=read_table(deps, "ais", _read_ais_client),
        )
        deps.finish()
    return result


def _read_persistent_rooms(t: Table) -> tuple[PersistentRoom, ...]:
    rooms: list[PersistentRoom] = []
    seen: set[str] = set()
    for table, raw in t.table_list("room"):
        name = table.string("name", required=True, non_blank=True)
        if len(name.encode()) > 256 or any(ord(c) < 32 or ord(c) == 127 for c in name):
            table.error("name", "longer than 256 bytes or has a control character")
        if name in seen:
            table.error("name", f"room {name!r} is configured twice")
        seen.add(name)
        realm_id = table.integer("realm_id", 0, minimum=0, maximum=2**32 - 1)
        max_peers = table.integer("max_peers", 100, minimum=0)
        metadata = None
        if table.table("metadata") is not None:
            metadata = json.dumps(
                raw["metadata"], separators=(",", ":"), ensure_ascii=False, default=str
            )
            if len(metadata.encode()) > 4096:
                table.error("metadata", "over 4096 bytes as compact JSON")
        table.finish()
        rooms.append(PersistentRoom(name, realm_id, max_peers, metadata))
    return tuple(rooms)


def _read_rooms(t: Table) -> RoomsConfig:
    idle = t.number("idle_timeout", -1.0) if t.has("idle_timeout") else None
    if idle is not None and idle < 0:
        t.error("idle_timeout", "must be >= 0 (0 = off)")
        idle = None
    api_token = t.secret("api_token")
    if api_token is not None and len(api_token.value) < 16:
        t.error("api_token", "shorter than 16 characters")
    return RoomsConfig(
        max_frame_json=t.integer(
            "max_frame_json", 65536, minimum=1024, maximum=16 * 1024 * 1024
        ),
        default_max_peers=t.integer("default_max_peers", 100, minimum=0),
        max_rooms=t.integer("max_rooms", 10000, minimum=1),
        max_connections=t.integer("max_connections", 10000, minimum=1),
        max_connections_per_ip=t.integer("max_connections_per_ip", 100, minimum=1),
        message_rate=t.number("message_rate", 20.0, minimum=0.1),
        message_burst=t.integer("message_burst", 50, minimum=1),
        ping_interval=t.number("ping_interval", 30.0, minimum=0.0),
        heartbeat_interval=t.integer("heartbeat_interval", 30, minimum=1),
        idle_timeout_json=60.0 if idle is None else idle,
        idle_timeout_binary=90.0 if idle is None else idle,
        stale_timeout=t.number("stale_timeout", 300.0, minimum=1.0),
        empty_room_ttl=t.number("empty_room_ttl", 300.0, minimum=0.0),
        cleanup_interval=t.number("cleanup_interval", 60.0, minimum=0.05),
        ice_ttl=t.integer("ice_ttl", 3600, minimum=60),
        token_max_ttl=t.integer("token_max_ttl", 86400, minimum=60),
        allow_anonymous=t.boolean("allow_anonymous", False),
        anonymous_realm_id=t.integer(
            "anonymous_realm_id", 0, minimum=0, maximum=2**32 - 1
        ),
        api_token=api_token,
        json_ws_alias=t.boolean("json_ws_alias", False),
        binary_root_alias=t.boolean("binary_root_alias", False),
        rooms=_read_persistent_rooms(t),
    )


def read_services(t: Table) -> Services:
    return Services(
        ks=read_table(t, "ks", _read_ks),
        ais=read_table(t, "ais", _read_ais),
        signaling=read_table(t, "signaling", _read_signaling),
        rooms=read_table(t, "rooms", _read_rooms),
    )


# ---------------------------------------------------------------------------
# Cross-field rules
