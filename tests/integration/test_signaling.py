"""Signaling over a real WebSocket on loopback: register, heartbeat, unregister, checks.

Every test starts a Signaling+AIS+KS daemon (enable 25) with realms 101 and 202
and talks to it only through :mod:`tests.signaling_client`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from actrix.core.config import Settings
from actrix.proto import actr_pb2
from tests.daemon import add_realm, http_port, make_settings, start_daemon
from tests.redisserver import RedisServer
from tests.signaling_client import SignalingClient

REALM = 101
OTHER_REALM = 202
SIGNALING_AIS_KS = 25
NO_LIMITS = """
[services.signaling.server.rate_limit.connection]
enabled = false
[services.signaling.server.rate_limit.message]
enabled = false
"""


def allow(
    *types: tuple[str, str], permission: int = actr_pb2.AclRule.ALLOW
) -> actr_pb2.Acl:
    """An ACL with one rule whose principals are these (manufacturer, name) types."""
    rule = actr_pb2.AclRule(permission=permission)  # type: ignore[arg-type]  # enum int
    for manufacturer, name in types:
        rule.principals.add().actr_type.CopyFrom(
            actr_pb2.ActrType(manufacturer=manufacturer, name=name)
        )
    return actr_pb2.Acl(rules=[rule])


async def http_get(url: str) -> Any:
    """One GET on a fresh, non-persistent connection (leaves the reactor clean)."""
    import treq
    from twisted.web.client import HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=False)
    return await treq.get(url, pool=pool)


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


class SignalingDaemonCase(TestCase):
    """Starts a Signaling+AIS+KS daemon with two realms for each test."""

    timeout = 30
    overrides = NO_LIMITS

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        add_realm(self.directory, REALM)
        add_realm(self.directory, OTHER_REALM)
        self.settings = self.make_settings()
        self.start()

    def start(self) -> None:
        self.root = start_daemon(self, self.settings)
        self.port = http_port(self.root)

    def make_settings(self) -> Settings:
        return make_settings(
            self.directory, enable=SIGNALING_AIS_KS, overrides=self.overrides
        )

    async def client(self, query: dict[str, str] | None = None) -> SignalingClient:
        client = await SignalingClient.connect(reactor, self.port, query)
        self.addCleanup(client.drop)
        return client

    async def registered(
        self, realm_id: int = REALM, name: str = "echo", **kwargs: Any
    ) -> SignalingClient:
        client = await self.client()
        response = await client.register(realm_id, name=name, **kwargs)
        self.assertTrue(response.HasField("success"), str(response))
        return client

    def assert_error(
        self, reply: actr_pb2.ErrorResponse | Any, code: int, prefix: str
    ) -> None:
        self.assertEqual(reply.code, code, reply.message)
        self.assertTrue(
            reply.message.startswith(prefix), f"{reply.message!r} !~ {prefix!r}"
        )


class OnRedis(SignalingDaemonCase):
    """The same daemon with its actor directory on the suite's redis-server.

    Mixed in before a test class, it runs that class's flows against a
    RedisDirectory (under a key prefix of its own) instead of the local one.
    """

    def make_settings(self) -> Settings:
        settings = super().make_settings()
        return attrs.evolve(settings, redis=RedisServer.get().config())


class RegisterTests(SignalingDaemonCase):
    async def test_register_returns_identity(self) -> None:
        """Register yields an ActrId, a credential, a PSK and the heartbeat interval."""
        client = await self.client()
        response = await client.register(REALM, name="echo", version="1.0")
        ok = response.success
        self.assertEqual(ok.actr_id.realm.realm_id, REALM)
        self.assertEqual(ok.actr_id.type.name, "echo")
        self.assertEqual(ok.actr_id.type.version, "1.0")
        self.assertTrue(ok.credential.encrypted_token)
        self.assertEqual(len(ok.psk), 32)
        self.assertTrue(ok.HasField("credential_expires_at"))
        self.assertEqual(ok.signaling_heartbeat_interval_secs, 30)

    async def test_register_unknown_realm_is_403(self) -> None:
        """Register into a realm that does not exist fails with 403."""
        client = await self.client()
        response = await client.register(999)
        self.assert_error(
            response.error, 403, "Realm validation failed: Realm 999 not found"
        )

    async def test_register_without_realm_is_403(self) -> None:
        """A RegisterRequest missing its required realm decodes as realm 0 and fails."""
        client = await self.client()
        envelope = client.actor_envelope(actr_pb2.ActrId(), actr_pb2.AIdCredential())[0]
        envelope.ClearField("actr_to_server")
        envelope.peer_to_server.register_request.actr_type.manufacturer = "acme"
        reply = await client.request(envelope)
        self.assertEqual(reply.server_to_actr.target.type.manufacturer, "temp")
        self.assert_error(
            reply.server_to_actr.register_response.error, 403, "Realm validation failed"
        )

    async def test_second_register_on_socket_is_409(self) -> None:
        """A second Register on the same socket is refused with 409."""
        client = await self.registered()
        response = await client.register(REALM)
        self.assert_error(response.error, 409, "Already registered")

    async def test_concurrent_registrations_get_distinct_serials(self) -> None:
        """Eight registrations at once get eight different serial numbers."""
        clients = [await self.client() for _ in range(8)]
        responses = await gatherResults(
            [Deferred.fromCoroutine(c.register(REALM)) for c in clients]
        )
        serials = {r.success.actr_id.serial_number for r in responses}
        self.assertEqual(len(serials), 8)


class ActorMessageCheckTests(SignalingDaemonCase):
    async def test_ping_returns_pong(self) -> None:
        """A registered actor's Ping gets a Pong with seq and the suggested interval."""
        client = await self.registered()
        reply = await client.ping(power_reserve=0.5)
        self.assertTrue(reply.HasField("pong"), str(reply))
        self.assertGreater(reply.pong.seq, 0)
        self.assertEqual(reply.pong.suggest_interval_secs, 30)
        self.assertFalse(reply.pong.HasField("credential_warning"))
        self.assertEqual(reply.target.serial_number, client.actr_id.serial_number)  # type: ignore[union-attr]

    async def test_garbage_credential_is_401(self) -> None:
        """A Ping whose token does not decrypt is refused with 401."""
        client = await self.registered()
        assert client.credential is not None
        bad = actr_pb2.AIdCredential(
            encrypted_token=b"\x00" * 120,
            token_key_id=client.credential.token_key_id,
        )
        envelope, body = client.actor_envelope(credential=bad)
        body.ping.power_reserve = 1.0
        reply = (await client.request(envelope)).server_to_actr
        self.assert_error(reply.error, 401, "Credential validation failed: ")

    async def test_unknown_key_id_is_401(self) -> None:
        """A token naming a KS key that does not exist is refused with 401."""
        client = await self.registered()
        assert client.credential is not None
        bad = actr_pb2.AIdCredential(
            encrypted_token=client.credential.encrypted_token, token_key_id=987654
        )
        envelope, body = client.actor_envelope(credential=bad)
        body.ping.power_reserve = 1.0
        reply = (await client.request(envelope)).server_to_actr
        self.assert_error(reply.error, 401, "Credential validation failed: ")

    async def test_spoofed_source_is_403(self) -> None:
        """Own credential with another actor's id as source is refused (§11)."""
        victim = await self.registered(name="victim")
        attacker = await self.registered(name="attacker")
        envelope, body = attacker.actor_envelope(source=victim.actr_id)
        body.ping.power_reserve = 1.0
        reply = (await attacker.request(envelope)).server_to_actr
        self.assert_error(reply.error, 403, "Source identity mismatch")

    async def test_other_actors_credential_on_bound_socket_is_403(self) -> None:
        """A socket bound to A cannot speak as B even with B's valid credential."""
        first = await self.registered(name="first")
        second = await self.registered(name="second")
        envelope, body = first.actor_envelope(
            source=second.actr_id, credential=second.credential
        )
        body.ping.power_reserve = 1.0
        reply = (await first.request(envelope)).server_to_actr
        self.assert_error(reply.error, 403, "Source identity mismatch")

    async def test_source_in_unknown_realm_is_403(self) -> None:
        """A message whose source realm does not exist is refused with 403."""
        client = await self.registered()
        assert client.actr_id is not None
        source = actr_pb2.ActrId()
        source.CopyFrom(client.actr_id)
        source.realm.realm_id = 4242
        envelope, body = client.actor_envelope(source=source)
        body.ping.power_reserve = 1.0
        reply = (await client.request(envelope)).server_to_actr
        self.assert_error(reply.error, 403, "Realm validation failed: Realm 4242")

    async def test_credential_of_other_realm_is_401(self) -> None:
        """A credential issued in realm 202 does not authenticate a realm-101 source."""
        client = await self.registered()
        foreign = await self.registered(OTHER_REALM)
        envelope, body = client.actor_envelope(credential=foreign.credential)
        body.ping.power_reserve = 1.0
        reply = (await client.request(envelope)).server_to_actr
        self.assert_error(
            reply.error, 401, "Credential validation failed: Token decryption failed"
        )

    async def test_payload_absent_gets_no_reply(self) -> None:
        """An actr_to_server without payload is ignored; the session keeps working."""
        client = await self.registered()
        envelope, _ = client.actor_envelope()
        client.send(envelope)
        reply = await client.ping()
        self.assertTrue(reply.HasField("pong"))
        self.assertEqual(len(client.pushes), 0)

    async def test_client_error_report_gets_no_reply(self) -> None:
        """A client error report is only logged."""
        client = await self.registered()
        envelope, body = client.actor_envelope()
        body.error.code = 500
        body.error.message = "boom"
        client.send(envelope)
        reply = await client.ping()
        self.assertTrue(reply.HasField("pong"))
        self.assertEqual(len(client.pushes), 0)


