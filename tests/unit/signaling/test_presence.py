"""Tests for actrix.signaling.presence: subscriptions, realm and ACL delivery rules."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.actrid import new_actr_id, type_key
from actrix.proto import actr_pb2
from actrix.signaling.local_directory import LocalDirectory
from actrix.signaling.metrics import SignalingMetrics
from actrix.signaling.presence import PresenceEvents, Subscriptions
from actrix.signaling.routing import RouteEntry
from actrix.signaling.sessions import Sessions
from tests.unit.signaling.fakes import (
    REALM,
    FakeConnection,
    FakeRealms,
    done,
    token_for,
)

OTHER_REALM = REALM + 1


def svc_type(version: str | None = None) -> actr_pb2.ActrType:
    t = actr_pb2.ActrType(manufacturer="acme", name="svc")
    if version is not None:
        t.version = version
    return t


class SubscriptionTests(SynchronousTestCase):
    def test_subscribe_is_idempotent(self) -> None:
        """Subscribing twice to one type leaves one subscription."""
        subs = Subscriptions()
        watcher = new_actr_id(REALM, 1, "acme", "watcher")
        subs.subscribe(svc_type(), watcher)
        subs.subscribe(svc_type(), watcher)
        self.assertEqual(len(subs), 1)
        self.assertEqual(subs.subscribers(svc_type()), [((REALM, 1), watcher)])

    def test_type_must_match_exactly(self) -> None:
        """Version absent, version "" and version "1" are three different keys."""
        subs = Subscriptions()
        subs.subscribe(svc_type(), new_actr_id(REALM, 1, "acme", "a"))
        subs.subscribe(svc_type(""), new_actr_id(REALM, 2, "acme", "b"))
        subs.subscribe(svc_type("1"), new_actr_id(REALM, 3, "acme", "c"))
        for version, serial in ((None, 1), ("", 2), ("1", 3)):
            found = subs.subscribers(svc_type(version))
            self.assertEqual([key[1] for key, _ in found], [serial])
        self.assertEqual(subs.subscribers(svc_type(" 1")), [])
        other = actr_pb2.ActrType(manufacturer="other", name="svc")
        self.assertEqual(subs.subscribers(other), [])

    def test_subscriber_id_is_copied(self) -> None:
        """Changing the caller's message afterwards does not change the stored id."""
        subs = Subscriptions()
        watcher = new_actr_id(REALM, 1, "acme", "watcher")
        subs.subscribe(svc_type(), watcher)
        watcher.type.name = "changed"
        ((_, stored),) = subs.subscribers(svc_type())
        self.assertEqual(stored.type.name, "watcher")

    def test_unsubscribe_reports_whether_there_was_one(self) -> None:
        """Unsubscribe removes one subscription and says False when there was none."""
        subs = Subscriptions()
        subs.subscribe(svc_type(), new_actr_id(REALM, 1, "acme", "watcher"))
        self.assertFalse(subs.unsubscribe(svc_type("1"), (REALM, 1)))
        self.assertFalse(subs.unsubscribe(svc_type(), (REALM, 2)))
        self.assertTrue(subs.unsubscribe(svc_type(), (REALM, 1)))
        self.assertFalse(subs.unsubscribe(svc_type(), (REALM, 1)))
        self.assertEqual(len(subs), 0)

    def test_forget_drops_every_subscription_of_an_actor(self) -> None:
        """An actor that leaves loses all its subscriptions; others keep theirs."""
        subs = Subscriptions()
        leaving = new_actr_id(REALM, 1, "acme", "watcher")
        staying = new_actr_id(REALM, 2, "acme", "watcher")
        for t in (svc_type(), svc_type("1")):
            subs.subscribe(t, leaving)
        subs.subscribe(svc_type(), staying)
        subs.forget((REALM, 1))
        self.assertEqual(len(subs), 1)
        self.assertEqual([k for k, _ in subs.subscribers(svc_type())], [(REALM, 2)])
        self.assertEqual(subs.subscribers(svc_type("1")), [])
        subs.forget((REALM, 1))  # forgetting twice is harmless


class PresenceEventTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.realms = FakeRealms()
        self.sessions = Sessions(self.clock, SignalingMetrics())
        self.directory = LocalDirectory(self.clock, None)
        self.events = PresenceEvents(
            self.clock, self.realms, self.sessions, self.directory
        )
        self.actor = new_actr_id(REALM, 99, "acme", "svc")

    def watcher(
        self, serial: int, realm_id: int = REALM, allowed: bool = True
    ) -> FakeConnection:
        """A bound, subscribed watcher; the ACL row says whether it may see svc."""
        actr_id = new_actr_id(realm_id, serial, "acme", f"w{serial}")
        connection = FakeConnection()
        session = self.sessions.open(connection, "127.0.0.1", None)
        self.sessions.bind(session, actr_id, token_for(actr_id))
        done(self.directory.subscribe(svc_type(), actr_id))
        key = (realm_id, type_key(actr_id.type), "acme:svc")
        self.realms.acl[key] = allowed
        return connection

    def test_up_event_reaches_allowed_subscriber(self) -> None:
        """An allowed subscriber in the realm gets actr_up_event addressed to it."""
        connection = self.watcher(1)
        self.assertEqual(done(self.events.notify(self.actor, up=True, reason="x")), 1)
        (push,) = connection.sent
        self.assertFalse(push.HasField("reply_for"))
        self.assertEqual(push.server_to_actr.target.serial_number, 1)
        self.assertEqual(push.server_to_actr.actr_up_event.actor_id, self.actor)

    def test_down_event_carries_reason(self) -> None:
        """A down event names the actor and why it left."""
        connection = self.watcher(1)
        done(self.events.notify(self.actor, up=False, reason="expired"))
        event = connection.sent[0].server_to_actr.actr_down_event
        self.assertEqual((event.actor_id, event.reason), (self.actor, "expired"))

    def test_other_realm_subscriber_hears_nothing(self) -> None:
        """Presence never crosses realms, even with an allowing ACL row."""
        connection = self.watcher(1, realm_id=OTHER_REALM)
        self.assertEqual(done(self.events.notify(self.actor, up=True, reason="x")), 0)
        self.assertEqual(connection.sent, [])

    def test_acl_deny_and_missing_row_hear_nothing(self) -> None:
        """A deny row, or no row at all (default deny), suppresses the event."""
        denied = self.watcher(1, allowed=False)
        unlisted = self.watcher(2)
        del self.realms.acl[(REALM, "acme:w2", "acme:svc")]
        allowed = self.watcher(3)
        self.assertEqual(done(self.events.notify(self.actor, up=True, reason="x")), 1)
        self.assertEqual((denied.sent, unlisted.sent), ([], []))
        self.assertEqual(len(allowed.sent), 1)

    def test_subscriber_without_session_is_skipped(self) -> None:
        """A subscriber whose socket is gone is skipped silently."""
        connection = self.watcher(1)
        (session,) = list(self.sessions)
        self.sessions.close(session)
        self.assertEqual(done(self.events.notify(self.actor, up=True, reason="x")), 0)
        self.assertEqual(connection.sent, [])

    def test_set_online_announces_only_changes(self) -> None:
        """Flipping online sends an event; setting the same state again does not."""
        connection = self.watcher(1)
        entry = RouteEntry(
            actr_id=self.actor,
            type_key="acme:svc",
            service_name="acme/svc",
            service_spec=None,
            ws_address=None,
            online=True,
        )
        done(self.directory.register(entry))
        key = entry.key
        self.assertIsNone(done(self.events.set_online(key, True, "heartbeat")))
        self.assertEqual(connection.sent, [])
        done(self.events.set_online(key, False, "disconnected"))
        self.assertTrue(entry.online)  # the value object never changes
        cached = self.directory.cached(key)
        assert cached is not None
        self.assertFalse(cached.online)
        self.assertEqual(
            connection.sent[-1].server_to_actr.actr_down_event.reason, "disconnected"
        )
        done(self.events.set_online(key, True, "reconnected"))
        self.assertTrue(connection.sent[-1].server_to_actr.HasField("actr_up_event"))
        self.assertEqual(len(connection.sent), 2)
