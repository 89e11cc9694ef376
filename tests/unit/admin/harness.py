"""An admin API over in-memory stores and real services, for StubTreq tests.

The realm and admin stores are real migrated SQLite files run inline; actors
live in a real LocalDirectory, rooms in a real RoomService, allocations in a
real TurnService over fake relay sockets (tests/unit/turn/helpers.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import treq
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from actrix.admin import store as admin_store
from actrix.admin.api import AdminApi
from actrix.admin.console import AdminRoot, ListenerRoot
from actrix.admin.context import AdminContext
from actrix.admin.series import SeriesSampler
from actrix.admin.sessions import LoginLimiter, Sessions
from actrix.core import realms
from actrix.core.directory import ActorEntry
from actrix.core.http import KleinGuard
from actrix.core.realms import RealmCache
from actrix.core.settings import RoomsConfig, Settings
from actrix.proto import actr_pb2
from actrix.rooms.grants import Authorizer
from actrix.rooms.service import RoomService
from actrix.signaling.local_directory import LocalDirectory
from tests.backends import InlineDatabase, SqliteBackend
from tests.daemon import make_settings
from tests.unit.rooms.test_service import FakeRealms, Recorder, Sink
from tests.unit.turn.helpers import Harness, turn_config

BASE = "http://127.0.0.1/admin/api/v1"


@attrs.frozen
class RevokeResult:
    sockets_closed: int
    allocations_terminated: int
    room_peers_removed: int


class RecordingRevoker:
    """A Revoker that records its calls and reports fixed counts."""

    def __init__(self) -> None:
        self.actors: list[tuple[str, str]] = []
        self.realms: list[tuple[int, str, str]] = []
        self.status_of: Any = None

    async def revoke_actor(self, actr_id: actr_pb2.ActrId, reason: str) -> Any:
        from actrix.core.actrid import actr_id_repr

        self.actors.append((actr_id_repr(actr_id), reason))
        return RevokeResult(1, 2, 3)

    async def suspend_realm(self, realm_id: int, reason: str) -> Any:
        # The realm row must be Suspended already when this runs.
        status = self.status_of(realm_id)
        self.realms.append((realm_id, reason, status))
        return RevokeResult(4, 5, 6)


def actor_entry(realm_id: int, serial: int, online: bool = True) -> ActorEntry:
    actr_id = actr_pb2.ActrId(
        realm=actr_pb2.Realm(realm_id=realm_id),
        serial_number=serial,
        type=actr_pb2.ActrType(manufacturer="acme", name="camera"),
    )
    return ActorEntry(
        actr_id=actr_id,
        type_key="acme:camera",
        service_name="",
        service_spec=None,
        ws_address=None,
        last_heartbeat=1_700_000_000.0,
        online=online,
    )


class ApiCase(SqliteBackend):
    """setUp builds the API; helpers send requests and decode answers."""

    revoker_present = True

    def settings(self) -> Settings:
        return make_settings(Path(self.mktemp()), overrides="[admin]\nenabled = true\n")

    def setUp(self) -> None:
        self.turn = Harness(
            config=turn_config(peer_allow=("203.0.113.0/24",)), account_traffic=True
        )
        self.clock = self.turn.clock
        self.realm_db: InlineDatabase = self.inline_database(realms.STORE)
        self.admin_db = self.inline_database(admin_store.STORE)
        self.realm_db.run_sync(realms.add_realm_txn, 1, "one", None, 100)
        self.realm_db.run_sync(realms.add_realm_txn, 2, "two", None, 100)
        self.cache = RealmCache(self.realm_db, self.clock)
        self.cache.load_sync()
        self.directory = LocalDirectory(self.clock, None)
        for entry in (
            actor_entry(1, 0xA1),
            actor_entry(1, 0xA2, False),
            actor_entry(2, 0xB1),
        ):
            self.successResultOf(Deferred.fromCoroutine(self.directory.register(entry)))
        config = RoomsConfig(allow_anonymous=True)
        authorizer = Authorizer(
            FakeRealms(),
            self.clock,
            Recorder(),
            allow_anonymous=True,
            anonymous_realm_id=0,
        )
        self.rooms = RoomService(config, self.clock, authorizer, None)
        self.sinks = []
        for _ in range(2):
            sink = Sink()
            peer = self.rooms.open_json(sink)
            self.rooms.join(peer, "lobby", ack=lambda r: None, display_name="p")
            self.sinks.append((peer, sink))
        self.revoker = RecordingRevoker()
        self.revoker.status_of = lambda rid: self.cache.realm(rid).status  # type: ignore[union-attr]
        self.sampler = SeriesSampler(self.clock, lambda: {"connections": 3.0})
        self.settings_value = self.settings()
        self.reloads: list[int] = []
        self.ctx = AdminContext(
            settings=self.settings_value,
            clock=self.clock,
            store=admin_store.AdminStore(self.admin_db),
            realm_db=self.realm_db,
            realms=self.cache,
            sessions=Sessions(self.clock, 3600, 16),
            limiter=LoginLimiter(self.clock, 5, 60),
            sampler=self.sampler,
            directory=self.directory,
            rooms=self.rooms,
            turn=self.turn.service,
            reload_hook=lambda: self.reloads.append(1),
            started_at=self.clock.seconds() - 10,
        )
        self.api = AdminApi(self.ctx, self.revoker if self.revoker_present else None)
        self.stub: Any = StubTreq(
            ListenerRoot(
                AdminRoot(KleinGuard(self.api.app.resource()), Path(self.mktemp()))
            )
        )
        self.rw = self.token("ops")
        self.ro = self.token("viewer", read_only=True)

    def token(self, name: str, read_only: bool = False) -> str:
        new = self.admin_db.run_sync(
            admin_store.create_token_txn, name, read_only, int(self.clock.seconds())
        )
        return new.text

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any, Any]:
        """(status, decoded JSON or None, response headers)."""
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = (
            raw
            if raw is not None
            else (None if body is None else json.dumps(body).encode())
        )
        d = self.stub.request(
            method,
            BASE + path,
            headers={k: [v] for k, v in sent.items()},
            data=data,
        )
        self.stub.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(treq.content(response))
        decoded = json.loads(content) if content else None
        return response.code, decoded, response.headers

    def login(self, token: str) -> tuple[str, str]:
        """Log in; (cookie header value, csrf)."""
        status, body, headers = self.call("POST", "/login", {"token": token})
        self.assertEqual(status, 200, body)
        cookie = headers.getRawHeaders("set-cookie")[0].split(";")[0]
        return cookie, body["csrf"]


__all__ = ["ApiCase", "SynchronousTestCase"]
