"""Relays over real WebSockets: forwarding, the §6.1 checks, role negotiation."""

from __future__ import annotations

from twisted.internet import reactor

from actrix.core.settings import Settings
from actrix.proto import actr_pb2, webrtc_pb2
from tests.daemon import make_settings
from tests.integration.test_signaling import (
    NO_LIMITS,
    OTHER_REALM,
    REALM,
    SIGNALING_AIS_KS,
    OnRedis,
    SignalingDaemonCase,
    allow,
    sleep,
)
from tests.signaling_client import SignalingClient


class RelayTests(SignalingDaemonCase):
    async def pair(self) -> tuple[SignalingClient, SignalingClient]:
        """A server type that allows the caller type, and a caller."""
        server = await self.registered(name="svc", acl=allow(("acme", "caller")))
        caller = await self.registered(name="caller")
        return server, caller

    async def test_candidate_reaches_target_without_token(self) -> None:
        """An allowed ICE candidate arrives unchanged but with an empty credential."""
        server, caller = await self.pair()
        assert server.actr_id is not None
        caller.send_candidate(server.actr_id, "candidate:abc")
        push = await server.next_push()
        relay = push.actr_relay
        self.assertEqual(relay.ice_candidate.candidate, "candidate:abc")
        self.assertEqual(relay.source, caller.actr_id)
        self.assertEqual(relay.credential.encrypted_token, b"")
        self.assertEqual(relay.credential.token_key_id, 0)
        self.assertFalse(push.HasField("reply_for"))

    async def test_sdp_and_ice_restart_are_forwarded_in_order(self) -> None:
        """SDP, candidates and an ICE restart arrive in the order they were sent."""
        server, caller = await self.pair()
        assert server.actr_id is not None
        envelope, relay = caller.relay_envelope(server.actr_id)
        relay.session_description.CopyFrom(
            webrtc_pb2.SessionDescription(
                type=webrtc_pb2.SessionDescription.OFFER, sdp="v=0"
            )
        )
        caller.send(envelope)
        for i in range(5):
            caller.send_candidate(server.actr_id, f"candidate:{i}")
        envelope, relay = caller.relay_envelope(server.actr_id)
        relay.ice_restart_request.reason = "network change"
        caller.send(envelope)
        received = [(await server.next_push()).actr_relay for _ in range(7)]
        self.assertEqual(received[0].session_description.sdp, "v=0")
        self.assertEqual(
            [r.ice_candidate.candidate for r in received[1:6]],
            [f"candidate:{i}" for i in range(5)],
        )
        self.assertEqual(received[6].ice_restart_request.reason, "network change")

    async def test_acl_default_denies(self) -> None:
        """Without an ACL row the relay is refused with 403 and nothing is forwarded."""
        server = await self.registered(name="svc")
        caller = await self.registered(name="caller")
        assert server.actr_id is not None
        envelope, relay = caller.relay_envelope(server.actr_id)
        relay.ice_candidate.candidate = "x"
        reply = (await caller.request(envelope)).server_to_actr
        self.assert_error(reply.error, 403, "ACL policy denies relay to target actor")
        await sleep(0.1)
        self.assertEqual(len(server.pushes), 0)

    async def test_cross_realm_relay_is_403(self) -> None:
        """A relay to an actor of another realm is refused."""
        server = await self.registered(OTHER_REALM, name="svc")
        caller = await self.registered(name="caller")
        assert server.actr_id is not None
        envelope, relay = caller.relay_envelope(server.actr_id)
        relay.ice_candidate.candidate = "x"
        reply = (await caller.request(envelope)).server_to_actr
        self.assert_error(reply.error, 403, "Cross-realm relay is not allowed")

    async def test_invalid_credential_is_401_before_acl(self) -> None:
        """A bad token is reported as 401 even where ACL would also deny."""
        server = await self.registered(name="svc")
        caller = await self.registered(name="caller")
        assert server.actr_id is not None
        bad = actr_pb2.AIdCredential(encrypted_token=b"junk" * 30, token_key_id=1)
        envelope, relay = caller.relay_envelope(server.actr_id, credential=bad)
        relay.ice_candidate.candidate = "x"
        reply = (await caller.request(envelope)).server_to_actr
        self.assert_error(reply.error, 401, "Credential validation failed: ")

    async def test_spoofed_relay_source_is_403(self) -> None:
        """A relay claiming another actor as source with our token is refused."""
        server, caller = await self.pair()
        victim = await self.registered(name="caller")
        assert server.actr_id is not None
        envelope, relay = caller.relay_envelope(server.actr_id, source=victim.actr_id)
        relay.ice_candidate.candidate = "x"
        reply = (await caller.request(envelope)).server_to_actr
        self.assert_error(
            reply.error,
            403,
            "Source identity mismatch: relay.source does not match credential",
        )
        self.assertEqual(len(server.pushes), 0)

    async def test_relay_from_other_socket_is_403(self) -> None:
        """A valid credential of actor B used on A's socket cannot relay as B."""
        server, caller = await self.pair()
        other = await self.registered(name="caller")
        assert server.actr_id is not None
        envelope, relay = caller.relay_envelope(
            server.actr_id, source=other.actr_id, credential=other.credential
        )
        relay.ice_candidate.candidate = "x"
        reply = (await caller.request(envelope)).server_to_actr
        self.assert_error(reply.error, 403, "Source identity mismatch")

    async def test_relay_from_unbound_socket_is_403(self) -> None:
        """A socket that never registered cannot relay even with a valid credential."""
        server, caller = await self.pair()
        stranger = await self.client()
        assert server.actr_id is not None
        envelope, relay = caller.relay_envelope(server.actr_id)
        relay.ice_candidate.candidate = "x"
        reply = (await stranger.request(envelope)).server_to_actr
        self.assert_error(reply.error, 403, "Source identity mismatch")

    async def test_unknown_target_is_dropped_and_sender_keeps_session(self) -> None:
        """A relay to nobody gets no answer and does not disturb the sender."""
        _, caller = await self.pair()
        assert caller.actr_id is not None
        ghost = actr_pb2.ActrId()
        ghost.CopyFrom(caller.actr_id)
        ghost.serial_number += 10_000
        ghost.type.name = "svc"
        caller.send_candidate(ghost)
        pong = await caller.ping()
        self.assertTrue(pong.HasField("pong"))
        self.assertEqual(len(caller.pushes), 0)

    async def test_target_gone_does_not_close_sender(self) -> None:
        """Relays to a peer whose socket just closed never end the sender's session."""
        server, caller = await self.pair()
        assert server.actr_id is not None
        server.drop()
        for _ in range(20):
            caller.send_candidate(server.actr_id)
        pong = await caller.ping()
        self.assertTrue(pong.HasField("pong"))
        self.assertFalse(caller.closed)

    async def test_target_that_stops_reading_is_dropped(self) -> None:
        """A peer that never reads its relays is dropped; the sender stays open."""
        server, caller = await self.pair()
        assert server.actr_id is not None and server.protocol is not None
        server.protocol.transport.pauseProducing()  # type: ignore[union-attr]  # TCP transport
        candidate = "x" * 60_000
        for _ in range(400):  # 24 MB: more than socket buffers and our limit
            caller.send_candidate(server.actr_id, candidate)
        pong = await caller.ping()  # every relay before it has been handled
        self.assertTrue(pong.HasField("pong"))
        server.protocol.transport.resumeProducing()  # type: ignore[union-attr]  # TCP transport
        await server.wait_closed()
        self.assertFalse(caller.closed)

    async def test_relay_after_credential_update_uses_new_token(self) -> None:
        """After CredentialUpdate, relays signed with the new token are delivered."""
        server, caller = await self.pair()
        assert caller.actr_id is not None and caller.credential is not None
        assert server.actr_id is not None
        reply = await caller.call(
            credential_update_request=actr_pb2.CredentialUpdateRequest(
                actr_id=caller.actr_id
            )
        )
        caller.credential.CopyFrom(reply.register_response.success.credential)
        caller.send_candidate(server.actr_id, "after-update")
        push = await server.next_push()
        self.assertEqual(push.actr_relay.ice_candidate.candidate, "after-update")
        self.assertEqual(
            push.actr_relay.source.serial_number, caller.actr_id.serial_number
        )


