"""Strings that are not UTF-8, over a real WebSocket (issue 10, defect 3).

proto2 string fields reach the server unchecked by the protobuf parser. Each
test spoils one string field of an otherwise valid envelope and checks the
answer (400 ``envelope_error``, or close 1007 for a bad ``envelope_id``), that
nothing was created (no registration, no identity, no ACL row), that nothing
was logged above warning, and that a bystander's session keeps working.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher

from actrix.core.realms import realms_path
from actrix.proto import actr_pb2, signaling_pb2, webrtc_pb2
from tests.integration.test_signaling import (
    REALM,
    SignalingDaemonCase,
    allow,
    http_get,
    sleep,
)
from tests.signaling_client import SignalingClient, new_envelope

MARKER = "QQQQ"


def spoil(envelope: signaling_pb2.SignalingEnvelope) -> bytes:
    """The envelope's bytes with ``MARKER`` replaced by bytes that are not UTF-8."""
    data = envelope.SerializePartialToString()
    marker = MARKER.encode()
    assert data.count(marker) == 1
    return data.replace(marker, b"\xff\xfe\xc3\x28")


class InvalidUtf8Tests(SignalingDaemonCase):
    def setUp(self) -> None:
        super().setUp()
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    async def bystander(self) -> tuple[SignalingClient, float]:
        bystander = await self.registered(name="bystander")
        return bystander, await self.identities_issued()

    async def identities_issued(self) -> float:
        response = await http_get(f"http://127.0.0.1:{self.port}/metrics")
        text = (await response.content()).decode()
        for line in text.splitlines():
            if line.startswith("actrix_ais_registrations_total "):
                return float(line.split()[1])
        self.fail("no actrix_ais_registrations_total in /metrics")

    def acl_rows(self) -> int:
        conn = sqlite3.connect(realms_path(self.directory))
        try:
            return int(conn.execute("SELECT COUNT(*) FROM actoracl").fetchone()[0])
        finally:
            conn.close()

    async def assert_answered_400(
        self, client: SignalingClient, envelope: signaling_pb2.SignalingEnvelope
    ) -> None:
        reply = await client.request_bytes(envelope.envelope_id, spoil(envelope))
        self.assertEqual(reply.WhichOneof("flow"), "envelope_error")
        self.assertEqual(reply.envelope_error.code, 400)
        self.assertTrue(
            reply.envelope_error.message.startswith("Invalid protobuf: "),
            reply.envelope_error.message,
        )
        self.assertIn("not valid UTF-8", reply.envelope_error.message)

    async def assert_healthy(
        self, bystander: SignalingClient, issued_before: float
    ) -> None:
        """Bystander still served, no identity issued, nothing logged above warn."""
        pong = await bystander.ping()
        self.assertTrue(pong.HasField("pong"), str(pong))
        self.assertEqual(await self.identities_issued(), issued_before)
        self.assertEqual(self.flushLoggedErrors(), [])
        loud = [
            event
            for event in self.events
            if event["log_level"] >= LogLevel.error or "log_failure" in event
        ]
        self.assertEqual(loud, [])

    async def register_with(self, field: str) -> None:
        """A Register whose ``field`` of the ActrType is spoiled, with an ACL."""
        bystander, issued = await self.bystander()
        client = await self.client()
        envelope = new_envelope()
        request = envelope.peer_to_server.register_request
        request.realm.realm_id = REALM
        request.actr_type.manufacturer = "acme"
        request.actr_type.name = "spoiled"
        request.actr_type.version = "1.0"
        setattr(request.actr_type, field, MARKER)
        request.acl.CopyFrom(allow(("acme", "bystander")))
        await self.assert_answered_400(client, envelope)
        self.assertEqual(self.acl_rows(), 0)
        await self.assert_healthy(bystander, issued)
        # Nothing was bound to the socket: it can still register, once.
        response = await client.register(REALM, name="later")
        self.assertTrue(response.HasField("success"), str(response))

    async def test_register_version(self) -> None:
        """Register with a bad version: 400, no identity, no ACL row."""
        await self.register_with("version")

    async def test_register_manufacturer(self) -> None:
        """Register with a bad manufacturer: 400, no identity, no ACL row."""
        await self.register_with("manufacturer")

    async def test_register_name(self) -> None:
        """Register with a bad name: 400, no identity, no ACL row."""
        await self.register_with("name")

    async def test_register_acl_principal(self) -> None:
        """Register whose ACL principal is bad: 400, no identity, no ACL row."""
        bystander, issued = await self.bystander()
        client = await self.client()
        envelope = new_envelope()
        request = envelope.peer_to_server.register_request
        request.realm.realm_id = REALM
        request.actr_type.manufacturer = "acme"
        request.actr_type.name = "spoiled"
        request.acl.CopyFrom(allow(("acme", "bystander"), ("acme", MARKER)))
        await self.assert_answered_400(client, envelope)
        self.assertEqual(self.acl_rows(), 0)
        await self.assert_healthy(bystander, issued)

    async def test_get_service_spec_name(self) -> None:
        """GetServiceSpec with a bad name: 400 and the socket stays usable."""
        bystander, _ = await self.bystander()
        client = await self.registered(name="asker")
        issued = await self.identities_issued()
        envelope, body = client.actor_envelope()
        body.get_service_spec_request.name = MARKER
        await self.assert_answered_400(client, envelope)
        self.assertTrue((await client.ping()).HasField("pong"))
        await self.assert_healthy(bystander, issued)

    async def test_ping_sticky_client_id(self) -> None:
        """A Ping with a bad sticky client id (a repeated string): 400."""
        bystander, issued = await self.bystander()
        envelope, body = bystander.actor_envelope()
        body.ping.power_reserve = 1.0
        body.ping.sticky_client_ids.extend(["fine", MARKER])
        await self.assert_answered_400(bystander, envelope)
        await self.assert_healthy(bystander, issued)

    async def test_relay_candidate_is_not_forwarded(self) -> None:
        """A relay whose ICE candidate is bad: 400 to the sender, nothing forwarded."""
        bystander, _ = await self.bystander()
        sender = await self.registered(name="sender", acl=allow(("acme", "bystander")))
        issued = await self.identities_issued()
        envelope, relay = sender.relay_envelope(_actr_id(bystander))
        relay.ice_candidate.CopyFrom(webrtc_pb2.IceCandidate(candidate=MARKER))
        await self.assert_answered_400(sender, envelope)
        await sleep(0.2)
        self.assertEqual(list(bystander.pushes), [])
        await self.assert_healthy(bystander, issued)

    async def test_bad_envelope_id_closes_1007(self) -> None:
        """An envelope_id that is not UTF-8 cannot be answered: close 1007."""
        bystander, issued = await self.bystander()
        client = await self.client()
        envelope = new_envelope()
        envelope.envelope_id = MARKER
        request = envelope.peer_to_server.register_request
        request.realm.realm_id = REALM
        request.actr_type.manufacturer = "acme"
        request.actr_type.name = "spoiled"
        closed = client.wait_closed()
        client.send_raw(spoil(envelope))
        self.assertEqual(await closed, 1007)
        await self.assert_healthy(bystander, issued)


def _actr_id(client: SignalingClient) -> Any:
    assert client.actr_id is not None
    copy = actr_pb2.ActrId()
    copy.CopyFrom(client.actr_id)
    return copy