class UnregisterTests(SignalingDaemonCase):
    async def route_ids(self, caller: SignalingClient, name: str) -> list[int]:
        request = actr_pb2.RouteCandidatesRequest(
            target_type=actr_pb2.ActrType(manufacturer="acme", name=name),
            client_fingerprint="",
        )
        reply = await caller.call(route_candidates_request=request)
        return [
            c.serial_number for c in reply.route_candidates_response.success.candidates
        ]

    async def test_unregister_replies_and_removes_candidate(self) -> None:
        """Unregister answers success and the actor leaves route candidates at once."""
        server = await self.registered(name="svc", acl=allow(("acme", "caller")))
        caller = await self.registered(name="caller")
        assert server.actr_id is not None
        self.assertEqual(
            await self.route_ids(caller, "svc"), [server.actr_id.serial_number]
        )
        request = actr_pb2.UnregisterRequest(actr_id=server.actr_id, reason="bye")
        reply = await server.call(unregister_request=request)
        self.assertTrue(reply.unregister_response.HasField("success"))
        self.assertEqual(await self.route_ids(caller, "svc"), [])

    async def test_disconnect_removes_candidate_within_two_seconds(self) -> None:
        """Closing the socket takes the actor out of route candidates within 2 s."""
        server = await self.registered(name="svc", acl=allow(("acme", "caller")))
        caller = await self.registered(name="caller")
        await server.close()
        started = reactor.seconds()
        while await self.route_ids(caller, "svc"):
            self.assertLess(reactor.seconds() - started, 2.0)
            await sleep(0.05)

    async def test_register_again_after_unregister_needs_new_socket(self) -> None:
        """After Unregister the socket is unbound: a new Register on it succeeds."""
        client = await self.registered()
        assert client.actr_id is not None
        first = client.actr_id.serial_number
        reply = await client.call(
            unregister_request=actr_pb2.UnregisterRequest(actr_id=client.actr_id)
        )
        self.assertTrue(reply.unregister_response.HasField("success"))
        response = await client.register(REALM)
        self.assertTrue(response.HasField("success"))
        self.assertNotEqual(response.success.actr_id.serial_number, first)