class RoleNegotiationTests(SignalingDaemonCase):
    async def negotiate(
        self, first: SignalingClient, second: SignalingClient
    ) -> tuple[actr_pb2.RoleAssignment, actr_pb2.RoleAssignment, actr_pb2.ActrId]:
        assert first.actr_id is not None and second.actr_id is not None
        envelope, relay = first.relay_envelope(second.actr_id)
        negotiation = relay.role_negotiation
        getattr(negotiation, "from").CopyFrom(first.actr_id)
        negotiation.to.CopyFrom(second.actr_id)
        negotiation.realm_id = REALM
        first.send(envelope)
        mine = (await first.next_push()).actr_relay
        theirs = (await second.next_push()).actr_relay
        self.assertEqual(mine.source, first.actr_id)
        self.assertEqual(mine.target, second.actr_id)
        self.assertEqual(theirs.source, first.actr_id)
        self.assertEqual(theirs.credential.encrypted_token, b"")
        return mine.role_assignment, theirs.role_assignment, mine.target

    async def mutual(self) -> tuple[SignalingClient, SignalingClient]:
        first = await self.registered(name="peer", acl=allow(("acme", "peer")))
        second = await self.registered(name="peer")
        return first, second

    async def test_lower_id_offers_when_no_preference(self) -> None:
        """Without webrtc_role the lower (realm, serial, type) offers."""
        first, second = await self.mutual()
        mine, theirs, _ = await self.negotiate(first, second)
        assert first.actr_id is not None and second.actr_id is not None
        expected = first.actr_id.serial_number < second.actr_id.serial_number
        self.assertEqual(mine.is_offerer, expected)
        self.assertEqual(theirs.is_offerer, not expected)
        self.assertFalse(mine.remote_fixed)
        self.assertFalse(theirs.remote_fixed)

    async def test_answer_preference_wins(self) -> None:
        """A peer connected with webrtc_role=answer answers; the other side is told."""
        first, second = await self.mutual()
        answerer = await SignalingClient.reconnect(reactor, self.port, second, "answer")
        self.addCleanup(answerer.drop)
        mine, theirs, _ = await self.negotiate(first, answerer)
        self.assertTrue(mine.is_offerer)
        self.assertTrue(mine.remote_fixed)
        self.assertFalse(theirs.is_offerer)
        self.assertFalse(theirs.remote_fixed)

    async def test_negotiation_for_other_pair_is_403(self) -> None:
        """RoleNegotiation naming a pair other than source/target is refused."""
        first, second = await self.mutual()
        third = await self.registered(name="peer")
        assert second.actr_id is not None and third.actr_id is not None
        envelope, relay = first.relay_envelope(second.actr_id)
        getattr(relay.role_negotiation, "from").CopyFrom(third.actr_id)
        relay.role_negotiation.to.CopyFrom(second.actr_id)
        reply = (await first.request(envelope)).server_to_actr
        self.assertEqual(reply.error.code, 403)
        await sleep(0.1)
        self.assertEqual(len(second.pushes) + len(third.pushes), 0)


