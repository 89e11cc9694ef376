"""Connection-level behaviour: URL identity, limits, bad input, restart, AIS failure."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import Clock

from actrix.core.actrid import actr_id_repr
from actrix.core.interfaces import Claims
from actrix.core.tokens import encrypt_token
from actrix.proto import actr_pb2
from actrix.signaling.resource import SignalingRoot
from actrix.signaling.service import SignalingService
from actrix.tap import build_root_service
from tests.daemon import SHARED_KEY, http_port, make_settings, start_daemon
from tests.integration.test_signaling import (
    NO_LIMITS,
    REALM,
    SIGNALING_AIS_KS,
    OnRedis,
    SignalingDaemonCase,
    allow,
    sleep,
)
from tests.signaling_client import SignalingClient, new_envelope, url_identity
from tests.wsclient import ClientClosed


class UrlIdentityTests(SignalingDaemonCase):
    async def test_reconnect_takes_over_identity(self) -> None:
        """A reconnect with a valid token binds the actor; the old socket is closed."""
        server = await self.registered(name="svc", acl=allow(("acme", "caller")))
        caller = await self.registered(name="caller")
        fresh = await SignalingClient.reconnect(reactor, self.port, server)
        self.addCleanup(fresh.drop)
        self.assertEqual(await server.wait_closed(), 4000)
        assert server.actr_id is not None
        caller.send_candidate(server.actr_id, "to-new-socket")
        push = await fresh.next_push()
        self.assertEqual(push.actr_relay.ice_candidate.candidate, "to-new-socket")
        again = await fresh.register(REALM)
        self.assertEqual(again.error.code, 409)

    async def test_token_of_other_actor_is_ignored(self) -> None:
        """A URL identity whose token names another actor binds nothing (§11)."""
        victim = await self.registered(name="svc", acl=allow(("acme", "caller")))
        attacker = await self.registered(name="caller")
        assert victim.actr_id is not None and attacker.credential is not None
        hijack = await self.client(url_identity(victim.actr_id, attacker.credential))
        attacker.send_candidate(victim.actr_id, "for-victim")
        push = await victim.next_push()
        self.assertEqual(push.actr_relay.ice_candidate.candidate, "for-victim")
        self.assertFalse(victim.closed)
        self.assertEqual(len(hijack.pushes), 0)
        response = await hijack.register(REALM)
        self.assertTrue(response.HasField("success"))

    async def test_malformed_identity_is_ignored(self) -> None:
        """Unparsable actor_id or token leave a plain, working connection."""
        client = await self.client({"actor_id": "not-an-id", "token": "%%%"})
        response = await client.register(REALM)
        self.assertTrue(response.HasField("success"))

    async def test_reconnect_brings_actor_back_online(self) -> None:
        """After a disconnect the actor is offline; a reconnect restores candidates."""
        server = await self.registered(name="svc", acl=allow(("acme", "caller")))
        caller = await self.registered(name="caller")
        request = actr_pb2.RouteCandidatesRequest(
            target_type=actr_pb2.ActrType(manufacturer="acme", name="svc"),
            client_fingerprint="",
        )
        await server.close()
        await sleep(0.1)
        reply = await caller.call(route_candidates_request=request)
        self.assertEqual(len(reply.route_candidates_response.success.candidates), 0)
        fresh = await SignalingClient.reconnect(reactor, self.port, server)
        self.addCleanup(fresh.drop)
        reply = await caller.call(route_candidates_request=request)
        self.assertEqual(
            list(reply.route_candidates_response.success.candidates), [server.actr_id]
        )


class ConnectionLimitTests(SignalingDaemonCase):
    overrides = """
[services.signaling.server.rate_limit.connection]
per_minute = 6000
burst_size = 1000
max_concurrent_per_ip = 2
[services.signaling.server.rate_limit.message]
enabled = false
"""

    async def test_concurrency_limit_is_http_429(self) -> None:
        """The third concurrent connection from one IP is refused with 429."""
        first = await self.client()
        await self.client()
        with self.assertRaises(ClientClosed) as caught:
            await self.client()
        self.assertIn("429", caught.exception.reason)
        await first.close()
        await sleep(0.05)
        third = await self.client()
        self.assertFalse(third.closed)


class ConnectionRateTests(SignalingDaemonCase):
    overrides = """
