"""SignalingService over in-memory fakes: flows, ordering, expiry, shutdown."""

from __future__ import annotations

import sqlite3

from twisted.trial.unittest import SynchronousTestCase

from actrix.proto import actr_pb2
from actrix.signaling import messages
from actrix.signaling.presence import MAX_SUBSCRIPTIONS_PER_ACTOR
from actrix.signaling.registration import MAX_ACL_PRINCIPALS, declared_acl
from actrix.signaling.store import _flush_txn, _load_rows_txn
from tests.unit.signaling.fakes import (
    REALM,
    FakeIssuer,
    Harness,
    envelope_with_id,
)

ALLOW = actr_pb2.AclRule.ALLOW
DENY = actr_pb2.AclRule.DENY


class RegisterFlowTests(SynchronousTestCase):
    def test_register_binds_and_replies(self) -> None:
        """A Register binds the session and answers with reply_for and the ActrId."""
        h = Harness()
        session, connection = h.open()
        actr_id = h.register(session)
        (reply,) = connection.sent
        self.assertEqual(reply.reply_for, h.last_request_id)
        self.assertEqual(reply.server_to_actr.target, actr_id)
        self.assertTrue(reply.server_to_actr.register_response.HasField("success"))
        self.assertIs(h.service.session_for((REALM, actr_id.serial_number)), session)

    def test_ais_error_result_is_500(self) -> None:
        """An AIS error result surfaces as ``Failed to call AIS: AIS error …``."""
        issuer = FakeIssuer()
        issuer.error = actr_pb2.ErrorResponse(code=503, message="no key")
        h = Harness(issuer)
        session, connection = h.open()
        envelope = envelope_with_id()
        envelope.peer_to_server.register_request.realm.realm_id = REALM
        h.service.handle(session, envelope)
        error = connection.sent[0].server_to_actr.register_response.error
        self.assertEqual(error.code, 500)
        self.assertEqual(error.message, "Failed to call AIS: AIS error 503: no key")
        self.assertEqual(connection.sent[0].server_to_actr.target.type.name, "temp")

    def test_ais_exception_is_500(self) -> None:
        """A failing AIS call is answered, not raised."""
        issuer = FakeIssuer()
        issuer.raises = ConnectionError("refused")
        h = Harness(issuer)
        session, connection = h.open()
        envelope = envelope_with_id()
        envelope.peer_to_server.register_request.realm.realm_id = REALM
        h.service.handle(session, envelope)
        error = connection.sent[0].server_to_actr.register_response.error
        self.assertEqual(
            (error.code, error.message), (500, "Failed to call AIS: refused")
        )

    def test_no_issuer_is_500_not_configured(self) -> None:
        """Without AIS, Register answers the §9 not-configured text."""
        h = Harness()
        h.service._issuer = None
        session, connection = h.open()
        envelope = envelope_with_id()
        envelope.peer_to_server.register_request.realm.realm_id = REALM
        h.service.handle(session, envelope)
        error = connection.sent[0].server_to_actr.register_response.error
        self.assertEqual(error.message, messages.AIS_NOT_CONFIGURED)

    def test_acl_rows_are_stored(self) -> None:
        """Each principal with a type becomes an ACL row towards the new type."""
        h = Harness()
        session, _ = h.open()
        h.register(session, "svc", allow_from="caller")
        self.assertEqual(h.realms.acl, {(REALM, "acme:caller", "acme:svc"): True})

    def test_newest_registration_replaces_its_types_acl(self) -> None:
        """A second registration of a type replaces what the first one declared."""
        h = Harness()
        h.register(h.open()[0], "svc", allow_from="caller")
        h.register(h.open()[0], "svc", allow_from="other")
        self.assertEqual(h.realms.acl, {(REALM, "acme:other", "acme:svc"): True})

    def test_deny_beats_allow_in_any_order(self) -> None:
        """A type under both an ALLOW and a DENY rule is denied, in either order."""
        for order in ((ALLOW, DENY), (DENY, ALLOW)):
            request = actr_pb2.RegisterRequest()
            for permission in order:
                rule = request.acl.rules.add()
                rule.permission = permission
                rule.principals.add().actr_type.CopyFrom(
                    actr_pb2.ActrType(manufacturer="acme", name="caller")
                )
            self.assertEqual(declared_acl(request), {"acme:caller": False})

    def test_too_many_principals_is_400_and_creates_nothing(self) -> None:
        """257 principals: 400 before AIS; no identity, no ACL, no binding."""
        h = Harness()
        session, connection = h.open()
        envelope = envelope_with_id()
        request = envelope.peer_to_server.register_request
        request.realm.realm_id = REALM
        request.actr_type.manufacturer = "acme"
        request.actr_type.name = "svc"
        rule = request.acl.rules.add()
        rule.permission = ALLOW
        for i in range(MAX_ACL_PRINCIPALS + 1):
            rule.principals.add().actr_type.CopyFrom(
                actr_pb2.ActrType(manufacturer="acme", name=f"c{i}")
            )
        h.service.handle(session, envelope)
        (reply,) = connection.sent
        self.assertEqual(reply.reply_for, envelope.envelope_id)
        error = reply.server_to_actr.register_response.error
        self.assertEqual(
            (error.code, error.message), (400, "Too many ACL principals: 257 > 256")
        )
        self.assertEqual(h.issuer.serial, 0)
        self.assertEqual(h.realms.acl, {})
        self.assertIsNone(session.actor)
        del rule.principals[-1]  # 256 is fine
        h.service.handle(session, envelope)
        self.assertTrue(
            connection.sent[-1].server_to_actr.register_response.HasField("success")
        )
        self.assertEqual(len(h.realms.acl), MAX_ACL_PRINCIPALS)


