"""Revocation ends everything, in a real daemon on loopback (issue 14 item 2).

One daemon runs KS, AIS, signaling, STUN/TURN and rooms (enable 63) with
realm 101. An actor registers over the signaling WebSocket, a watcher
subscribes to its type, the actor allocates a TURN relay with its own token
(base122 username, hex-PSK password, as the actr runtime builds them) and a
room peer joins with a room token of the realm. Then the real ``actrix`` CLI
(a separate process) revokes the actor or suspends the realm, and each path
is watched: the socket's close code, the ActrDown push, the allocation table,
a new TURN Allocate with the same username, a reconnect with the same token.
The admin API's entry points (``root.revoker``) are driven the same way.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from actrix.core import base122
from actrix.core.actrid import actr_id_repr
from actrix.core.config import load_config
from actrix.core.realms import STATUS_SUSPENDED, set_realm_status_txn
from actrix.core.revocation import REVOKED_CODE, Revoker
from actrix.proto import actr_pb2
from actrix.turn.service import TurnService
from tests.daemon import add_realm, config_text, http_port, start_daemon
from tests.integration.test_signaling import NO_LIMITS, allow
from tests.integration.test_turn_daemon import TurnUdpClient
from tests.rooms_client import JsonPeer
from tests.rooms_daemon import ROOMS, room_token
from tests.signaling_client import SignalingClient

REALM = 101
OTHER_REALM = 202
ALL_SERVICES = 63
DEADLINE = 1.0  # seconds from the CLI's exit (or the API call) to enforcement
UdpReactor: Any = reactor


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


def _error_code(message: Any) -> int | None:
    from actrix.stun import codec

    value = message.attrs.get(codec.ERROR_CODE)
    return None if value is None else codec.decode_error_code(value)[0]


class _Timed:
    """When each awaited event happened (reactor seconds)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    def mark(self, name: str) -> Any:
        def record(result: Any) -> Any:
            self.at[name] = reactor.seconds()
            return result

        return record


class RevocationDaemonCase(TestCase):
    """The daemon, its config file (for the CLI), and the clients of one actor."""

    timeout = 60

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        add_realm(self.directory, REALM)
        add_realm(self.directory, OTHER_REALM)
        self.config = self.directory / "config.toml"
        self.config.write_text(
            config_text(self.directory, ALL_SERVICES, NO_LIMITS + ROOMS)
        )
        self.root = start_daemon(self, load_config(self.config))
        self.port = http_port(self.root)
        self.ice = ("127.0.0.1", int(self.root.listener("ice-udp").bound_port))

    @property
    def turn(self) -> TurnService:
        service: TurnService = self.root.sessions.getServiceNamed("turn")
        return service

    @property
    def revoker(self) -> Revoker:
        revoker = self.root.revoker
        assert revoker is not None
        return revoker

    async def client(self, query: dict[str, str] | None = None) -> SignalingClient:
        client = await SignalingClient.connect(reactor, self.port, query)
        self.addCleanup(client.drop)
        return client

    async def registered(self, name: str, **kwargs: Any) -> SignalingClient:
        client = await self.client()
        response = await client.register(REALM, name=name, **kwargs)
        self.assertTrue(response.HasField("success"), str(response))
        return client

    async def actor_and_watcher(self) -> tuple[SignalingClient, SignalingClient]:
        """A watcher subscribed to ``acme:svc``, then an svc actor it sees come up."""
        watcher = await self.registered("watcher")
        reply = await watcher.call(
            subscribe_actr_up_request=actr_pb2.SubscribeActrUpRequest(
                target_type=actr_pb2.ActrType(manufacturer="acme", name="svc")
            )
        )
        self.assertTrue(reply.subscribe_actr_up_response.HasField("success"))
        actor = await self.registered("svc", acl=allow(("acme", "watcher")))
        up = (await watcher.next_push()).server_to_actr.actr_up_event
        self.assertEqual(up.actor_id, actor.actr_id)
        return actor, watcher

    def turn_client(self, actor: SignalingClient) -> TurnUdpClient:
        """A TURN client with the actor's own credential (turn-auth.md §2)."""
        assert actor.credential is not None
        raw = (
            REALM.to_bytes(4, "big")
            + actor.credential.token_key_id.to_bytes(4, "big")
            + actor.credential.encrypted_token
        )
        client = TurnUdpClient(self.ice, base122.encode(raw), actor.psk.hex())
        port = UdpReactor.listenUDP(0, client, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return client

    async def allocated(self, actor: SignalingClient) -> TurnUdpClient:
        client = self.turn_client(actor)
        self.assertIsNone(_error_code(await client.allocate()))
        self.assertEqual(len(self.turn.allocations), 1)
        return client

    async def room_peer(self) -> JsonPeer:
        token = room_token(self.directory, REALM, "*")
        await sleep(0.8)  # the daemon's realm cache picks up the new room secret
        peer = await JsonPeer(reactor).open(self.port)
        self.addCleanup(peer.abort)
        ack = await peer.request(type="JOIN", room_id="lobby", payload={"token": token})
        self.assertEqual(ack["type"], "ACK", ack)
        return peer

    async def cli(self, *args: str) -> float:
        """Run ``actrix ARGS -c config`` as its own process; when it exited."""
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            [
                "-c",
                "from actrix.cli import main; main()",
                *args,
                "-c",
                str(self.config),
            ],
            env={"PATH": "/usr/bin:/bin"},
            reactor=reactor,
        )
        self.assertEqual(code, 0, (out + err).decode("utf-8", "replace"))
        return float(reactor.seconds())

    async def allocations_gone(self, timed: _Timed, seconds: float = 3.0) -> None:
        for _ in range(int(seconds / 0.01)):
            if not self.turn.allocations:
                timed.mark("allocation")(None)
                return
            await sleep(0.01)
        self.fail(f"{len(self.turn.allocations)} allocations left")

    async def assert_turn_refused(self, actor: SignalingClient) -> None:
        """A new Allocate with the same username is refused (401)."""
        reply = await self.turn_client(actor).allocate()
        self.assertEqual(_error_code(reply), 401)
        self.assertEqual(len(self.turn.allocations), 0)

    def assert_in_time(self, timed: _Timed, start: float, *names: str) -> None:
        seen = {n: round(t - start, 3) for n, t in timed.at.items()}
        for name in names:
            self.assertIn(name, timed.at, f"{name} never happened")
            self.assertLessEqual(
                timed.at[name] - start, DEADLINE, f"{name} took too long: {seen}"
            )


