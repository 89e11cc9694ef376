"""``actrix actor``: revoke an actor's identity, list the revocations in force.

A revocation is one row in the realm store; every daemon sharing the store
enforces it within a second (its change feed): the actor's signaling socket is
closed, its TURN allocations end and its tokens are refused until they expire.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TextIO

import attrs

from actrix.cli.common import fail, load_settings, print_json, realm_db, run_txn
from actrix.core.actrid import ActrIdError, actr_id_repr, parse_actr_id
from actrix.core.revocations import (
    Revocation,
    add_revocation_txn,
    clean_reason,
    list_revocations_txn,
    revocation_lifetime,
)


def cmd_actor_revoke(args: argparse.Namespace, out: TextIO) -> int:
    try:
        actr_id = parse_actr_id(args.actr_id)
    except ActrIdError as e:
        fail(str(e))
    settings = load_settings(args)
    path = realm_db(args, create=False)
    now = int(time.time())
    revocation = Revocation(
        realm_id=actr_id.realm.realm_id,
        serial=actr_id.serial_number,
        actor_id=actr_id_repr(actr_id),
        reason=clean_reason(args.reason),
        revoked_at=now,
        expires_at=now + revocation_lifetime(settings),
    )
    run_txn(path, add_revocation_txn, revocation)
    _print(out, revocation)
    return 0


def cmd_actor_revoked(args: argparse.Namespace, out: TextIO) -> int:
    path = realm_db(args, create=False)
    rows = run_txn(path, list_revocations_txn, int(time.time()))
    if args.json:
        print_json(out, [attrs.asdict(r) for r in rows])
        return 0
    for revocation in rows:
        _print(out, revocation)
    return 0


def _print(out: TextIO, revocation: Revocation) -> None:
    out.write(
        f"{revocation.actor_id}\trevoked\tuntil={revocation.expires_at}"
        f"\t{revocation.reason}\n"
    )


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    """Add ``actor revoke`` and ``actor revoked`` to the ``actrix`` parser."""
    actor = sub.add_parser("actor", help="revoke actors").add_subparsers(
        dest="actor_command", required=True
    )
    p = with_config(
        actor.add_parser(
            "revoke",
            help="revoke an actor: close its socket, end its TURN allocations and"
            " refuse its tokens until they expire (every daemon, within 1 s)",
        )
    )
    p.add_argument("actr_id", help="<serial hex>@<realm>/<manufacturer>:<name>")
    p.add_argument("--reason", default="", help="said in the close frame and logs")
    p.set_defaults(func=cmd_actor_revoke)
    p = with_config(actor.add_parser("revoked", help="list revocations in force"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_actor_revoked)