class ActorFlowTests(SynchronousTestCase):
    def test_pong_carries_tolerance_warning(self) -> None:
        """A key in its tolerance period adds a CredentialWarning to the Pong."""
        h = Harness()
        session, connection = h.open()
        actr_id = h.register(session)
        h.validator.in_tolerance = True
        envelope, body = h.actor_message(session, actr_id)
        body.ping.power_reserve = 0.5
        h.service.handle(session, envelope)
        pong = connection.sent[-1].server_to_actr.pong
        self.assertEqual(pong.credential_warning.message, messages.TOLERANCE_WARNING)
        self.assertEqual(pong.seq, 1_700_000_000)

    def test_refresh_without_issuer_is_503(self) -> None:
        """CredentialUpdate without AIS answers 503."""
        h = Harness()
        session, connection = h.open()
        actr_id = h.register(session)
        h.service._issuer = None
        envelope, body = h.actor_message(session, actr_id)
        body.credential_update_request.actr_id.CopyFrom(actr_id)
        h.service.handle(session, envelope)
        error = connection.sent[-1].server_to_actr.error
        self.assertEqual(
            (error.code, error.message), (503, "AIS service not configured")
        )

    def test_refresh_error_is_500(self) -> None:
        """An AIS refresh error answers 500 ``Failed to refresh credential``."""
        h = Harness()
        session, connection = h.open()
        actr_id = h.register(session)
        h.issuer.error = actr_pb2.ErrorResponse(code=500, message="down")
        envelope, body = h.actor_message(session, actr_id)
        body.credential_update_request.actr_id.CopyFrom(actr_id)
        h.service.handle(session, envelope)
        error = connection.sent[-1].server_to_actr.error
        self.assertTrue(error.message.startswith("Failed to refresh credential: "))

    def test_messages_are_handled_in_order_while_validation_waits(self) -> None:
        """Envelopes queue behind a handler that waits and run in arrival order."""
        h = Harness()
        session, connection = h.open()
        actr_id = h.register(session)
        h.validator.hold = []
        ids = []
        for _ in range(3):
            envelope, body = h.actor_message(session, actr_id)
            body.ping.power_reserve = 1.0
            ids.append(envelope.envelope_id)
            h.service.handle(session, envelope)
        self.assertEqual(len(h.validator.hold), 1)
        while h.validator.hold:
            h.validator.hold.pop(0).callback(None)
        self.assertEqual([e.reply_for for e in connection.sent[1:]], ids)


class ExpiryTests(SynchronousTestCase):
    def test_silent_actor_expires_with_down_event(self) -> None:
        """An entry silent for 300 s is removed; subscribers hear ActrDown."""
        h = Harness()
        watcher_session, watcher_conn = h.open()
        watcher = h.register(watcher_session, "watcher")
        envelope, body = h.actor_message(watcher_session, watcher)
        body.subscribe_actr_up_request.target_type.CopyFrom(
            actr_pb2.ActrType(manufacturer="acme", name="svc")
        )
        h.service.handle(watcher_session, envelope)
        session, _ = h.open()
        actr_id = h.register(session, "svc", allow_from="watcher")
        self.assertTrue(watcher_conn.sent[-1].server_to_actr.HasField("actr_up_event"))
        h.clock.advance(200)
        keep, body = h.actor_message(watcher_session, watcher)
        body.ping.power_reserve = 1.0
        h.service.handle(watcher_session, keep)
        h.clock.advance(101)
        self.assertEqual(h.sweep_heartbeats(), 1)
        down = watcher_conn.sent[-1].server_to_actr.actr_down_event
        self.assertEqual(down.actor_id, actr_id)
        self.assertEqual(down.reason, "expired")
        self.assertIsNone(h.service.directory.cached((REALM, actr_id.serial_number)))
        self.assertIsNotNone(h.service.directory.cached((REALM, watcher.serial_number)))

    def test_subscriptions_of_expired_actor_go_when_its_socket_closes(self) -> None:
        """An actor that expired while connected loses its subscriptions after close."""
        h = Harness()
        session, _ = h.open()
        watcher = h.register(session, "watcher")
        envelope, body = h.actor_message(session, watcher)
        body.subscribe_actr_up_request.target_type.CopyFrom(
            actr_pb2.ActrType(manufacturer="acme", name="svc")
        )
        h.service.handle(session, envelope)
        h.clock.advance(301)
        self.assertEqual(h.sweep_heartbeats(), 1)
        self.assertEqual(h.service.directory.subscription_count(), 1)  # still connected
        h.service.session_closed(session)
        h.sweep_heartbeats()
        self.assertEqual(h.service.directory.subscription_count(), 0)