class ActorRevocationTests(RevocationDaemonCase):
    async def test_cli_revocation_ends_every_path_within_a_second(self) -> None:
        """``actrix actor revoke``: socket 4003, ActrDown, relay gone, token refused."""
        actor, watcher = await self.actor_and_watcher()
        assert actor.actr_id is not None
        await self.allocated(actor)
        timed = _Timed()
        start = await self.cli(
            "actor", "revoke", actr_id_repr(actor.actr_id), "--reason", "stolen key"
        )
        closed = actor.wait_closed(3.0).addCallback(timed.mark("closed"))
        down = Deferred.fromCoroutine(watcher.next_push(3.0)).addCallback(
            timed.mark("down")
        )
        await self.allocations_gone(timed)
        self.assertEqual(await closed, REVOKED_CODE)
        self.assertEqual(actor.close_reason, "revoked: stolen key")
        event = (await down).server_to_actr.actr_down_event
        self.assertEqual(event.actor_id, actor.actr_id)
        self.assertEqual(event.reason, "revoked")
        self.assert_in_time(timed, start, "closed", "down", "allocation")
        await self.assert_turn_refused(actor)
        await self.assert_signaling_refused(actor)
        # The watcher, another actor, is untouched.
        self.assertEqual(watcher.close_code, None)
        self.assertTrue((await watcher.ping()).HasField("pong"))

    async def assert_signaling_refused(self, actor: SignalingClient) -> None:
        """Reconnecting with the revoked token binds nothing; its messages get 401."""
        again = await SignalingClient.reconnect(reactor, self.port, actor)
        self.addCleanup(again.drop)
        reply = await again.ping()
        self.assertEqual(reply.error.code, 401, str(reply))
        self.assertEqual(
            reply.error.message, "Credential validation failed: identity revoked"
        )
        refresh = await again.call(
            credential_update_request=actr_pb2.CredentialUpdateRequest(
                actr_id=actor.actr_id
            )
        )
        self.assertEqual(refresh.error.code, 401, str(refresh))

    async def test_api_revocation_reports_what_it_ended(self) -> None:
        """``root.revoker.revoke_actor`` ends one socket and one allocation."""
        actor, watcher = await self.actor_and_watcher()
        await self.allocated(actor)
        assert actor.actr_id is not None
        start = reactor.seconds()
        result = await self.revoker.revoke_actor(actor.actr_id, "by the admin API")
        self.assertEqual(
            (
                result.sockets_closed,
                result.allocations_terminated,
                result.room_peers_removed,
            ),
            (1, 1, 0),
        )
        self.assertEqual(await actor.wait_closed(), REVOKED_CODE)
        event = (await watcher.next_push()).server_to_actr.actr_down_event
        self.assertEqual(event.reason, "revoked")
        self.assertLess(reactor.seconds() - start, DEADLINE)
        await self.assert_turn_refused(actor)
        await self.assert_signaling_refused(actor)

    async def test_revocation_survives_a_restart(self) -> None:
        """A daemon started on the same store refuses the revoked token."""
        actor, _ = await self.actor_and_watcher()
        assert actor.actr_id is not None
        await self.cli("actor", "revoke", actr_id_repr(actor.actr_id))
        await self.root.stopService()
        self.root = start_daemon(self, load_config(self.config))
        self.port = http_port(self.root)
        self.ice = ("127.0.0.1", int(self.root.listener("ice-udp").bound_port))
        await self.assert_turn_refused(actor)
        await self.assert_signaling_refused(actor)


