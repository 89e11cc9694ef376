"""The ``actrix`` admin command: config check, realms, ACL, credentials, status.

It works on the same store as a running daemon: the SQLite files (WAL mode and
a busy timeout make that safe) or the shared PostgreSQL of ``[storage]``, where
every daemon sees a change within a second. Every command exits 0 on success
and 1 with a one-line message on failure; list commands take ``--json``.
``migrate-store`` copies a single node's SQLite files into PostgreSQL.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import secrets
import sqlite3
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO, TypeVar

import attrs

from actrix.core import realms, roomtokens
from actrix.core.config import ConfigError, PostgresConfig, Settings, load_config
from actrix.core.ice import rest_credential
from actrix.core.interfaces import RealmInfo
from actrix.core.settings import turn_drain_flag
from actrix.core.storage import StorageError, connect_sync, ensure_directory, migrate

DEFAULT_CONFIG = "/etc/actrix/config.toml"

T = TypeVar("T")


class CliError(Exception):
    """A command failed; the message is printed as one line."""


def _fail(message: str) -> NoReturn:
    raise CliError(message)


# ---------------------------------------------------------------------------
# Database access


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return load_config(Path(args.config))
    except ConfigError as e:
        _fail("invalid config: " + "; ".join(e.problems))


def _realm_db(args: argparse.Namespace, *, create: bool) -> _Db | _PgDb:
    settings = _settings(args)
    pg = settings.storage.postgresql
    if pg is not None:
        from actrix.core.pg import migrate_pg, schema_name

        try:
            migrate_pg(pg, realms.STORE)
        except StorageError as e:
            _fail(str(e))
        return _PgDb(pg, schema_name(pg, realms.STORE))
    path = realms.realms_path(settings.sqlite_path)
    if not path.exists():
        if not create:
            _fail(
                f"no realm database at {path} (add a realm or start the daemon first)"
            )
        try:
            ensure_directory(settings.sqlite_path)
        except StorageError as e:
            _fail(str(e))
    try:
        migrate(path, realms.MIGRATIONS)
    except StorageError as e:
        _fail(str(e))
    return _Db(path, int(args.busy_timeout * 1000))


@attrs.frozen
class _Db:
    path: Path
    busy_timeout_ms: int


@attrs.frozen
class _PgDb:
    config: PostgresConfig
    schema: str


def _run(db: _Db | _PgDb, fn: Callable[..., T], *fn_args: Any) -> T:
    """Run one ``*_txn`` function in a write transaction."""
    if isinstance(db, _PgDb):
        return _run_pg(db, fn, *fn_args)
    path = db.path
    try:
        conn = connect_sync(path, db.busy_timeout_ms)
    except sqlite3.Error as e:
        _fail(f"{path}: cannot open: {e}")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn.cursor(), *fn_args)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result
    except sqlite3.OperationalError as e:
        if "locked" in str(e) or "busy" in str(e):
            _fail(f"{path}: database is locked by another process; try again")
        _fail(f"{path}: {e}")
    except sqlite3.Error as e:
        _fail(f"{path}: {e}")
    except realms.RealmError as e:
        _fail(str(e))
    finally:
        conn.close()


def _run_pg(db: _PgDb, fn: Callable[..., T], *fn_args: Any) -> T:
    from actrix.core.pg import run_in_schema

    try:
        return run_in_schema(db.config, db.schema, fn, *fn_args)
    except (StorageError, realms.RealmError) as e:
        _fail(str(e))


# ---------------------------------------------------------------------------
# Output


def _realm_dict(info: RealmInfo, now: float) -> dict[str, Any]:
    data = attrs.asdict(info)
    data["state"] = info.state(now)
    return data


def _print_json(out: TextIO, value: object) -> None:
    out.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def _print_realm_line(out: TextIO, info: RealmInfo, now: float) -> None:
    expires = "never" if info.expires_at is None else str(info.expires_at)
    out.write(f"{info.realm_id}\t{info.state(now)}\t{info.name}\texpires={expires}\n")


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
    and the listening ports must be free.
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
    path = _realm_db(args, create=True)
    if not args.name.strip():
        _fail("realm name must not be blank")
    now = int(time.time())
    if args.if_missing and args.id is not None:
        existing = _run(path, realms.get_realm_txn, args.id)
        if existing is not None:
            out.write(f"{existing.realm_id}\texists\t{existing.name}\n")
            return 0
    expires_at = args.expires_at
    if args.ttl is not None:
        expires_at = now + args.ttl
    info = _run(path, realms.add_realm_txn, args.id, args.name, expires_at, now)
    _print_realm_line(out, info, now)
    return 0


def cmd_realm_list(args: argparse.Namespace, out: TextIO) -> int:
    path = _realm_db(args, create=False)
    now = time.time()
    rows = _run(path, realms.list_realms_txn)
    if args.json:
        _print_json(out, [_realm_dict(r, now) for r in rows])
    else:
        for info in rows:
            _print_realm_line(out, info, now)
    return 0


def _get_realm(path: _Db | _PgDb, realm_id: int) -> RealmInfo:
    info = _run(path, realms.get_realm_txn, realm_id)
    if info is None:
        _fail(f"realm {realm_id} not found")
    return info


def cmd_realm_show(args: argparse.Namespace, out: TextIO) -> int:
    path = _realm_db(args, create=False)
    info = _get_realm(path, args.realm_id)
    now = time.time()
    acl = _run(path, realms.list_acl_txn, args.realm_id)
    if args.json:
        data = _realm_dict(info, now)
        data["acl"] = [attrs.asdict(row) for row in acl]
        _print_json(out, data)
        return 0
    for key, value in _realm_dict(info, now).items():
        out.write(f"{key}: {value}\n")
    out.write(f"acl_rules: {len(acl)}\n")
    return 0


def _set_status(status: str) -> Callable[[argparse.Namespace, TextIO], int]:
    def command(args: argparse.Namespace, out: TextIO) -> int:
        path = _realm_db(args, create=False)
        now = int(time.time())
        _run(path, realms.set_realm_status_txn, args.realm_id, status, now)
        _print_realm_line(out, _get_realm(path, args.realm_id), now)
        return 0

    return command


def cmd_realm_remove(args: argparse.Namespace, out: TextIO) -> int:
    path = _realm_db(args, create=False)
    _run(path, realms.remove_realm_txn, args.realm_id)
    out.write(f"{args.realm_id}\tremoved\n")
    return 0


def cmd_acl_add(args: argparse.Namespace, out: TextIO) -> int:
    path = _realm_db(args, create=False)
    _get_realm(path, args.realm)
    for label, value in (("--from", args.from_type), ("--to", args.to_type)):
        if not value.strip() or value.count(":") not in (1, 2):
            _fail(f"{label}: expected a type key 'manufacturer:name[:version]'")
    rowid = _run(
        path, realms.add_acl_txn, args.realm, args.from_type, args.to_type, args.allow
    )
    row = _run(path, realms.get_acl_txn, rowid)
    if row is None:  # removed by someone else in between
        _fail(f"ACL rule {rowid} not found")
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
    path = _realm_db(args, create=False)
    rows = _run(path, realms.list_acl_txn, args.realm)
    if args.json:
        _print_json(out, [attrs.asdict(row) for row in rows])
        return 0
    for row in rows:
        _print_acl_row(out, row)
    return 0


def cmd_acl_remove(args: argparse.Namespace, out: TextIO) -> int:
    path = _realm_db(args, create=False)
    _run(path, realms.remove_acl_txn, args.rule_id)
    out.write(f"{args.rule_id}\tremoved\n")
    return 0


def cmd_migrate_store(args: argparse.Namespace, out: TextIO) -> int:
    from actrix.storecopy import copy_plan, copy_to_postgresql, read_source

    configured = None
    if args.config is not None:
        configured = _settings(args).storage.postgresql
        if configured is None:
            _fail("--config: [storage] backend is not 'postgresql'")
    try:
        source, config = copy_plan(args.source, args.target, configured)
        rows = read_source(source)
        counts = copy_to_postgresql(rows, config, force=args.force)
    except StorageError as e:
        _fail(str(e))
    if not any(counts.values()) and any(rows.values()):
        out.write("target already holds exactly these rows; nothing copied\n")
    for table, count in counts.items():
        out.write(f"{table}\t{count}\n")
    return 0


def turn_rest_credential(secret: str, name: str, ttl: int, now: int) -> tuple[str, str]:
    """coturn REST-API credentials: ``<expiry>:<name>`` and base64 HMAC-SHA1."""
    if name:
        return rest_credential(secret.encode(), name, now + ttl)
    username = str(now + ttl)
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def _room_token_max_ttl(settings: Settings) -> int:
    rooms = settings.services.rooms
    return 86400 if rooms is None else rooms.token_max_ttl


def cmd_room_token(args: argparse.Namespace, out: TextIO) -> int:
    settings = _settings(args)
    db = _realm_db(args, create=False)
    role = roomtokens.normalize_role(args.role)
    if role is None:
        _fail("--role must be sender, receiver, any, publisher or subscriber")
    max_ttl = _room_token_max_ttl(settings)
    if not 60 <= args.ttl <= max_ttl:
        _fail(f"--ttl must be within 60..{max_ttl} (services.rooms.token_max_ttl)")
    now = int(time.time())
    info = _run(db, realms.get_realm_txn, args.realm)
    if info is None:
        _fail(f"realm {args.realm} not found")
    if realms.realm_problem(info, args.realm, now) is not None:
        _fail(f"realm {args.realm} is not active")
    secret = _run(db, realms.current_room_secret_txn, args.realm, now)
    claims = roomtokens.RoomClaims(
        realm_id=args.realm,
        room=args.room,
        role=role,
        exp=now + args.ttl,
        nonce=roomtokens.new_nonce(),
        kid=secret.kid,
        peer=args.peer,
        max_uses=args.max_uses,
    )
    try:
        token = roomtokens.mint(claims, secret.secret)
    except roomtokens.TokenFormatError as e:
        _fail(f"invalid token claims: {e}")
    if args.json:
        _print_json(
            out,
            {
                "token": token,
                "expires_at": claims.exp,
                "kid": claims.kid,
                "claims": claims.to_json(),
            },
        )
    else:
        out.write(token + "\n")
    return 0


def cmd_room_secret(args: argparse.Namespace, out: TextIO) -> int:
    settings = _settings(args)
    db = _realm_db(args, create=False)
    now = int(time.time())
    if args.rotate:
        overlap = None if args.no_overlap else _room_token_max_ttl(settings)
        secret = _run(db, realms.rotate_room_secret_txn, args.realm, now, overlap)
        out.write(f"realm {args.realm}: room secret kid {secret.kid} is current\n")
    else:
        secret = _run(db, realms.current_room_secret_txn, args.realm, now)
        out.write(f"realm {args.realm}: room secret kid {secret.kid}\n")
    return 0


def cmd_turn_credential(args: argparse.Namespace, out: TextIO) -> int:
    secret = args.secret
    if secret is None:
        settings = _settings(args)
        if settings.turn.static_auth_secret is None:
            _fail("no --secret given and turn.static_auth_secret is not configured")
        secret = settings.turn.static_auth_secret.value
    if args.ttl <= 0:
        _fail("--ttl must be positive")
    username, password = turn_rest_credential(
        secret, args.name, args.ttl, int(time.time())
    )
    if args.json:
        _print_json(out, {"username": username, "password": password, "ttl": args.ttl})
    else:
        out.write(f"username: {username}\npassword: {password}\n")
    return 0


def cmd_turn_drain(args: argparse.Namespace, out: TextIO) -> int:
    """Create (or with --cancel remove) the drain flag the daemon polls each second."""
    settings = _settings(args)
    flag = turn_drain_flag(settings.sqlite_path)
    try:
        if args.cancel:
            flag.unlink(missing_ok=True)
        else:
            ensure_directory(settings.sqlite_path)
            flag.touch()
    except (OSError, StorageError) as e:
        _fail(f"cannot {'remove' if args.cancel else 'create'} {flag}: {e}")
    if args.cancel:
        out.write(f"TURN drain cancelled ({flag} removed)\n")
    else:
        out.write(
            f"TURN draining ({flag} created): within a second the daemon sends new"
            " allocations to turn.alternate_servers (or answers 508); existing ones"
            " run on. Watch `actrix status` (turn.allocations) reach 0.\n"
        )
    return 0


def cmd_ks_generate_kek(args: argparse.Namespace, out: TextIO) -> int:
    kek = secrets.token_bytes(32)
    out.write(kek.hex() if args.format == "hex" else base64.b64encode(kek).decode())
    out.write("\n")
    return 0


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    url = args.url
    if url is None:
        settings = _settings(args)
        if settings.uses_https and settings.bind.https is not None:
            b = settings.bind.https
            url = f"https://{b.domain_name}:{b.port}"
        elif settings.bind.http is not None:
            b2 = settings.bind.http
            host = "127.0.0.1" if b2.ip in ("0.0.0.0", "::") else b2.ip  # noqa: S104
            url = f"http://{host}:{b2.port}"
        else:
            _fail("no HTTP listener configured; pass --url")
    target = url.rstrip("/") + "/health"
    if not target.startswith(("http://", "https://")):
        _fail("--url must start with http:// or https://")
    try:
        with urllib.request.urlopen(target, timeout=args.timeout) as response:  # noqa: S310
            body = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as e:
        _fail(f"{target}: not reachable: {getattr(e, 'reason', e)}")
    if args.json:
        _print_json(out, body)
    else:
        out.write(
            f"{body.get('name')}: {body.get('status')} (version {body.get('version')},"
            f" up {body.get('uptime_seconds')} s, services:"
            f" {', '.join(body.get('services', []))})\n"
        )
        turn = body.get("turn")
        if isinstance(turn, dict):
            state = "draining" if turn.get("draining") else "accepting"
            out.write(f"turn: {state}, {turn.get('allocations')} allocations\n")
    return 0 if body.get("status") in ("ok", "draining") else 1


# ---------------------------------------------------------------------------
# Parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="actrix", description=__doc__)
    parser.add_argument(
        "--busy-timeout",
        type=float,
        default=5.0,
        help="seconds to wait for a database locked by another process",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file")
        return p

    p = with_config(sub.add_parser("check", help="validate a config file"))
    p.add_argument(
        "--runtime",
        action="store_true",
        help="also check TLS files, sqlite_path and that the ports are free",
    )
    p.set_defaults(func=cmd_check)

    realm = sub.add_parser("realm", help="manage realms").add_subparsers(
        dest="realm_command", required=True
    )
    p = with_config(realm.add_parser("add", help="create a realm"))
    p.add_argument("--name", required=True)
    p.add_argument("--id", type=int, default=None, help="realm id (default: next)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--expires-at", type=int, default=None, help="Unix seconds")
    group.add_argument("--ttl", type=int, default=None, help="seconds from now")
    p.add_argument(
        "--if-missing", action="store_true", help="succeed if --id exists already"
    )
    p.set_defaults(func=cmd_realm_add)
    p = with_config(realm.add_parser("list", help="list realms"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_realm_list)
    p = with_config(realm.add_parser("show", help="show one realm"))
    p.add_argument("realm_id", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_realm_show)
    for name, status in (("suspend", "Suspended"), ("resume", "Normal")):
        p = with_config(realm.add_parser(name, help=f"{name} a realm"))
        p.add_argument("realm_id", type=int)
        p.set_defaults(func=_set_status(status))
    p = with_config(realm.add_parser("remove", help="delete a realm and its ACL"))
    p.add_argument("realm_id", type=int)
    p.set_defaults(func=cmd_realm_remove)

    acl = sub.add_parser("acl", help="manage actor ACL rules").add_subparsers(
        dest="acl_command", required=True
    )
    p = with_config(
        acl.add_parser(
            "add",
            help="set the operator's rule for a realm/from/to triple"
            " (a deny is never lifted by an allow; remove it first)",
        )
    )
    p.add_argument("--realm", type=int, required=True)
    p.add_argument("--from", dest="from_type", required=True, help="caller type key")
    p.add_argument("--to", dest="to_type", required=True, help="target type key")
    verdict = p.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--allow", dest="allow", action="store_true")
    verdict.add_argument("--deny", dest="allow", action="store_false")
    p.set_defaults(func=cmd_acl_add)
    p = with_config(acl.add_parser("list", help="list ACL rules"))
    p.add_argument("--realm", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_acl_list)
    p = with_config(acl.add_parser("remove", help="delete an ACL rule by id"))
    p.add_argument("rule_id", type=int)
    p.set_defaults(func=cmd_acl_remove)

    p = with_config(
        sub.add_parser("turn-credential", help="mint coturn-style REST credentials")
    )
    p.add_argument("--secret", default=None, help="default: turn.static_auth_secret")
    p.add_argument("--name", default="", help="user name part")
    p.add_argument("--ttl", type=int, default=86400, help="validity in seconds")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_turn_credential)

    p = with_config(
        sub.add_parser("room-token", help="mint a room token (rooms.md §4)")
    )
    p.add_argument("--realm", type=int, required=True)
    p.add_argument("--room", required=True, help="room name, 'prefix*' or '*'")
    p.add_argument(
        "--role", default="any", help="sender|receiver|any (publisher, subscriber)"
    )
    p.add_argument("--peer", default=None, help="bind a client_id / display name")
    p.add_argument("--ttl", type=int, default=3600, help="validity in seconds")
    p.add_argument("--max-uses", type=int, default=None, dest="max_uses")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_room_token)

    p = with_config(
        sub.add_parser("room-secret", help="show or rotate a realm's room secret")
    )
    p.add_argument("--realm", type=int, required=True)
    p.add_argument("--rotate", action="store_true", help="make kid + 1 current")
    p.add_argument(
        "--no-overlap", action="store_true", help="drop the old secret at once"
    )
    p.set_defaults(func=cmd_room_secret)

    turn = sub.add_parser("turn", help="operate the TURN server").add_subparsers(
        dest="turn_command", required=True
    )
    p = with_config(
        turn.add_parser("drain", help="stop new allocations here; existing ones run on")
    )
    p.add_argument("--cancel", action="store_true", help="accept allocations again")
    p.set_defaults(func=cmd_turn_drain)

    p = sub.add_parser("ks-generate-kek", help="print a random 32-byte KS KEK")
    p.add_argument("--format", choices=("hex", "base64"), default="hex")
    p.set_defaults(func=cmd_ks_generate_kek)

    p = sub.add_parser(
        "migrate-store",
        help="copy realms, ACL, KS keys and the AIS key from SQLite to PostgreSQL",
    )
    p.add_argument("--from", dest="source", required=True, help="sqlite:DIR")
    p.add_argument(
        "--to",
        dest="target",
        required=True,
        help="postgresql:DSN (libpq; PGPASSWORD and ~/.pgpass apply), or"
        " 'postgresql:' with --config",
    )
    p.add_argument(
        "-c",
        "--config",
        default=None,
        help="take the target (and schema_prefix) from this config's [storage]",
    )
    p.add_argument(
        "--force", action="store_true", help="upsert into a non-empty target"
    )
    p.set_defaults(func=cmd_migrate_store)

    p = with_config(sub.add_parser("status", help="GET /health of a running daemon"))
    p.add_argument("--url", default=None, help="base URL (default: from config)")
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    return parser


def run(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Run one command; returns the exit status."""
    args = _parser().parse_args(list(argv))
    try:
        status: int = args.func(args, out)
    except CliError as e:
        err.write(f"actrix: {e}\n")
        return 1
    return status


def main() -> None:
    """Console entry point."""
    sys.exit(run(sys.argv[1:], sys.stdout, sys.stderr))