[services.signaling.server.rate_limit.connection]
per_minute = 60
burst_size = 3
[services.signaling.server.rate_limit.message]
enabled = false
"""

    async def test_connection_rate_is_http_429(self) -> None:
        """Beyond the burst, new connections are refused with 429 before the upgrade."""
        for _ in range(3):
            await self.client()
        with self.assertRaises(ClientClosed) as caught:
            await self.client()
        self.assertIn("429", caught.exception.reason)


class SocketOptionTests(SignalingDaemonCase):
    async def test_server_socket_has_nodelay(self) -> None:
        """Signaling sockets have Nagle disabled, so small frames leave at once."""
        client = await self.registered()
        assert client.actr_id is not None
        service = self.root.sessions.getServiceNamed("signaling")
        assert isinstance(service, SignalingService)
        session = service.session_for(
            (client.actr_id.realm.realm_id, client.actr_id.serial_number)
        )
        assert session is not None
        transport: Any = getattr(session.connection, "transport", None)
        sock = transport.getHandle()
        self.assertTrue(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


class MessageRateTests(SignalingDaemonCase):
    overrides = """
[services.signaling.server.rate_limit.connection]
enabled = false
[services.signaling.server.rate_limit.message]
per_second = 1
burst_size = 3
"""

    def freeze_limiter_clock(self) -> Clock:
        """Give the endpoint's limiters a clock that moves only when told to.

        On a loaded machine the wall clock may refill the bucket during the
        flood; with a frozen clock the outcome is exact.
        """
        site = self.root.listener("http").factory
        signaling = site.resource.getStaticEntity(b"signaling")
        assert isinstance(signaling, SignalingRoot)
        clock = Clock()
        clock.advance(reactor.seconds())
        signaling.factory.clock = clock
        return clock

    async def test_flood_gets_envelope_error_and_stays_open(self) -> None:
        """Messages over the bucket get envelope_error 429; the session stays open."""
        clock = self.freeze_limiter_clock()
        client = await self.registered()  # the Register takes 1 of 3 tokens
        for _ in range(6):
            envelope, body = client.actor_envelope()
            body.ping.power_reserve = 1.0
            client.send(envelope)
        answers = [await client.next_push() for _ in range(6)]
        refusals = [a for a in answers if a.HasField("envelope_error")]
        pongs = [a for a in answers if a.server_to_actr.HasField("pong")]
        self.assertEqual((len(refusals), len(pongs)), (4, 2))
        push = refusals[0]
        self.assertEqual(push.envelope_error.code, 429)
        self.assertEqual(
            push.envelope_error.message, "Too many messages. Limit: 1 messages/second"
        )
        self.assertFalse(push.HasField("reply_for"))
        self.assertFalse(client.closed)
        clock.advance(1.0)  # refills exactly one token
        pong = await client.ping()
        self.assertTrue(pong.HasField("pong"))
        envelope, body = client.actor_envelope()
        body.ping.power_reserve = 1.0
        client.send(envelope)
        refused = await client.next_push()
        self.assertEqual(refused.envelope_error.code, 429)


class BadInputTests(SignalingDaemonCase):
    overrides = (
        NO_LIMITS
        + """
