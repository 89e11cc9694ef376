"""The commands that work on the store: ``actrix check``, ``realm``, ``acl``
and ``migrate-store``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import attrs

from actrix.cli.common import (
    PgDb,
    SqliteDb,
    fail,
    load_settings,
    print_json,
    print_realm_line,
    realm_db,
    realm_dict,
    run_txn,
)
from actrix.core import realms
from actrix.core.config import ConfigError, Settings, load_config
from actrix.core.interfaces import RealmInfo
from actrix.core.storage import StorageError

# ---------------------------------------------------------------------------
# Commands


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    try:
        settings = load_config(Path(args.config))
    except ConfigError as e:
        for problem in e.problems:
            out.write(f"error: {problem}\n")
        return 1
    for warning in settings.warnings:
        out.write(f"{warning}\n")
    if args.runtime:
        problems = runtime_problems(settings)
        for problem in problems:
            out.write(f"error: {problem}\n")
        if problems:
            return 1
    out.write(
        f"{args.config}: OK ({settings.name}, env {settings.env}, services: "
        f"{', '.join(settings.enabled_services) or 'none'})\n"
    )
    return 0


def runtime_problems(settings: Settings) -> list[str]:
    """What would stop this config at startup on this machine (creates nothing).

    TLS files must load, ``sqlite_path`` must be writable (or creatable) or the
    PostgreSQL of ``[storage]`` reachable with no schema newer than this code,
    the Redis of ``[redis]`` must answer (password and database included), and
    the listening ports must be free.
    """
    import os
    import socket

    from actrix.core.tls import TLSConfigError, build_context

    problems: list[str] = []
    pairs = []
    if settings.http_services_enabled and settings.uses_https and settings.bind.https:
        pairs.append(("bind.https", settings.bind.https.cert, settings.bind.https.key))
    ice = settings.bind.ice
    if ice.tls_port is not None and ice.cert is not None and ice.key is not None:
        pairs.append(("bind.ice", ice.cert, ice.key))
    admin = settings.admin_bind
    if admin is not None and admin.cert is not None and admin.key is not None:
        pairs.append(("bind.admin", admin.cert, admin.key))
    for key, cert, private in pairs:
        try:
            build_context(cert, private)
        except TLSConfigError as e:
            problems.append(f"{key}: {e}")
    directory = settings.sqlite_path
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if settings.storage.postgresql is not None:
        from actrix.storecopy import schema_problems

        problems.extend(schema_problems(settings.storage.postgresql))
    elif not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        problems.append(f"sqlite_path: {directory} is not writable")
    if settings.redis is not None:
        from actrix.core.redis_probe import redis_problem

        problem = redis_problem(settings.redis)
        if problem is not None:
            problems.append(problem)
    binds: list[tuple[str, str, int, int]] = []
    if settings.uses_https and settings.bind.https is not None:
        b = settings.bind.https
        binds.append(("bind.https", b.ip, b.port, socket.SOCK_STREAM))
    elif settings.bind.http is not None:
        binds.append(
            (
                "bind.http",
                settings.bind.http.ip,
                settings.bind.http.port,
                socket.SOCK_STREAM,
            )
        )
    if settings.enabled_services and any(
        s in settings.enabled_services for s in ("stun", "turn")
    ):
        binds.append(("bind.ice", ice.ip, ice.port, socket.SOCK_DGRAM))
        if ice.tcp:
            binds.append(("bind.ice", ice.ip, ice.port, socket.SOCK_STREAM))
    if admin is not None:
        binds.append(("bind.admin", admin.ip, admin.port, socket.SOCK_STREAM))
    for key, ip, port, kind in binds:
        if port == 0:
            continue
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        with socket.socket(family, kind) as probe:
            try:
                probe.bind((ip, port))
            except OSError as e:
                problems.append(f"{key}: cannot listen on {ip}:{port}: {e.strerror}")
    return problems


def cmd_realm_add(args: argparse.Namespace, out: TextIO) -> int:
    path = realm_db(args, create=True)
    if not args.name.strip():
        fail("realm name must not be blank")
    now = int(time.time())
    if args.if_missing and args.id is not None:
        existing = run_txn(path, realms.get_realm_txn, args.id)
        if existing is not None:
            out.write(f"{existing.realm_id}\texists\t{existing.name}\n")
            return 0
    expires_at = args.expires_at
    if args.ttl is not None:
        expires_at = now + args.ttl
    info = run_txn(path, realms.add_realm_txn, args.id, args.name, expires_at, now)
    print_realm_line(out, info, now)
    return 0


def cmd_realm_list(args: argparse.Namespace, out: TextIO) -> int:
    path = realm_db(args, create=False)
    now = time.time()
    rows = run_txn(path, realms.list_realms_txn)
    if args.json:
        print_json(out, [realm_dict(r, now) for r in rows])
    else:
        for info in rows:
            print_realm_line(out, info, now)
    return 0


def get_realm(path: SqliteDb | PgDb, realm_id: int) -> RealmInfo:
    info = run_txn(path, realms.get_realm_txn, realm_id)
    if info is None:
        fail(f"realm {realm_id} not found")
    return info


def cmd_realm_show(args: argparse.Namespace, out: TextIO) -> int:
    path = realm_db(args, create=False)
    info = get_realm(path, args.realm_id)
    now = time.time()
    acl = run_txn(path, realms.list_acl_txn, args.realm_id)
    if args.json:
        data = realm_dict(info, now)
        data["acl"] = [attrs.asdict(row) for row in acl]
        print_json(out, data)
        return 0
    for key, value in realm_dict(info, now).items():
        out.write(f"{key}: {value}\n")
    out.write(f"acl_rules: {len(acl)}\n")
    return 0


def set_status(status: str) -> Callable[[argparse.Namespace, TextIO], int]:
    def command(args: argparse.Namespace, out: TextIO) -> int:
        path = realm_db(args, create=False)
        now = int(time.time())
        run_txn(path, realms.set_realm_status_txn, args.realm_id, status, now)
        print_realm_line(out, get_realm(path, args.realm_id), now)
        return 0

    return command


def cmd_realm_remove(args: argparse.Namespace, out: TextIO) -> int:
    path = realm_db(args, create=False)
    run_txn(path, realms.remove_realm_txn, args.realm_id)
    out.write(f"{args.realm_id}\tremoved\n")
    return 0


def cmd_acl_add(args: argparse.Namespace, out: TextIO) -> int:
    path = realm_db(args, create=False)
    get_realm(path, args.realm)
    for label, value in (("--from", args.from_type), ("--to", args.to_type)):
        if not value.strip() or value.count(":") not in (1, 2):
            fail(f"{label}: expected a type key 'manufacturer:name[:version]'")
    rowid = run_txn(
        path, realms.add_acl_txn, args.realm, args.from_type, args.to_type, args.allow
    )
    row = run_txn(path, realms.get_acl_txn, rowid)
    if row is None:  # removed by someone else in between
        fail(f"ACL rule {rowid} not found")
    _print_acl_row(out, row)
    if args.allow and not row.allow:
        out.write(f"note: the registration of {row.to_type} denies this caller\n")
    return 0


def _acl_sources(row: realms.AclRow) -> str:
    """Who decided: ``operator`` and/or ``registration`` (each with its verdict)."""
    parts = []
    for label, value in (
        ("operator", row.operator_allow),
        ("registration", row.declared_allow),
    ):
        if value is not None:
            parts.append(f"{label}:{'allow' if value else 'deny'}")
    return ",".join(parts)


def _print_acl_row(out: TextIO, row: realms.AclRow) -> None:
    verdict = "allow" if row.allow else "deny"
    out.write(
        f"{row.rowid}\t{row.realm_id}\t{row.from_type}\t{row.to_type}\t{verdict}"
        f"\t{_acl_sources(row)}\n"
    )


def cmd_acl_list(args: argparse.Namespace, out: TextIO) -> int:
    path = realm_db(args, create=False)
    rows = run_txn(path, realms.list_acl_txn, args.realm)
    if args.json:
        print_json(out, [attrs.asdict(row) for row in rows])
        return 0
    for row in rows:
        _print_acl_row(out, row)
    return 0


def cmd_acl_remove(args: argparse.Namespace, out: TextIO) -> int:
    path = realm_db(args, create=False)
    run_txn(path, realms.remove_acl_txn, args.rule_id)
    out.write(f"{args.rule_id}\tremoved\n")
    return 0


def cmd_migrate_store(args: argparse.Namespace, out: TextIO) -> int:
    from actrix.storecopy import copy_plan, copy_to_postgresql, read_source

    configured = None
    if args.config is not None:
        configured = load_settings(args).storage.postgresql
        if configured is None:
            fail("--config: [storage] backend is not 'postgresql'")
    try:
        source, config = copy_plan(args.source, args.target, configured)
        rows = read_source(source)
        counts = copy_to_postgresql(rows, config, force=args.force)
    except StorageError as e:
        fail(str(e))
    if not any(counts.values()) and any(rows.values()):
        out.write("target already holds exactly these rows; nothing copied\n")
    for table, count in counts.items():
        out.write(f"{table}\t{count}\n")
    return 0