class RelayOnRedisTests(OnRedis, RelayTests):
    """Relays between actors registered in a RedisDirectory."""


class RoleNegotiationOnRedisTests(OnRedis, RoleNegotiationTests):
    """Role negotiation between actors registered in a RedisDirectory."""


class WssTests(SignalingDaemonCase):
    """The same flows over ``wss://``: the edge's frame codec behind TLS (the
    turn writer leaves TLS sockets to their transport)."""

    def make_settings(self) -> Settings:
        from tests.certs import write_self_signed

        self.cert, key = write_self_signed(self.directory / "tls", "localhost")
        https = (
            'env = "test"\n'
            + NO_LIMITS
            + "[bind.https]\ndomain_name = 'localhost'\nadvertised_ip = '127.0.0.1'\n"
            f"ip = '127.0.0.1'\nport = 0\ncert = '{self.cert}'\nkey = '{key}'\n"
        )
        return make_settings(self.directory, enable=SIGNALING_AIS_KS, overrides=https)

    async def client(self, query: dict[str, str] | None = None) -> SignalingClient:
        from twisted.internet.ssl import Certificate, optionsForClientTLS

        authority = Certificate.loadPEM(self.cert.read_bytes())
        tls = optionsForClientTLS("localhost", trustRoot=authority)
        client = await SignalingClient.connect(
            reactor, self.port, query, host="127.0.0.1", tls=tls
        )
        self.addCleanup(client.drop)
        return client

    async def test_relays_both_ways_and_a_bad_frame_closes_1007(self) -> None:
        """Register two actors over TLS, relay both ways, ping; an undecodable
        frame still closes that session with 1007."""
        server = await self.registered(name="svc", acl=allow(("acme", "caller")))
        caller = await self.registered(name="caller", acl=allow(("acme", "svc")))
        assert server.actr_id is not None and caller.actr_id is not None
        for i in range(20):
            caller.send_candidate(server.actr_id, f"candidate:{i}")
        received = [(await server.next_push()).actr_relay for _ in range(20)]
        self.assertEqual(
            [r.ice_candidate.candidate for r in received],
            [f"candidate:{i}" for i in range(20)],
        )
        server.send_candidate(caller.actr_id, "answer")
        back = (await caller.next_push()).actr_relay
        self.assertEqual(back.ice_candidate.candidate, "answer")
        assert caller.protocol is not None
        caller.protocol.sendMessage(b"\xff\x00 not an envelope", isBinary=True)
        self.assertEqual(await caller.wait_closed(), 1007)
