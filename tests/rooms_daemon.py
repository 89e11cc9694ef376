"""A daemon with rooms enabled for integration tests, and room-token helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from actrix.core import roomtokens
from actrix.core.realms import (
    current_room_secret_txn,
    realms_path,
)
from actrix.core.storage import connect_sync
from actrix.root import ActrixService
from tests.daemon import add_realm, http_port, make_settings, start_daemon
from tests.rooms_client import BinaryPeer, JsonPeer

ROOMS = """
[services.rooms]
allow_anonymous = true
default_max_peers = 3
max_frame_json = 4096
"""


def room_secret(directory: Path, realm_id: int) -> tuple[int, bytes]:
    conn = connect_sync(realms_path(directory))
    try:
        found = current_room_secret_txn(conn.cursor(), realm_id, 0)
    finally:
        conn.close()
    return found.kid, found.secret


def room_token(directory: Path, realm_id: int, room: str, **claims: Any) -> str:
    kid, secret = room_secret(directory, realm_id)
    fields: dict[str, Any] = {
        "realm_id": realm_id,
        "room": room,
        "role": "any",
        "exp": int(reactor.seconds()) + 600,
        "nonce": roomtokens.new_nonce(),
        "kid": kid,
    }
    fields.update(claims)
    return roomtokens.mint(roomtokens.RoomClaims(**fields), secret)


class RoomsDaemonCase(TestCase):
    timeout = 20
    extra = ROOMS

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        add_realm(self.directory, 7, "seven")
        self.root: ActrixService = start_daemon(
            self, make_settings(self.directory, enable=63, extra=self.extra)
        )
        self.port = http_port(self.root)
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    async def json_peer(self) -> JsonPeer:
        peer = await JsonPeer(reactor).open(self.port)
        self.addCleanup(peer.abort)
        return peer

    async def binary_peer(
        self,
        client_id: str,
        token: str = "test_token_1",  # noqa: S107 (SM test token)
        **extra: Any,
    ) -> BinaryPeer:
        peer = BinaryPeer(reactor)
        self.addCleanup(peer.abort)
        ack = await peer.connect_as(self.port, client_id, token, **extra)
        self.assertIn("ConnectAck", ack, ack)
        return peer