class RealmSuspensionTests(RevocationDaemonCase):
    async def test_cli_suspension_ends_every_path_within_a_second(self) -> None:
        """``actrix realm suspend``: sockets, ActrDown, relays and room peers end."""
        actor, watcher = await self.actor_and_watcher()
        outsider = await self.client()
        self.assertTrue((await outsider.register(OTHER_REALM)).HasField("success"))
        await self.allocated(actor)
        peer = await self.room_peer()
        timed = _Timed()
        start = await self.cli("realm", "suspend", str(REALM))
        closed = actor.wait_closed(3.0).addCallback(timed.mark("closed"))
        watcher_closed = watcher.wait_closed(3.0).addCallback(timed.mark("watcher"))
        down = Deferred.fromCoroutine(watcher.next_push(3.0)).addCallback(
            timed.mark("down")
        )
        room_closed = Deferred.fromCoroutine(peer.wait_closed()).addCallback(
            timed.mark("room")
        )
        await self.allocations_gone(timed)
        self.assertEqual(await closed, REVOKED_CODE)
        self.assertTrue(actor.close_reason.startswith("realm suspended"))
        self.assertEqual(await watcher_closed, REVOKED_CODE)
        event = (await down).server_to_actr.actr_down_event
        self.assertEqual(event.actor_id, actor.actr_id)
        self.assertEqual(event.reason, "realm suspended")
        self.assertEqual(await room_closed, 4003)
        self.assert_in_time(timed, start, "closed", "watcher", "down", "allocation")
        self.assert_in_time(timed, start, "room")
        await self.assert_turn_refused(actor)
        again = await self.client()
        refused = await again.register(REALM)
        self.assertEqual(refused.error.code, 403)
        # Another realm's actor is untouched.
        self.assertIsNone(outsider.close_code)
        self.assertTrue((await outsider.ping()).HasField("pong"))

    async def test_api_suspension_reports_what_it_ended(self) -> None:
        """``root.revoker.suspend_realm`` after the row is Suspended ends all three."""
        actor, watcher = await self.actor_and_watcher()
        await self.allocated(actor)
        peer = await self.room_peer()
        database = self.root.databases[0]
        self.assertTrue(database.label.endswith("actrix.db"))
        # What the admin API does: the row first (through the daemon's own
        # connection, which its data_version poll does not report), then this.
        await database.run(
            set_realm_status_txn, REALM, STATUS_SUSPENDED, int(reactor.seconds())
        )
        start = reactor.seconds()
        result = await self.revoker.suspend_realm(REALM, "maintenance")
        self.assertEqual(
            (
                result.sockets_closed,
                result.allocations_terminated,
                result.room_peers_removed,
            ),
            (2, 1, 1),
        )
        self.assertEqual(await actor.wait_closed(), REVOKED_CODE)
        self.assertEqual(actor.close_reason, "realm suspended: maintenance")
        self.assertEqual(await watcher.wait_closed(), REVOKED_CODE)
        self.assertEqual(await peer.wait_closed(), 4003)
        self.assertLess(reactor.seconds() - start, DEADLINE)
        await self.assert_turn_refused(actor)
