"""Credentials and operations: ``actrix room-token``, ``room-secret``,
``turn-credential``, ``turn drain``, ``ks-generate-kek`` and ``status``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import secrets
import time
import urllib.error
import urllib.request
from typing import TextIO

from actrix.cli.common import fail, load_settings, print_json, realm_db, run_txn
from actrix.core import realms, roomtokens
from actrix.core.config import Settings
from actrix.core.ice import rest_credential
from actrix.core.settings import turn_drain_flag
from actrix.core.storage import StorageError, ensure_directory


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
    settings = load_settings(args)
    db = realm_db(args, create=False)
    role = roomtokens.normalize_role(args.role)
    if role is None:
        fail("--role must be sender, receiver, any, publisher or subscriber")
    max_ttl = _room_token_max_ttl(settings)
    if not 60 <= args.ttl <= max_ttl:
        fail(f"--ttl must be within 60..{max_ttl} (services.rooms.token_max_ttl)")
    now = int(time.time())
    info = run_txn(db, realms.get_realm_txn, args.realm)
    if info is None:
        fail(f"realm {args.realm} not found")
    if realms.realm_problem(info, args.realm, now) is not None:
        fail(f"realm {args.realm} is not active")
    secret = run_txn(db, realms.current_room_secret_txn, args.realm, now)
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
        fail(f"invalid token claims: {e}")
    if args.json:
        print_json(
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
    settings = load_settings(args)
    db = realm_db(args, create=False)
    now = int(time.time())
    if args.rotate:
        overlap = None if args.no_overlap else _room_token_max_ttl(settings)
        secret = run_txn(db, realms.rotate_room_secret_txn, args.realm, now, overlap)
        out.write(f"realm {args.realm}: room secret kid {secret.kid} is current\n")
    else:
        secret = run_txn(db, realms.current_room_secret_txn, args.realm, now)
        out.write(f"realm {args.realm}: room secret kid {secret.kid}\n")
    return 0


def cmd_turn_credential(args: argparse.Namespace, out: TextIO) -> int:
    secret = args.secret
    if secret is None:
        settings = load_settings(args)
        if settings.turn.static_auth_secret is None:
            fail("no --secret given and turn.static_auth_secret is not configured")
        secret = settings.turn.static_auth_secret.value
    if args.ttl <= 0:
        fail("--ttl must be positive")
    username, password = turn_rest_credential(
        secret, args.name, args.ttl, int(time.time())
    )
    if args.json:
        print_json(out, {"username": username, "password": password, "ttl": args.ttl})
    else:
        out.write(f"username: {username}\npassword: {password}\n")
    return 0


def cmd_turn_drain(args: argparse.Namespace, out: TextIO) -> int:
    """Create (or with --cancel remove) the drain flag the daemon polls each second."""
    settings = load_settings(args)
    flag = turn_drain_flag(settings.sqlite_path)
    try:
        if args.cancel:
            flag.unlink(missing_ok=True)
        else:
            ensure_directory(settings.sqlite_path)
            flag.touch()
    except (OSError, StorageError) as e:
        fail(f"cannot {'remove' if args.cancel else 'create'} {flag}: {e}")
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
        settings = load_settings(args)
        if settings.uses_https and settings.bind.https is not None:
            b = settings.bind.https
            url = f"https://{b.domain_name}:{b.port}"
        elif settings.bind.http is not None:
            b2 = settings.bind.http
            host = "127.0.0.1" if b2.ip in ("0.0.0.0", "::") else b2.ip  # noqa: S104
            url = f"http://{host}:{b2.port}"
        else:
            fail("no HTTP listener configured; pass --url")
    target = url.rstrip("/") + "/health"
    if not target.startswith(("http://", "https://")):
        fail("--url must start with http:// or https://")
    try:
        with urllib.request.urlopen(target, timeout=args.timeout) as response:  # noqa: S310
            body = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as e:
        fail(f"{target}: not reachable: {getattr(e, 'reason', e)}")
    if args.json:
        print_json(out, body)
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
