"""The reconnect window: disconnected actors are offline, then leave (defect 12)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from actrix.proto import actr_pb2, webrtc_pb2
from actrix.signaling.registry import Departures
from actrix.signaling.sessions import Session
from actrix.signaling.store import RegistryRow, row_key
from tests.spies import log_events
from tests.unit.signaling.fakes import (
    REALM,
    Harness,
    envelope_with_id,
    token_for,
)

WINDOW = 30.0
SPEC_NAME = "svc-spec"


class DeparturesTests(SynchronousTestCase):
    def test_windows_end_in_marking_order(self) -> None:
        """Actors come due in the order they left, once their window has passed."""
        departures = Departures(10.0)
        departures.mark((1, 1), 100.0)
        departures.mark((1, 2), 105.0)
        self.assertEqual(departures.next_due(), 110.0)
        self.assertEqual(departures.due(109.9), [])
        self.assertEqual(departures.due(110.0), [(1, 1)])
        self.assertEqual(departures.next_due(), 115.0)

    def test_due_takes_at_most_the_bound(self) -> None:
        """``most`` caps one call; the rest stay due for the next one, in order."""
        departures = Departures(10.0)
        for serial in range(5):
            departures.mark((1, serial), 100.0 + serial)
        self.assertEqual(departures.due(200.0, 2), [(1, 0), (1, 1)])
        self.assertEqual(departures.next_due(), 112.0)
        self.assertEqual(departures.due(200.0, 2), [(1, 2), (1, 3)])
        self.assertEqual(departures.due(200.0), [(1, 4)])

    def test_marking_again_restarts_the_window(self) -> None:
        """A second mark moves the actor behind later ones with a fresh window."""
        departures = Departures(10.0)
        departures.mark((1, 1), 100.0)
        departures.mark((1, 2), 101.0)
        departures.mark((1, 1), 104.0)
        self.assertEqual(departures.due(111.0), [(1, 2)])
        self.assertEqual(departures.due(114.0), [(1, 1)])
        self.assertEqual(len(departures), 0)


class ReconnectWindowTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(reconnect_window=WINDOW)
        self.h.service.startService()
        self.addCleanup(self.h.service.stopService)
        self.svc_session, self.svc_conn = self.h.open()
        self.svc = self.register_with_spec(self.svc_session)
        self.caller_session, self.caller_conn = self.h.open()
        self.caller = self.h.register(self.caller_session, "caller")

    def register_with_spec(self, session: Session) -> actr_pb2.ActrId:
        envelope = envelope_with_id()
        request = envelope.peer_to_server.register_request
        request.realm.realm_id = REALM
        request.actr_type.manufacturer = "acme"
        request.actr_type.name = "svc"
        request.service_spec.name = SPEC_NAME
        request.service_spec.fingerprint = "fp"
        rule = request.acl.rules.add()
        rule.permission = actr_pb2.AclRule.ALLOW
        rule.principals.add().actr_type.CopyFrom(
            actr_pb2.ActrType(manufacturer="acme", name="caller")
        )
        self.h.service.handle(session, envelope)
        assert session.actor is not None
        return session.actor

    def ask(self, **payload: object) -> actr_pb2.ActrId:
        envelope, body = self.h.actor_message(self.caller_session, self.caller)
        for name, value in payload.items():
            getattr(body, name).CopyFrom(value)
        self.h.service.handle(self.caller_session, envelope)
        return self.caller

    def answers(self) -> tuple[int, int, int, bool]:
        """Route candidates, ws map entries, discovery entries, spec found."""
        svc_type = actr_pb2.ActrType(manufacturer="acme", name="svc")
        self.ask(
            route_candidates_request=actr_pb2.RouteCandidatesRequest(
                target_type=svc_type, client_fingerprint=""
            )
        )
        routes = self.caller_conn.sent[-1].server_to_actr.route_candidates_response
        self.ask(discovery_request=actr_pb2.DiscoveryRequest())
        found = self.caller_conn.sent[-1].server_to_actr.discovery_response
        self.ask(
            get_service_spec_request=actr_pb2.GetServiceSpecRequest(name=SPEC_NAME)
        )
        spec = self.caller_conn.sent[-1].server_to_actr.get_service_spec_response
        return (
            len(routes.success.candidates),
            len(routes.success.ws_address_map),
            len([e for e in found.success.entries if e.actr_type.name == "svc"]),
            spec.HasField("success"),
        )

    def key(self) -> tuple[int, int]:
        return (REALM, self.svc.serial_number)

    def test_online_actor_is_in_every_answer(self) -> None:
        """Before the disconnect the actor is routable, listed and its spec found."""
        self.assertEqual(self.answers(), (1, 1, 1, True))

    def test_offline_actor_is_in_no_answer(self) -> None:
        """Inside the window a disconnected actor is in no route, list or spec."""
        self.h.service.session_closed(self.svc_session)
        self.assertIsNotNone(self.h.service.directory.cached(self.key()))
        self.assertEqual(self.answers(), (0, 0, 0, False))
        spec = self.caller_conn.sent[-1].server_to_actr.get_service_spec_response
        self.assertEqual(spec.error.code, 404)

    def test_relay_to_offline_actor_goes_nowhere(self) -> None:
        """A relay to an offline actor is dropped like one to an unknown actor."""
        self.h.service.session_closed(self.svc_session)
        sent_before = len(self.svc_conn.sent)
        envelope = envelope_with_id()
        relay = envelope.actr_relay
        relay.source.CopyFrom(self.caller)
        relay.credential.CopyFrom(token_for(self.caller))
        relay.target.CopyFrom(self.svc)
        relay.ice_candidate.CopyFrom(webrtc_pb2.IceCandidate(candidate="c"))
        self.h.service.handle(self.caller_session, envelope)
        self.assertEqual(len(self.svc_conn.sent), sent_before)
        self.assertEqual(self.h.service.metrics.relays["no_target"], 1)

    def test_actor_leaves_memory_and_sqlite_when_window_ends(self) -> None:
        """At the end of the window the entry is removed and its row deleted."""
        self.h.service.session_closed(self.svc_session)
        self.h.clock.advance(WINDOW - 1)
        self.assertIsNotNone(self.h.service.directory.cached(self.key()))
        self.assertNotIn(row_key(*self.key()), self.h.local.pending.deletes)
        self.h.clock.advance(1)
        self.assertIsNone(self.h.service.directory.cached(self.key()))
        self.assertIn(row_key(*self.key()), self.h.local.pending.deletes)
        self.assertIsNotNone(self.h.service.directory.cached((REALM, 2)))

    def test_mass_departure_is_spread_over_reactor_turns(self) -> None:
        """More due actors than one batch leave over several turns, not in one."""
        from actrix.signaling.service import DEPART_BATCH

        service = self.h.service
        sessions = []
        for _ in range(DEPART_BATCH + 5):
            session, _conn = self.h.open()
            self.h.register(session, "crowd")
            sessions.append(session)
        keys = [s.key for s in sessions]
        cached = service.directory.cached
        removed_per_turn: list[int] = []
        depart = service._depart

        def one_turn() -> None:
            before = sum(1 for k in keys if k is not None and cached(k) is None)
            depart()
            after = sum(1 for k in keys if k is not None and cached(k) is None)
            removed_per_turn.append(after - before)

        service._depart = one_turn  # type: ignore[method-assign]  # counts turns
        for session in sessions:
            service.session_closed(session)
        self.h.clock.advance(WINDOW)
        self.assertEqual(removed_per_turn, [DEPART_BATCH, 5])

    def test_departure_lines_are_one_a_minute(self) -> None:
        """Departures make at most one info line a minute, counting them all
        (any client that connects and leaves causes one)."""
        from actrix.signaling.service import DEPART_LOG_INTERVAL

        events = log_events(
            self,
            lambda e: e.get("log_format") == "{count} disconnected actors removed",
        )

        def counts() -> list[int]:
            return [int(e["count"]) for e in events]

        service = self.h.service
        leavers = []
        for name in ("a", "b", "c"):
            session, _conn = self.h.open()
            self.h.register(session, name)
            leavers.append(session)
        service.session_closed(leavers[0])
        self.h.clock.advance(WINDOW + 1)
        self.assertEqual(counts(), [1])  # the first at once
        service.session_closed(leavers[1])
        service.session_closed(leavers[2])
        self.h.clock.advance(WINDOW + 1)
        self.assertEqual(counts(), [1])  # within the minute: counted, not logged
        self.h.clock.advance(DEPART_LOG_INTERVAL)
        self.assertEqual(counts(), [1, 2])
        self.h.clock.advance(DEPART_LOG_INTERVAL)
        self.assertEqual(counts(), [1, 2])  # nothing new: no line
        self.assertIsNone(service._departure_log_call)

    def test_refused_url_identities_log_once_a_minute_per_ip(self) -> None:
        """Anyone may offer a URL identity: refusals make one line per client
        IP a minute, the next one saying how many were not logged."""
        lines = log_events(self, lambda e: "URL identity" in str(e.get("log_format")))
        other = actr_pb2.ActrId()
        other.CopyFrom(self.svc)
        other.serial_number += 1
        for _ in range(5):
            session, _conn = self.h.open()
            d = self.h.service.bind_url_identity(session, self.svc, token_for(other))
            self.assertFalse(self.successResultOf(d))
        self.assertEqual(len(lines), 1)
        self.assertEqual(lines[0]["reason"], "token names another actor")
        self.h.clock.advance(61)
        session, _conn = self.h.open()
        self.successResultOf(
            self.h.service.bind_url_identity(session, self.svc, token_for(other))
        )
        self.assertEqual([e["suppressed"] for e in lines], [0, 4])

    def test_reconnect_inside_window_keeps_actor(self) -> None:
        """A URL-identity reconnect inside the window keeps the actor for good."""
        self.h.service.session_closed(self.svc_session)
        self.h.clock.advance(WINDOW / 2)
        session, _ = self.h.open()
        d = self.h.service.bind_url_identity(session, self.svc, token_for(self.svc))
        self.assertTrue(self.successResultOf(d))
        self.h.clock.advance(WINDOW)
        entry = self.h.service.directory.cached(self.key())
        assert entry is not None
        self.assertTrue(entry.online)
        self.assertEqual(self.answers(), (1, 1, 1, True))

    def test_second_disconnect_gets_a_fresh_window(self) -> None:
        """Reconnecting and leaving again restarts the window from the new exit."""
        self.h.service.session_closed(self.svc_session)
        self.h.clock.advance(20)
        session, _ = self.h.open()
        self.successResultOf(
            self.h.service.bind_url_identity(session, self.svc, token_for(self.svc))
        )
        self.h.service.session_closed(session)
        self.h.clock.advance(20)
        self.assertIsNotNone(self.h.service.directory.cached(self.key()))
        self.h.clock.advance(10)
        self.assertIsNone(self.h.service.directory.cached(self.key()))

    def test_stop_cancels_the_window_timer(self) -> None:
        """Stopping the service leaves no pending timer behind."""
        self.h.service.session_closed(self.svc_session)
        self.assertEqual(len(self.h.clock.getDelayedCalls()), 1)
        self.h.service.session_closed(self.caller_session)
        self.successResultOf(self.h.service.stopService())
        self.assertEqual(self.h.clock.getDelayedCalls(), [])


class RestoredRowTests(SynchronousTestCase):
    def test_rows_loaded_at_startup_leave_after_the_window(self) -> None:
        """Entries restored from SQLite at startup get the same window."""
        h = Harness(reconnect_window=WINDOW)
        actr_id = actr_pb2.ActrId(
            realm=actr_pb2.Realm(realm_id=REALM),
            serial_number=77,
            type=actr_pb2.ActrType(manufacturer="acme", name="svc"),
        )
        now = h.clock.seconds()
        h.local.load(
            [
                RegistryRow(
                    actor_key=row_key(REALM, 77),
                    realm_id=REALM,
                    actr_id=actr_id.SerializeToString(),
                    service_name="acme/svc",
                    service_spec=None,
                    ws_address=None,
                    last_heartbeat=now,
                    expires_at=int(now) + 3600,
                )
            ]
        )
        h.service.startService()
        self.addCleanup(h.service.stopService)
        self.assertIsNotNone(h.service.directory.cached((REALM, 77)))
        h.clock.advance(WINDOW)
        self.assertIsNone(h.service.directory.cached((REALM, 77)))
        self.assertIn(row_key(REALM, 77), h.local.pending.deletes)