class CredentialUpdateTests(SignalingDaemonCase):
    async def test_update_keeps_serial_and_returns_new_psk(self) -> None:
        """CredentialUpdate returns a new token and PSK for the same ActrId."""
        client = await self.registered()
        assert client.actr_id is not None and client.credential is not None
        old_token, old_psk = client.credential.encrypted_token, client.psk
        request = actr_pb2.CredentialUpdateRequest(actr_id=client.actr_id)
        reply = await client.call(credential_update_request=request)
        ok = reply.register_response.success
        self.assertEqual(ok.actr_id, client.actr_id)
        self.assertNotEqual(ok.credential.encrypted_token, old_token)
        self.assertEqual(len(ok.psk), 32)
        self.assertNotEqual(ok.psk, old_psk)
        client.credential.CopyFrom(ok.credential)
        pong = await client.ping()
        self.assertTrue(pong.HasField("pong"), str(pong))

    async def test_update_for_other_actor_gets_no_reply(self) -> None:
        """A CredentialUpdate naming another ActrId is dropped without an answer."""
        client = await self.registered()
        other = await self.registered(name="other")
        request = actr_pb2.CredentialUpdateRequest(actr_id=other.actr_id)
        envelope, body = client.actor_envelope()
        body.credential_update_request.CopyFrom(request)
        client.send(envelope)
        pong = await client.ping()
        self.assertTrue(pong.HasField("pong"))
        self.assertEqual(len(client.pushes), 0)


class HealthTests(SignalingDaemonCase):
    async def test_health_is_plain_text(self) -> None:
        """GET /signaling/health answers 200 text/plain ``Signaling is healthy``."""
        response = await http_get(f"http://127.0.0.1:{self.port}/signaling/health")
        body = await response.content()
        self.assertEqual(response.code, 200)
        self.assertEqual(body, b"Signaling is healthy")
        self.assertIn(b"text/plain", response.headers.getRawHeaders(b"content-type")[0])

    async def test_metrics_count_signaling(self) -> None:
        """/metrics exposes connection, actor, message and rejection counters."""
        client = await self.registered()
        await client.ping()
        response = await http_get(f"http://127.0.0.1:{self.port}/metrics")
        text = (await response.content()).decode()
        self.assertIn("actrix_signaling_connections 1.0", text)
        self.assertIn('actrix_signaling_actors{realm="101"} 1.0', text)
        self.assertIn('actrix_signaling_messages_in_total{flow="ping"} 1.0', text)
        self.assertIn('actrix_signaling_messages_out_total{flow="pong"} 1.0', text)


class RegisterOnRedisTests(OnRedis, RegisterTests):
    """Register with the directory on Redis."""


class UnregisterOnRedisTests(OnRedis, UnregisterTests):
    """Unregister with the directory on Redis."""
