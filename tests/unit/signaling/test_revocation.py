"""SignalingService's part of a revocation: end_actor and end_realm over fakes."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from actrix.proto import actr_pb2
from actrix.signaling.sessions import Session
from tests.unit.signaling.fakes import REALM, FakeConnection, Harness, done


def _watching(h: Harness) -> tuple[Session, FakeConnection]:
    """A watcher subscribed to ``acme:svc``."""
    session, connection = h.open()
    watcher = h.register(session, "watcher")
    envelope, body = h.actor_message(session, watcher)
    body.subscribe_actr_up_request.target_type.CopyFrom(
        actr_pb2.ActrType(manufacturer="acme", name="svc")
    )
    h.service.handle(session, envelope)
    return session, connection


class EndActorTests(SynchronousTestCase):
    def test_end_actor_closes_unbinds_removes_and_announces(self) -> None:
        """The socket closes with the code, the entry goes, subscribers hear why."""
        h = Harness()
        _, watcher_conn = _watching(h)
        session, connection = h.open()
        actr_id = h.register(session, "svc", allow_from="watcher")
        key = (REALM, actr_id.serial_number)
        closed = done(h.service.end_actor(key, 4003, "revoked: test", "revoked"))
        self.assertEqual(closed, 1)
        self.assertEqual(connection.closed, (4003, "revoked: test"))
        self.assertIsNone(session.key)
        self.assertIsNone(h.service.session_for(key))
        self.assertIsNone(h.service.directory.cached(key))
        down = watcher_conn.sent[-1].server_to_actr.actr_down_event
        self.assertEqual((down.actor_id, down.reason), (actr_id, "revoked"))
        # The socket's close afterwards announces nothing more.
        sent = len(watcher_conn.sent)
        h.service.session_closed(session)
        self.assertEqual(len(watcher_conn.sent), sent)

    def test_end_actor_of_an_offline_actor_removes_its_entry(self) -> None:
        """An actor in its reconnect window loses its entry; no socket to close."""
        h = Harness()
        session, _ = h.open()
        actr_id = h.register(session)
        key = (REALM, actr_id.serial_number)
        h.service.session_closed(session)
        self.assertIsNotNone(h.service.directory.cached(key))
        self.assertEqual(done(h.service.end_actor(key, 4003, "r", "revoked")), 0)
        self.assertIsNone(h.service.directory.cached(key))

    def test_end_actor_unknown_is_nothing(self) -> None:
        """An actor this process never saw: nothing closed, nothing raised."""
        h = Harness()
        self.assertEqual(done(h.service.end_actor((REALM, 99), 4003, "r", "x")), 0)


class EndRealmTests(SynchronousTestCase):
    def test_every_actor_hears_before_every_socket_closes(self) -> None:
        """A subscriber in the realm gets the ActrDown, then its own socket closes."""
        h = Harness()
        watcher_session, watcher_conn = _watching(h)
        session, connection = h.open()
        actr_id = h.register(session, "svc", allow_from="watcher")
        _, unbound_conn = h.open()
        closed = done(h.service.end_realm(REALM, 4003, "realm suspended", "suspended"))
        self.assertEqual(closed, 2)
        self.assertEqual(connection.closed, (4003, "realm suspended"))
        self.assertEqual(watcher_conn.closed, (4003, "realm suspended"))
        self.assertIsNone(unbound_conn.closed)  # no actor, no realm
        down = watcher_conn.sent[-1].server_to_actr.actr_down_event
        self.assertEqual((down.actor_id, down.reason), (actr_id, "suspended"))
        self.assertIsNone(watcher_session.key)
        self.assertEqual(h.service.directory.online_by_realm(), {})

    def test_other_realms_are_untouched(self) -> None:
        """Ending another realm closes nothing here."""
        h = Harness()
        session, connection = h.open()
        h.register(session)
        self.assertEqual(done(h.service.end_realm(REALM + 1, 4003, "r", "x")), 0)
        self.assertIsNone(connection.closed)
        self.assertIsNotNone(session.key)