[services.signaling.server]
ws_path = "/signaling"
max_message_size = 1024
"""
    )

    async def assert_others_unaffected(self, bystander: SignalingClient) -> None:
        pong = await bystander.ping()
        self.assertTrue(pong.HasField("pong"))
        self.assertFalse(bystander.closed)

    async def test_garbage_closes_only_that_session(self) -> None:
        """Undecodable binary closes the sender with 1007; others keep working."""
        bystander = await self.registered(name="svc")
        sender = await self.registered()
        sender.send_raw(b"\xff\xff\xff\xff garbage")
        self.assertEqual(await sender.wait_closed(), 1007)
        await self.assert_others_unaffected(bystander)

    async def test_truncated_protobuf_closes_session(self) -> None:
        """A valid envelope cut short is undecodable and closes that session."""
        bystander = await self.registered(name="svc")
        sender = await self.client()
        envelope = new_envelope()
        envelope.peer_to_server.register_request.realm.realm_id = REALM
        data = envelope.SerializePartialToString()
        sender.send_raw(data[: len(data) - 3])
        self.assertEqual(await sender.wait_closed(), 1007)
        await self.assert_others_unaffected(bystander)

    async def test_huge_frame_closes_session(self) -> None:
        """A frame over max_message_size is refused with close 1009."""
        bystander = await self.registered(name="svc")
        sender = await self.client()
        sender.send_raw(b"\x00" * 4096)
        self.assertEqual(await sender.wait_closed(), 1009)
        await self.assert_others_unaffected(bystander)

    async def test_fragmented_envelope_is_reassembled(self) -> None:
        """An envelope sent in several continuation frames is handled as one."""
        client = await self.registered()
        envelope, body = client.actor_envelope()
        body.ping.power_reserve = 0.5
        reply = await client.request(envelope, fragment_size=16)
        self.assertTrue(reply.server_to_actr.HasField("pong"))
        self.assertFalse(client.closed)

    async def test_unmasked_client_frame_closes_with_1002(self) -> None:
        """A client frame without a mask is a protocol error (RFC 6455 §5.1)."""
        bystander = await self.registered(name="svc")
        sender = await self.registered()
        envelope, body = sender.actor_envelope()
        body.ping.power_reserve = 0.5
        data = envelope.SerializePartialToString()
        assert sender.protocol is not None and 126 <= len(data) < 1 << 16
        transport: Any = sender.protocol.transport
        transport.write(bytes((0x82, 126)) + len(data).to_bytes(2, "big") + data)
        self.assertEqual(await sender.wait_closed(), 1002)
        await self.assert_others_unaffected(bystander)

    async def test_wrong_flow_and_text_are_ignored(self) -> None:
        """server_to_actr, envelope_error, empty flow and text frames get no reply."""
        client = await self.registered()
        for build in ("server_to_actr", "envelope_error", None):
            envelope = new_envelope()
            if build == "server_to_actr":
                envelope.server_to_actr.target.serial_number = 1
            elif build == "envelope_error":
                envelope.envelope_error.code = 1
            client.send(envelope)
        client.send_raw(b"hello", binary=False)
        empty = new_envelope()
        empty.peer_to_server.SetInParent()
        client.send(empty)
        await self.assert_others_unaffected(client)
        self.assertEqual(len(client.pushes), 0)


class ExpiredCredentialTests(SignalingDaemonCase):
    async def test_expired_token_is_401(self) -> None:
        """A correctly encrypted token past its expr_time is refused with 401."""
        from actrix.ks.client import KeyServerClient

        client = await self.registered()
        assert client.actr_id is not None
        ks = KeyServerClient(
            f"http://127.0.0.1:{self.port}", 5.0, SHARED_KEY.encode(), reactor
        )
        self.addCleanup(ks.stopService)
        key = await ks.generate_key()
        token = encrypt_token(
            key.public_key,
            Claims(
                realm_id=REALM,
                actor_id=actr_id_repr(client.actr_id),
                expr_time=int(reactor.seconds()) - 10,
                psk=b"\x01" * 32,
            ),
        )
        expired = actr_pb2.AIdCredential(encrypted_token=token, token_key_id=key.key_id)
        envelope, body = client.actor_envelope(credential=expired)
        body.ping.power_reserve = 1.0
        reply = (await client.request(envelope)).server_to_actr
        self.assert_error(
            reply.error, 401, "Credential validation failed: Token has expired"
        )


class RestartTests(SignalingDaemonCase):
    def start(self) -> None:
        """The first daemon is stopped by the test itself, then restarted."""
        self.root = build_root_service(self.settings, reactor)
        self.root.privilegedStartService()
        self.root.startService()
        self.port = http_port(self.root)

    async def test_registry_survives_restart(self) -> None:
        """After a restart a URL-identity reconnect makes the actor routable again."""
        server = await self.registered(
            name="svc", acl=allow(("acme", "caller")), ws_address="ws://10.1.1.1:1"
        )
        await server.ping()
        caller = await self.registered(name="caller")
        await sleep(1.5)  # one write-behind flush
        await self.root.stopService()
        await server.wait_closed()
        await caller.wait_closed()
        self.settings = make_settings(
            self.directory, enable=SIGNALING_AIS_KS, overrides=NO_LIMITS
        )
        self.root = start_daemon(self, self.settings)
        self.port = http_port(self.root)
        back = await SignalingClient.reconnect(reactor, self.port, server)
        self.addCleanup(back.drop)
        caller2 = await SignalingClient.reconnect(reactor, self.port, caller)
        self.addCleanup(caller2.drop)
        request = actr_pb2.RouteCandidatesRequest(
            target_type=actr_pb2.ActrType(manufacturer="acme", name="svc"),
            client_fingerprint="",
        )
        reply = await caller2.call(route_candidates_request=request)
        ok = reply.route_candidates_response.success
        self.assertEqual(list(ok.candidates), [server.actr_id])
        self.assertEqual(ok.ws_address_map[0].ws_address, "ws://10.1.1.1:1")
        assert server.actr_id is not None
        caller2.send_candidate(server.actr_id, "after-restart")
        push = await back.next_push()
        self.assertEqual(push.actr_relay.ice_candidate.candidate, "after-restart")


class AisUnreachableTests(SignalingDaemonCase):
    def make_settings(self) -> object:  # type: ignore[override]  # same Settings
        return make_settings(
            self.directory,
            enable=17,
            overrides=NO_LIMITS
            + """
[services.signaling.dependencies.ais]
endpoint = "http://127.0.0.1:1"
timeout_seconds = 2
""",
        )

    async def test_register_without_ais_is_500(self) -> None:
        """With the remote AIS down, Register answers 500 ``Failed to call AIS``."""
        client = await self.client()
        response = await client.register(REALM)
        self.assert_error(response.error, 500, "Failed to call AIS: ")


class UrlIdentityOnRedisTests(OnRedis, UrlIdentityTests):
    """URL-identity reconnects against a RedisDirectory."""
