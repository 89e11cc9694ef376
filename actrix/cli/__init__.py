"""The ``actrix`` admin command: config check, realms, ACL, actor revocation,
credentials, status, LAN discovery, admin tokens.

It works on the same store as a running daemon: the SQLite files (WAL mode and
a busy timeout make that safe) or the shared PostgreSQL of ``[storage]``, where
every daemon sees a change within a second. Every command exits 0 on success
and 1 with a one-line message on failure; list commands take ``--json``.
``migrate-store`` copies a single node's SQLite files into PostgreSQL.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from actrix.cli import admin_tokens
from actrix.cli.actors import add_parsers as add_actor_parsers
from actrix.cli.common import DEFAULT_CONFIG, CliError
from actrix.cli.credentials import (
    cmd_ks_generate_kek,
    cmd_room_secret,
    cmd_room_token,
    cmd_status,
    cmd_turn_credential,
    cmd_turn_drain,
    turn_rest_credential,
)
from actrix.cli.discover import add_parser as add_discover_parser
from actrix.cli.stores import (
    cmd_acl_add,
    cmd_acl_list,
    cmd_acl_remove,
    cmd_check,
    cmd_migrate_store,
    cmd_realm_add,
    cmd_realm_list,
    cmd_realm_remove,
    cmd_realm_show,
    set_status,
)

__all__ = ["main", "run", "turn_rest_credential"]

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
        p.set_defaults(func=set_status(status))
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

    add_actor_parsers(sub, with_config)
    add_discover_parser(sub)

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

    admin_tokens.add_parser(sub, with_config)

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
