"""``[admin]``, ``[bind.admin]`` and ``[bind.rooms]`` (the same keys) of the config.

Read like the rest of :mod:`actrix.core.config` (problems by dotted key, unknown
keys refused). The admin listener is loopback-only unless it has TLS: a control
API that hands out session cookies is not served in clear text to a network
outside ``env = "dev"``.
"""

from __future__ import annotations

import ipaddress
from typing import TypeVar

from actrix.core.settings import AdminBind, AdminConfig, RoomsBind
from actrix.core.toml_table import Table

_Bind = TypeVar("_Bind", bound=AdminBind)


def read_admin(t: Table) -> AdminConfig:
    """``[admin]``."""
    return AdminConfig(
        enabled=t.boolean("enabled", False),
        on_main_site=t.boolean("on_main_site", False),
        session_ttl=t.integer("session_ttl", 8 * 3600, minimum=60, maximum=7 * 86400),
        max_sessions=t.integer("max_sessions", 256, minimum=1, maximum=100_000),
        login_max_failures=t.integer(
            "login_max_failures", 10, minimum=1, maximum=10_000
        ),
        login_window=t.integer("login_window", 300, minimum=1, maximum=86400),
        audit_retention_days=t.integer(
            "audit_retention_days", 90, minimum=1, maximum=3650
        ),
        audit_max_rows=t.integer(
            "audit_max_rows", 100_000, minimum=100, maximum=10_000_000
        ),
    )


def read_admin_bind(t: Table) -> AdminBind:
    """``[bind.admin]``: every key optional (127.0.0.1:8090 by default)."""
    return read_listener_bind(t, AdminBind())


def read_rooms_bind(t: Table) -> RoomsBind:
    """``[bind.rooms]``: ``port`` required, the rest as ``[bind.admin]``."""
    return read_listener_bind(t, RoomsBind(), port_required=True)


def read_listener_bind(t: Table, default: _Bind, port_required: bool = False) -> _Bind:
    """A listener table of ``default``'s type: ip, port, TLS pair, limits."""
    cert, key = t.path("cert"), t.path("key")
    if (cert is None) != (key is None):
        t.error("cert", "cert and key must be given together")
    return type(default)(
        ip=t.ip("ip", required=False, default=default.ip),
        port=t.port("port", required=port_required, default=default.port),
        cert=cert,
        key=key,
        request_timeout=t.number(
            "request_timeout", default.request_timeout, minimum=1.0, maximum=3600.0
        ),
        idle_timeout=t.number(
            "idle_timeout", default.idle_timeout, minimum=1.0, maximum=3600.0
        ),
        max_connections_per_ip=t.integer(
            "max_connections_per_ip",
            default.max_connections_per_ip,
            minimum=1,
            maximum=65535,
        ),
    )


def admin_problems(
    admin: AdminConfig, bind: AdminBind | None, env: str, has_main_site: bool
) -> list[str]:
    """Cross-key rules of the admin tables (``bind`` is the effective listener)."""
    problems: list[str] = []
    if not admin.enabled:
        return problems
    if admin.on_main_site and not has_main_site:
        problems.append("admin.on_main_site: no HTTP(S) site is configured")
    if bind is not None and bind.cert is None and env != "dev":
        try:
            loopback = ipaddress.ip_address(bind.ip).is_loopback
        except ValueError:
            loopback = False  # reported as "not an IP address" already
        if not loopback:
            problems.append(
                f"bind.admin.ip: {bind.ip} is not loopback; the admin listener "
                "needs bind.admin.cert and bind.admin.key to face a network"
            )
    return problems