class RouteExpiryTests(SynchronousTestCase):
    def candidates_after(self, silence: float, timeout: float) -> int:
        h = Harness(heartbeat_timeout=timeout)
        svc_session, _ = h.open()
        h.register(svc_session, "svc", allow_from="caller")
        session, connection = h.open()
        caller = h.register(session, "caller")
        h.clock.advance(silence)
        envelope, body = h.actor_message(session, caller)
        body.route_candidates_request.target_type.CopyFrom(
            actr_pb2.ActrType(manufacturer="acme", name="svc")
        )
        h.service.handle(session, envelope)
        ok = connection.sent[-1].server_to_actr.route_candidates_response.success
        return len(ok.candidates)

    def test_route_candidates_follow_configured_heartbeat_timeout(self) -> None:
        """Candidates stay routable until the configured timeout, not a fixed 300 s."""
        self.assertEqual(self.candidates_after(400, timeout=600), 1)
        self.assertEqual(self.candidates_after(61, timeout=60), 0)
        self.assertEqual(self.candidates_after(59, timeout=60), 1)


class SubscriptionCapTests(SynchronousTestCase):
    def test_subscribe_beyond_cap_is_429(self) -> None:
        """One actor cannot watch more than the cap of types; the excess gets 429."""
        h = Harness()
        session, connection = h.open()
        watcher = h.register(session, "watcher")
        for i in range(MAX_SUBSCRIPTIONS_PER_ACTOR + 1):
            envelope, body = h.actor_message(session, watcher)
            body.subscribe_actr_up_request.target_type.CopyFrom(
                actr_pb2.ActrType(manufacturer="acme", name=f"svc{i}")
            )
            h.service.handle(session, envelope)
        self.assertEqual(
            h.service.directory.subscription_count(), MAX_SUBSCRIPTIONS_PER_ACTOR
        )
        refused = connection.sent[-1].server_to_actr.subscribe_actr_up_response
        self.assertEqual(refused.error.code, 429)
        accepted = connection.sent[-2].server_to_actr.subscribe_actr_up_response
        self.assertTrue(accepted.HasField("success"))
        envelope, body = h.actor_message(session, watcher)
        body.subscribe_actr_up_request.target_type.CopyFrom(
            actr_pb2.ActrType(manufacturer="acme", name="svc0")
        )
        h.service.handle(session, envelope)  # already watched: still fine
        again = connection.sent[-1].server_to_actr.subscribe_actr_up_response
        self.assertTrue(again.HasField("success"))


class StopTests(SynchronousTestCase):
    def test_stop_closes_sessions_with_1001(self) -> None:
        """stopService closes every session with 1001 and waits for them."""
        h = Harness()
        h.service.startService()
        session, connection = h.open()
        d = h.service.stopService()
        self.assertEqual(connection.closed, (1001, "server shutting down"))
        self.assertNoResult(d)
        h.service.session_closed(session)
        self.successResultOf(d)

    def test_stop_aborts_sessions_that_do_not_close(self) -> None:
        """Sessions still open after the close timeout are aborted."""
        h = Harness()
        h.service.startService()
        _, connection = h.open()
        d = h.service.stopService()
        h.clock.advance(5)
        self.successResultOf(d)
        self.assertTrue(connection.aborted)


class WriteBehindTests(SynchronousTestCase):
    def test_flush_persists_and_unregister_deletes(self) -> None:
        """Registered actors reach SQLite on flush; Unregister deletes the row."""
        from actrix.signaling.store import MIGRATIONS

        conn = sqlite3.connect(":memory:")
        for _, _, sql in MIGRATIONS.steps():
            conn.executescript(sql)
        h = Harness()
        session, _ = h.open()
        actr_id = h.register(session)
        batch = h.local.pending
        _flush_txn(conn.cursor(), batch)
        rows = _load_rows_txn(conn.cursor(), 0)
        self.assertEqual(len(rows), 1)
        parsed = actr_pb2.ActrId.FromString(rows[0].actr_id)
        self.assertEqual(parsed, actr_id)
        h.local.pending = type(batch)()
        envelope, body = h.actor_message(session, actr_id)
        body.unregister_request.actr_id.CopyFrom(actr_id)
        h.service.handle(session, envelope)
        _flush_txn(conn.cursor(), h.local.pending)
        self.assertEqual(_load_rows_txn(conn.cursor(), 0), [])
