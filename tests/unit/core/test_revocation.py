"""Revoker over fakes: what each entry point and the change feed end."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from actrix.core import realms
from actrix.core.actrid import new_actr_id
from actrix.core.directory import ActorKey
from actrix.core.revocation import (
    MAX_CLOSE_REASON,
    REVOKED_CODE,
    Revoker,
    RevokeResult,
    close_reason,
)
from actrix.core.revocations import Revocation, RevocationList, list_revocations_txn
from tests.backends import SqliteBackend

LIFETIME = 3600


class _Sessions:
    def __init__(self) -> None:
        self.ended: list[tuple[Any, ...]] = []

    async def end_actor(self, key: ActorKey, code: int, reason: str, event: str) -> int:
        self.ended.append(("actor", key, code, reason, event))
        return 1

    async def end_realm(self, realm_id: int, code: int, reason: str, event: str) -> int:
        self.ended.append(("realm", realm_id, code, reason, event))
        return 3


class _Allocations:
    def __init__(self) -> None:
        self.ended: list[tuple[Any, ...]] = []

    def terminate_actor(self, realm_id: int, serial: int, why: str) -> int:
        self.ended.append(("actor", realm_id, serial, why))
        return 2

    def terminate_realm(self, realm_id: int, why: str) -> int:
        self.ended.append(("realm", realm_id, why))
        return 4


class _Rooms:
    def __init__(self) -> None:
        self.peers = {7: 5}
        self.ended: list[int] = []

    def count_realm(self, realm_id: int) -> int:
        return self.peers.get(realm_id, 0)

    def end_realm(self, realm_id: int) -> int:
        self.ended.append(realm_id)
        return self.peers.pop(realm_id, 0)


class RevokerTests(SqliteBackend):
    def setUp(self) -> None:
        self.conn = self.connection(realms.STORE)
        realms.add_realm_txn(self.conn.cursor(), 7, "seven", None, 0)
        realms.add_realm_txn(self.conn.cursor(), 8, "eight", None, 0)
        self.conn.commit()
        self.clock = Clock()
        self.clock.advance(1000)
        self.database = self.inline_database(realms.STORE)
        self.realms = realms.RealmCache(self.database, self.clock)
        self.realms.load_sync()
        self.list = RevocationList(self.database, self.clock)
        self.sessions, self.allocations, self.rooms = (
            _Sessions(),
            _Allocations(),
            _Rooms(),
        )
        self.revoker = Revoker(
            self.clock,
            self.list,
            self.realms,
            LIFETIME,
            sessions=self.sessions,
            allocations=self.allocations,
            rooms=self.rooms,
        )
        self.realms.on_change(self.list.changed)
        self.realms.on_change(self.revoker.check_realms)
        self.revoker.check_realms()

    def _suspend_elsewhere(self, realm_id: int) -> None:
        realms.set_realm_status_txn(
            self.conn.cursor(), realm_id, realms.STATUS_SUSPENDED, 1
        )
        self.conn.commit()
        self.successResultOf(Deferred.fromCoroutine(self.realms.refresh()))

    def test_revoke_actor_writes_then_ends_here(self) -> None:
        """The row lasts now + lifetime; socket and allocations end; counts returned."""
        actr_id = new_actr_id(7, 0xBEEF, "acme", "svc")
        d = Deferred.fromCoroutine(self.revoker.revoke_actor(actr_id, "bad\nactor"))
        self.assertEqual(self.successResultOf(d), RevokeResult(1, 2, 0))
        (row,) = self.database.run_sync(list_revocations_txn, 0)
        self.assertEqual(
            row,
            Revocation(
                7, 0xBEEF, "beef@7/acme:svc", "bad actor", 1000, 1000 + LIFETIME
            ),
        )
        self.assertTrue(self.list.is_revoked((7, 0xBEEF)))
        self.assertEqual(
            self.sessions.ended,
            [("actor", (7, 0xBEEF), REVOKED_CODE, "revoked: bad actor", "revoked")],
        )
        self.assertEqual(self.allocations.ended, [("actor", 7, 0xBEEF, "revoked")])

    def test_revocation_from_the_feed_is_enforced_once(self) -> None:
        """A row another process wrote ends the actor here, once."""
        from actrix.core.revocations import add_revocation_txn

        add_revocation_txn(
            self.conn.cursor(), Revocation(7, 5, "5@7/a:b", "cli", 1000, 9000)
        )
        self.conn.commit()
        self.successResultOf(Deferred.fromCoroutine(self.realms.refresh()))
        self.assertEqual(self.sessions.ended[-1][:2], ("actor", (7, 5)))
        self.successResultOf(Deferred.fromCoroutine(self.list.reload()))
        self.assertEqual(len(self.sessions.ended), 1)

    def test_cli_suspension_ends_the_realm_once(self) -> None:
        """A realm suspended elsewhere is ended on the next reload, once."""
        self._suspend_elsewhere(7)
        self.assertEqual(
            self.sessions.ended,
            [
                (
                    "realm",
                    7,
                    REVOKED_CODE,
                    "realm suspended",
                    "realm suspended",
                )
            ],
        )
        self.assertEqual(self.allocations.ended, [("realm", 7, "realm suspended")])
        self.assertEqual(self.rooms.ended, [7])
        self.revoker.check_realms()
        self.assertEqual(len(self.sessions.ended), 1)

    def test_resumed_and_suspended_again_ends_again(self) -> None:
        """Resuming re-arms the realm; a second suspension ends it again."""
        self._suspend_elsewhere(7)
        realms.set_realm_status_txn(self.conn.cursor(), 7, realms.STATUS_ACTIVE, 2)
        self.conn.commit()
        self.successResultOf(Deferred.fromCoroutine(self.realms.refresh()))
        self._suspend_elsewhere(7)
        self.assertEqual([e[:2] for e in self.sessions.ended], [("realm", 7)] * 2)

    def test_removed_realm_is_ended(self) -> None:
        """A realm deleted while actors are in it ends like a suspended one."""
        realms.remove_realm_txn(self.conn.cursor(), 8)
        self.conn.commit()
        self.successResultOf(Deferred.fromCoroutine(self.realms.refresh()))
        self.assertEqual(
            [e[:4] for e in self.sessions.ended],
            [("realm", 8, REVOKED_CODE, "realm removed")],
        )

    def test_suspend_realm_reports_room_peers_present_at_the_call(self) -> None:
        """The API's suspension reloads first and counts every peer it found."""
        self.database.run_sync(
            realms.set_realm_status_txn, 7, realms.STATUS_SUSPENDED, 1
        )
        d = Deferred.fromCoroutine(self.revoker.suspend_realm(7, "maintenance"))
        self.assertEqual(self.successResultOf(d), RevokeResult(3, 4, 5))
        self.assertIsNotNone(self.realms.realm_problem(7))
        self.assertEqual(
            self.sessions.ended,
            [
                (
                    "realm",
                    7,
                    REVOKED_CODE,
                    "realm suspended: maintenance",
                    "realm suspended",
                )
            ],
        )

    def test_expired_revocations_are_purged_by_the_timer(self) -> None:
        """The 1 s tick purges once a minute; rows past their expiry go."""
        actr_id = new_actr_id(7, 1, "acme", "svc")
        self.successResultOf(
            Deferred.fromCoroutine(self.revoker.revoke_actor(actr_id, ""))
        )
        self.clock.advance(LIFETIME + 61)
        self.revoker._tick()
        self.assertFalse(self.list.is_revoked((7, 1)))
        self.assertEqual(self.database.run_sync(list_revocations_txn, 0), [])

    def test_without_services_nothing_is_ended(self) -> None:
        """A daemon without signaling, TURN or rooms still records revocations."""
        revoker = Revoker(self.clock, self.list, self.realms, LIFETIME)
        d = Deferred.fromCoroutine(
            revoker.revoke_actor(new_actr_id(7, 2, "a", "b"), "r")
        )
        self.assertEqual(self.successResultOf(d), RevokeResult(0, 0, 0))
        self.assertTrue(self.list.is_revoked((7, 2)))


class CloseReasonTests(SynchronousTestCase):
    def test_close_reason_fits_a_close_frame(self) -> None:
        """Long or multi-byte reasons are cut at a character boundary, 123 bytes."""
        text = close_reason("revoked", "é" * 200)
        self.assertLessEqual(len(text.encode()), MAX_CLOSE_REASON)
        self.assertTrue(text.startswith("revoked: éé"))
        self.assertEqual(close_reason("revoked", ""), "revoked")
