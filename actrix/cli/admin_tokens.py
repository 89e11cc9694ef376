"""``actrix admin-token create|list|revoke``: credentials of the admin console and API.

A token is printed once, on creation, and stored as the SHA-256 of its secret;
whoever loses it revokes it and creates another. Revoking ends the token's
console sessions on the next request they make.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, TextIO

from actrix.admin import store as admin_store
from actrix.cli.common import fail, print_json, run_txn, store_db


def _db(args: argparse.Namespace, *, create: bool) -> Any:
    return store_db(args, admin_store.STORE, "admin", create=create)


def cmd_admin_token_create(args: argparse.Namespace, out: TextIO) -> int:
    db = _db(args, create=True)
    try:
        new = run_txn(
            db,
            admin_store.create_token_txn,
            args.name,
            args.read_only,
            int(time.time()),
        )
    except admin_store.AdminStoreError as e:
        fail(str(e))
    kind = "read-only" if new.token.read_only else "read-write"
    if args.json:
        print_json(
            out,
            {
                "name": new.token.name,
                "read_only": new.token.read_only,
                "token": new.text,
            },
        )
        return 0
    out.write(
        f"{new.text}\n"
        f"# admin token {new.token.name!r} ({kind}); shown once, store it now.\n"
        "# Log in at /admin/ with it, or: curl -H 'Authorization: Bearer <token>'\n"
    )
    return 0


def cmd_admin_token_list(args: argparse.Namespace, out: TextIO) -> int:
    db = _db(args, create=False)
    tokens = run_txn(db, admin_store.list_tokens_txn)
    if args.json:
        print_json(
            out,
            [
                {
                    "name": t.name,
                    "key_id": t.key_id,
                    "read_only": t.read_only,
                    "created_at": t.created_at,
                    "revoked_at": t.revoked_at,
                    "last_used_at": t.last_used_at,
                }
                for t in tokens
            ],
        )
        return 0
    for t in tokens:
        state = "active" if t.active else f"revoked={t.revoked_at}"
        rights = "read-only" if t.read_only else "read-write"
        used = "never" if t.last_used_at is None else str(t.last_used_at)
        out.write(f"{t.key_id}\t{t.name}\t{rights}\t{state}\tlast_used={used}\n")
    return 0


def cmd_admin_token_revoke(args: argparse.Namespace, out: TextIO) -> int:
    db = _db(args, create=False)
    try:
        token = run_txn(db, admin_store.revoke_token_txn, args.token, int(time.time()))
    except admin_store.AdminStoreError as e:
        fail(str(e))
    out.write(f"revoked admin token {token.name!r} ({token.key_id})\n")
    return 0


def add_parser(sub: Any, with_config: Any) -> None:
    """The ``admin-token`` subcommands."""
    tokens = sub.add_parser(
        "admin-token", help="manage admin console/API tokens"
    ).add_subparsers(dest="admin_token_command", required=True)
    p = with_config(tokens.add_parser("create", help="create a token (printed once)"))
    p.add_argument("--name", required=True, help="who holds it (shown in the audit)")
    p.add_argument("--read-only", action="store_true", help="may look, not change")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_admin_token_create)
    p = with_config(tokens.add_parser("list", help="list tokens (never the secrets)"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_admin_token_list)
    p = with_config(tokens.add_parser("revoke", help="revoke a token"))
    p.add_argument("token", help="the token's name or key id")
    p.set_defaults(func=cmd_admin_token_revoke)
