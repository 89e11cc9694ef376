"""Rooms over real WebSockets on loopback: both protocols, interop, bad input."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase
from twisted.web.http_headers import Headers

from actrix.core import roomtokens
from actrix.core.realms import (
    current_room_secret_txn,
    realms_path,
    set_realm_status_txn,
)
from actrix.core.storage import connect_sync
from actrix.rooms import binary_codec as bc
from actrix.root import ActrixService
from actrix.tap import build_root_service
from tests.daemon import add_realm, http_client, http_port, make_settings, start_daemon
from tests.rooms_client import BinaryPeer, JsonPeer

ROOMS = """
[services.rooms]
allow_anonymous = true
default_max_peers = 3
max_frame_json = 4096
"""


def _secret(directory: Path, realm_id: int) -> tuple[int, bytes]:
    conn = connect_sync(realms_path(directory))
    try:
        found = current_room_secret_txn(conn.cursor(), realm_id, 0)
    finally:
        conn.close()
    return found.kid, found.secret


def _token(directory: Path, realm_id: int, room: str, **claims: Any) -> str:
    kid, secret = _secret(directory, realm_id)
    fields: dict[str, Any] = {
        "realm_id": realm_id,
        "room": room,
        "role": "any",
        "exp": int(reactor.seconds()) + 600,
        "nonce": roomtokens.new_nonce(),
        "kid": kid,
    }
    fields.update(claims)
    return roomtokens.mint(roomtokens.RoomClaims(**fields), secret)


class RoomsDaemonCase(TestCase):
    timeout = 20
    extra = ROOMS

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        add_realm(self.directory, 7, "seven")
        self.root: ActrixService = start_daemon(
            self, make_settings(self.directory, enable=63, extra=self.extra)
        )
        self.port = http_port(self.root)
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    async def json_peer(self) -> JsonPeer:
        peer = await JsonPeer(reactor).open(self.port)
        self.addCleanup(peer.abort)
        return peer

    async def binary_peer(
        self,
        client_id: str,
        token: str = "test_token_1",  # noqa: S107 (SM test token)
        **extra: Any,
    ) -> BinaryPeer:
        peer = BinaryPeer(reactor)
        self.addCleanup(peer.abort)
        ack = await peer.connect_as(self.port, client_id, token, **extra)
        self.assertIn("ConnectAck", ack, ack)
        return peer


class JsonProtocolTests(RoomsDaemonCase):
    async def test_join_ack_lists_peers_and_ice_servers(self) -> None:
        """JOIN's ACK carries the peer list (joiner included) and TURN credentials."""
        alice = await self.json_peer()
        ack = await alice.request(
            type="JOIN", room_id="lobby", payload={"display_name": "Alice"}
        )
        self.assertEqual(ack["type"], "ACK")
        self.assertEqual(ack["room_id"], "lobby")
        peers = ack["payload"]["peers"]
        self.assertEqual([p["peer_id"] for p in peers], [alice.peer_id])
        self.assertEqual(peers[0]["display_name"], "Alice")
        ice = ack["payload"]["ice_servers"]
        self.assertTrue(ice[0]["urls"][0].startswith("stun:localhost:"))
        self.assertTrue(ice[1]["username"].endswith(":" + alice.peer_id))
        self.assertIn("credential", ice[1])

    async def test_offer_relayed_with_sender_id(self) -> None:
        """An OFFER reaches its target with the server-set peer_id, not the client's."""
        alice, bob = await self.json_peer(), await self.json_peer()
        await alice.request(type="JOIN", room_id="r1")
        await bob.request(type="JOIN", room_id="r1")
        joined = await alice.of_type("PEER_JOINED")
        self.assertEqual(joined["peer_id"], bob.peer_id)
        alice.send(
            type="OFFER",
            peer_id="forged",
            target_id=bob.peer_id,
            payload={"type": "offer", "sdp": "v=0"},
            request_id="o1",
        )
        offer = await bob.of_type("OFFER")
        self.assertEqual(offer["peer_id"], alice.peer_id)
        self.assertEqual(offer["target_id"], bob.peer_id)
        self.assertEqual(offer["payload"], {"type": "offer", "sdp": "v=0"})
        self.assertEqual(offer["request_id"], "o1")
        self.assertNotIn("room_id", offer)

    async def test_leave_and_disconnect_announce_peer_left(self) -> None:
        """LEAVE and a dropped socket both reach the others as PEER_LEFT."""
        a, b, c = await self.json_peer(), await self.json_peer(), await self.json_peer()
        for p in (a, b, c):
            await p.request(type="JOIN", room_id="r2")
        reply = await b.request(type="LEAVE")
        self.assertEqual(reply["payload"], {"message": "left room"})
        self.assertNotIn("room_id", reply)
        left = await a.of_type("PEER_LEFT")
        self.assertEqual(left["peer_id"], b.peer_id)
        c.abort()
        left = await a.of_type("PEER_LEFT")
        self.assertEqual(left["peer_id"], c.peer_id)

    async def test_time_sync_stamps(self) -> None:
        """TIME_SYNC echoes t1 and adds integer t2 <= t3."""
        a = await self.json_peer()
        reply = await a.request(type="TIME_SYNC", payload={"t1": 12.5})
        payload = reply["payload"]
        self.assertEqual(payload["t1"], 12.5)
        self.assertLessEqual(payload["t2"], payload["t3"])
        self.assertIsInstance(payload["t2"], int)

    async def test_bad_inputs_answered_with_codes(self) -> None:
        """Each bad request gets its listed code; the connection and others stay up."""
        a, b = await self.json_peer(), await self.json_peer()
        await a.request(type="JOIN", room_id="bad")
        other = await self.json_peer()
        await other.request(type="JOIN", room_id="elsewhere")
        cases: list[tuple[dict[str, Any], str, str]] = [
            ({"type": "NOPE"}, "INVALID_MESSAGE", "unknown message type: NOPE"),
            ({"type": "JOIN"}, "INVALID_MESSAGE", "room_id is required"),
            (
                {"type": "JOIN", "room_id": "x", "payload": 5},
                "INVALID_MESSAGE",
                "invalid payload",
            ),
            ({"type": "OFFER"}, "INVALID_MESSAGE", "target_id is required"),
            (
                {"type": "OFFER", "target_id": other.peer_id},
                "PEER_NOT_FOUND",
                "target peer not found",
            ),
            (
                {"type": "JOIN", "room_id": "bad"},
                "ALREADY_IN_ROOM",
                "already in this room",
            ),
            (
                {"type": "DISCOVER", "room_id": "ghost"},
                "ROOM_NOT_FOUND",
                "room not found",
            ),
            ({"type": "TIME_SYNC"}, "INVALID_MESSAGE", "t1 is required"),
            (
                {"type": "JOIN", "room_id": "z", "payload": {"token": "rt1.x.y"}},
                "UNAUTHORIZED",
                "room token is malformed",
            ),
        ]
        for msg, code, message in cases:
            reply = await a.request(**msg)
            self.assertEqual(reply["type"], "ERROR", msg)
            self.assertEqual(
                (reply["payload"]["code"], reply["payload"]["message"]), (code, message)
            )
        b.send_raw(b"{not json", False)
        error = await b.of_type("ERROR")
        self.assertEqual(error["payload"]["message"], "invalid JSON")
        await b.request(type="LEAVE")  # b is still served: NOT_IN_ROOM
        self.assertFalse(a.closed or b.closed or other.closed)
        refusals = [
            e for e in self.log if "room request from" in e.get("log_format", "")
        ]
        # One line per distinct refusal (the throttle keys on IP and reason).
        self.assertEqual(len(refusals), len(cases) + 2)
        a.send(type="NOPE")
        await a.of_type("ERROR")
        self.assertEqual(
            len(
                [e for e in self.log if "room request from" in e.get("log_format", "")]
            ),
            len(cases) + 2,
        )

    async def test_not_in_room_errors(self) -> None:
        """LEAVE and OFFER outside a room answer NOT_IN_ROOM."""
        a = await self.json_peer()
        reply = await a.request(type="LEAVE")
        self.assertEqual(reply["payload"]["code"], "NOT_IN_ROOM")
        reply = await a.request(type="OFFER", target_id="abcdabcd")
        self.assertEqual(reply["payload"]["message"], "not in any room")
        reply = await a.request(type="DISCOVER")
        self.assertEqual(
            reply["payload"]["message"], "no room specified and not in any room"
        )

    async def test_full_room_refused(self) -> None:
        """A join past max_peers answers ROOM_FULL."""
        peers = [await self.json_peer() for _ in range(4)]
        for p in peers[:3]:
            await p.request(type="JOIN", room_id="small")
        reply = await peers[3].request(type="JOIN", room_id="small")
        self.assertEqual(
            reply["payload"],
            {"code": "ROOM_FULL", "message": "room small is full (max 3 peers)"},
        )

    async def test_oversize_frame_closes_1009(self) -> None:
        """A frame over max_frame_json closes that connection with 1009 only."""
        a, b = await self.json_peer(), await self.json_peer()
        a.send_raw(json.dumps({"type": "KEEP_ALIVE", "x": "y" * 5000}).encode(), False)
        self.assertEqual(await a.wait_closed(), 1009)
        reply = await b.request(type="KEEP_ALIVE")
        self.assertEqual(reply["type"], "ACK")

    async def test_plain_get_is_426(self) -> None:
        """A GET without Upgrade on a WebSocket path answers 426."""
        response = await http_client(self).get(f"http://127.0.0.1:{self.port}/rooms/ws")
        self.assertEqual(response.code, 426)
        self.assertEqual(await response.content(), b"WebSocket upgrade required")


class TokenTests(RoomsDaemonCase):
    extra = "[services.rooms]\ndefault_max_peers = 10\n"

    async def test_token_required_without_anonymous_mode(self) -> None:
        """Without anonymous mode a JOIN needs a token (token_required)."""
        a = await self.json_peer()
        reply = await a.request(type="JOIN", room_id="team-a")
        self.assertEqual(reply["payload"]["details"], "token_required")

    async def test_token_grants_matching_room_only(self) -> None:
        """A prefix token admits its rooms, refuses others and counts max_uses."""
        token = _token(
            self.directory, 7, "team-*", max_uses=1, peer="alice", role="sender"
        )
        await deferLater(reactor, 1.2, lambda: None)  # the realm cache reloads
        a = await self.json_peer()
        wrong = await a.request(type="JOIN", room_id="other", payload={"token": token})
        self.assertEqual(wrong["payload"]["details"], "wrong_room")
        ok = await a.request(
            type="JOIN",
            room_id="team-x",
            payload={"token": token, "display_name": "Mallory"},
        )
        self.assertEqual(ok["payload"]["peers"][0]["display_name"], "alice")
        self.assertEqual(ok["payload"]["peers"][0]["role"], "sender")
        b = await self.json_peer()
        used = await b.request(type="JOIN", room_id="team-x", payload={"token": token})
        self.assertEqual(used["payload"]["details"], "uses_exhausted")
        expired = _token(self.directory, 7, "team-*", exp=1)
        reply = await b.request(
            type="JOIN", room_id="team-x", payload={"token": expired}
        )
        self.assertEqual(reply["payload"]["details"], "expired")
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        reply = await b.request(
            type="JOIN", room_id="team-x", payload={"token": forged}
        )
        self.assertEqual(reply["payload"]["details"], "bad_signature")

    async def test_suspended_realm_closes_sessions(self) -> None:
        """Suspending a realm closes its members with 4003 within about a second."""
        token = _token(self.directory, 7, "*")
        await deferLater(reactor, 1.2, lambda: None)
        a = await self.json_peer()
        ack = await a.request(type="JOIN", room_id="doomed", payload={"token": token})
        self.assertEqual(ack["type"], "ACK")
        conn = connect_sync(realms_path(self.directory))
        try:
            set_realm_status_txn(conn.cursor(), 7, "Suspended", 0)
        finally:
            conn.close()
        start = reactor.seconds()
        error = await a.of_type("ERROR")
        self.assertEqual(error["payload"]["details"], "realm_inactive")
        self.assertEqual(await a.wait_closed(), 4003)
        self.assertLess(reactor.seconds() - start, 2.5)


class BinaryProtocolTests(RoomsDaemonCase):
    async def test_connect_ack_and_heartbeat(self) -> None:
        """CONNECT answers CONNECT_ACK with the same UUID; HEARTBEAT gets seconds."""
        peer = BinaryPeer(reactor)
        self.addCleanup(peer.abort)
        await peer.connect(self.port)
        sent = uuid.uuid4().bytes
        peer.send_frame(
            bc.CONNECT,
            {"client_id": "cam-1", "auth_token": "test_token_1"},
            message_uuid=sent,
        )
        msg_type, got_uuid, _, obj = await peer.next()
        self.assertEqual((msg_type, got_uuid), (bc.CONNECT_ACK, sent))
        ack = obj["ConnectAck"]
        self.assertEqual(ack["status"], "success")
        self.assertEqual(ack["heartbeat_interval"], 30)
        self.assertIsNone(ack["expires_at"])
        self.assertTrue(ack["ice_servers"][1]["username"].endswith(":cam-1"))
        frame = await peer.reply(bc.HEARTBEAT, {"timestamp": 1}, bc.PAYLOAD_PROTOBUF)
        self.assertEqual(frame[0], bc.HEARTBEAT_ACK)
        self.assertEqual(frame[2], bc.PAYLOAD_PROTOBUF)
        self.assertLess(
            abs(frame[3]["HeartbeatAck"]["timestamp"] - reactor.seconds()), 2
        )

    async def test_framing_errors_keep_connection(self) -> None:
        """Framing faults answer ERROR 2/4/6 with their reasons; the socket stays."""
        peer = BinaryPeer(reactor)
        self.addCleanup(peer.abort)
        await peer.connect(self.port)
        good = bc.encode(bc.HEARTBEAT, b"\x01" * 16, bc.PAYLOAD_JSON, {"timestamp": 1})
        lying = good[:19] + (len(good)).to_bytes(2, "big") + good[21:]
        cases = [
            (b"\xaa\x01", 2, "Malformed message: frame too short"),
            (b"\xab" + good[1:], 2, "Malformed message: invalid start byte"),
            (
                good[:1] + b"\x07" + good[2:],
                2,
                "Malformed message: invalid message type 0x07",
            ),
            (
                good[:18] + b"\x09" + good[19:],
                2,
                "Malformed message: invalid payload type 0x09",
            ),
            (lying, 2, "Malformed message: payload length mismatch"),
            (good[:18] + b"\x05" + good[19:], 6, "Unsupported payload type"),
            (
                good[:1] + b"\x02" + good[2:],
                2,
                "Malformed message: unexpected message type 0x02",
            ),
            (good, 4, "Not connected"),
        ]
        for data, code, message in cases:
            peer.send_raw(data, True)
            frame = await peer.of_type(bc.ERROR)
            self.assertEqual(
                (frame[3]["Error"]["error_code"], frame[3]["Error"]["error_message"]),
                (code, message),
            )
        peer.send_raw(b"hello", False)
        frame = await peer.of_type(bc.ERROR)
        self.assertEqual(frame[3]["Error"]["error_code"], 3)
        self.assertFalse(peer.closed)

    async def test_rooms_and_signals_between_binary_peers(self) -> None:
        """ROOM_CREATE/JOIN with roles; the sender's offer reaches the receiver."""
        cam = await self.binary_peer("cam-1", capabilities=["room_events"])
        viewer = await self.binary_peer("viewer-1")
        base = {"version": "1.0.0", "auth_token": "test_token_1"}
        created = await cam.reply(
            bc.ROOM_CREATE,
            {
                **base,
                "client_id": "cam-1",
                "role": "SENDER",
                "offer_sdp": "v=0 offer",
                "room_id": "stage",
            },
        )
        self.assertEqual(created[0], bc.ROOM_CREATE_ACK, created)
        self.assertEqual(
            created[3]["WebRTCRoomCreateAck"]["message"], "Room created successfully"
        )
        joined = await viewer.reply(
            bc.ROOM_JOIN,
            {**base, "client_id": "viewer-1", "role": "receiver", "room_id": "stage"},
        )
        ack = joined[3]["WebRTCRoomJoinAck"]
        self.assertEqual([p["peer_id"] for p in ack["peers"]], ["cam-1", "viewer-1"])
        offer = await viewer.of_type(bc.SIGNAL_OFFER)
        self.assertEqual(offer[3]["SignalOffer"]["signal_data"], "v=0 offer")
        self.assertEqual(offer[3]["SignalOffer"]["source_client_id"], "cam-1")
        event = await cam.of_type(bc.ROOM_EVENT)
        self.assertEqual(event[3]["RoomEvent"]["event"], "peer_joined")
        viewer.send_frame(
            bc.SIGNAL_ANSWER, {"target_client_id": "cam-1", "signal_data": "v=0 answer"}
        )
        answer = await cam.of_type(bc.SIGNAL_ANSWER)
        self.assertEqual(answer[3]["SignalAnswer"]["source_client_id"], "viewer-1")
        missing = await viewer.reply(
            bc.SIGNAL_OFFER, {"target_client_id": "ghost", "signal_data": "x"}
        )
        self.assertEqual(missing[3]["Error"]["error_code"], 5)
        dup = await cam.reply(
            bc.ROOM_JOIN,
            {
                **base,
                "client_id": "cam-1",
                "role": "sender",
                "offer_sdp": "x",
                "room_id": "stage",
            },
        )
        self.assertEqual(dup[3]["Error"]["error_message"], "Client already in room")

    async def test_json_and_binary_peers_exchange_offer(self) -> None:
        """A /rooms/ws and a /rooms/bin peer in one room see each other, swap SDP."""
        alice = await self.json_peer()
        await alice.request(type="JOIN", room_id="mixed")
        cam = await self.binary_peer("cam-9")
        await cam.reply(
            bc.ROOM_JOIN,
            {
                "version": "1.0.0",
                "client_id": "cam-9",
                "auth_token": "x",
                "role": "receiver",
                "room_id": "mixed",
            },
        )
        joined = await alice.of_type("PEER_JOINED")
        self.assertEqual(joined["peer_id"], "cam-9")
        alice.send(
            type="OFFER",
            target_id="cam-9",
            payload={"type": "offer", "sdp": "v=0\r\n"},
            request_id="r7",
        )
        offer = await cam.of_type(bc.SIGNAL_OFFER)
        fields = offer[3]["SignalOffer"]
        self.assertEqual(
            json.loads(fields["signal_data"]), {"type": "offer", "sdp": "v=0\r\n"}
        )
        self.assertEqual(
            (fields["source_client_id"], fields["request_id"]), (alice.peer_id, "r7")
        )
        cam.send_frame(
            bc.SIGNAL_ANSWER,
            {
                "target_client_id": alice.peer_id,
                "signal_data": json.dumps({"type": "answer", "sdp": "v=0\r\n"}),
            },
        )
        answer = await alice.of_type("ANSWER")
        self.assertEqual(answer["peer_id"], "cam-9")
        self.assertEqual(answer["payload"], {"type": "answer", "sdp": "v=0\r\n"})


class RestTests(RoomsDaemonCase):
    async def test_stats_rooms_and_room(self) -> None:
        """The REST bodies of §6 (open in dev with no bearer token)."""
        a = await self.json_peer()
        await a.request(
            type="JOIN", room_id="team/alpha", payload={"display_name": "alice"}
        )
        client = http_client(self)
        base = f"http://127.0.0.1:{self.port}"
        stats = json.loads(await (await client.get(base + "/api/stats")).content())
        self.assertEqual(stats["peers"], {"total": 1, "without_room": 0})
        listing = json.loads(await (await client.get(base + "/api/rooms")).content())
        self.assertEqual(listing["rooms"][0]["id"], "team/alpha")
        self.assertTrue(listing["rooms"][0]["created_at"].endswith("Z"))
        one = await client.get(base + "/api/rooms/team%2Falpha")
        body = await one.content()
        self.assertTrue(body.endswith(b"\n"))
        room = json.loads(body)
        self.assertEqual(
            list(room),
            ["created_at", "id", "max_peers", "peer_count", "peers", "realm_id"],
        )
        self.assertEqual(room["peers"][0]["display_name"], "alice")
        missing = await client.get(base + "/api/rooms/nope")
        self.assertEqual(
            (missing.code, await missing.content()), (404, b"room not found\n")
        )
        metrics = (await (await client.get(base + "/metrics")).content()).decode()
        self.assertIn("actrix_rooms_members 1.0", metrics)
        self.assertIn("actrix_rooms_rooms 1.0", metrics)
        unknown = await client.get(base + "/api/x")
        self.assertEqual(
            json.loads(await unknown.content()),
            {"error": "not found", "path": "/api/x"},
        )
        health = json.loads(await (await client.get(base + "/rooms/health")).content())
        self.assertEqual(health["status"], "ok")


class LimitTests(RoomsDaemonCase):
    extra = """
[services.rooms]
allow_anonymous = true
max_connections_per_ip = 3
message_rate = 1.0
message_burst = 2
"""

    async def test_message_rate_answers_rate_limited(self) -> None:
        """Past the burst, frames are dropped with one RATE_LIMITED a second."""
        a = await self.json_peer()
        for i in range(6):
            a.send(type="KEEP_ALIVE", request_id=f"k{i}")
        error = await a.of_type("ERROR")
        self.assertEqual(
            error["payload"],
            {
                "code": "RATE_LIMITED",
                "message": "too many messages",
                "details": "message_rate",
            },
        )
        acks = [await a.of_type("ACK") for _ in range(2)]
        self.assertEqual([f["request_id"] for f in acks], ["k0", "k1"])
        await deferLater(reactor, 0.3, lambda: None)
        self.assertEqual([f for f in a.frames if f["type"] == "ERROR"], [])

    async def test_per_ip_cap_refuses_upgrade_with_429(self) -> None:
        """The fourth socket from one IP is refused before the upgrade."""
        peers = [await self.json_peer() for _ in range(3)]
        extra = JsonPeer(reactor)
        self.addCleanup(extra.abort)
        with self.assertRaises(Exception) as caught:
            await extra.open(self.port)
        self.assertIn("429", str(caught.exception) + repr(extra.close_code))
        peers[0].abort()
        await deferLater(reactor, 0.2, lambda: None)
        again = await self.json_peer()
        self.assertTrue(again.peer_id)

    async def test_binary_oversize_closes_1009(self) -> None:
        """A /rooms/bin message over 65 556 bytes closes with 1009."""
        peer = BinaryPeer(reactor)
        self.addCleanup(peer.abort)
        await peer.connect(self.port)
        peer.send_raw(b"\xaa" * 70000, True)
        self.assertEqual(await peer.wait_closed(), 1009)


class BinarySessionTests(RoomsDaemonCase):
    extra = "[services.rooms]\nallow_anonymous = true\n"

    async def test_connect_token_checks_and_takeover(self) -> None:
        """Bad tokens answer ERROR 1; a second anonymous cam-1 replaces the first."""
        peer = BinaryPeer(reactor)
        self.addCleanup(peer.abort)
        await peer.connect(self.port)
        frame = await peer.reply(
            bc.CONNECT, {"client_id": "cam-1", "auth_token": "rt1.x.y"}
        )
        self.assertEqual(
            frame[3]["Error"],
            {
                "error_code": 1,
                "error_message": "Authentication failed: room token is malformed",
                "code": "UNAUTHORIZED",
                "details": "token_malformed",
            },
        )
        frame = await peer.reply(bc.CONNECT, {"client_id": "bad id", "auth_token": "x"})
        self.assertEqual(frame[3]["Error"]["error_message"], "invalid client_id")
        first = await self.binary_peer("cam-1")
        again = await first.reply(bc.CONNECT, {"client_id": "cam-1", "auth_token": "x"})
        self.assertEqual(again[3]["Error"]["error_message"], "Already connected")
        await self.binary_peer("cam-1")
        disconnect = await first.of_type(bc.DISCONNECT)
        self.assertEqual(
            disconnect[3]["Disconnect"], {"client_id": "cam-1", "reason": "replaced"}
        )
        self.assertEqual(await first.wait_closed(), 4001)

    async def test_register_and_time_sync(self) -> None:
        """REGISTER answers its ack; TIME_SYNC works before CONNECT."""
        peer = BinaryPeer(reactor)
        self.addCleanup(peer.abort)
        await peer.connect(self.port)
        sync = await peer.reply(bc.TIME_SYNC, {"t1": 5})
        self.assertEqual(sync[0], bc.TIME_SYNC_ACK)
        self.assertEqual(sync[3]["TimeSyncAck"]["t1"], 5)
        await peer.reply(bc.CONNECT, {"client_id": "reg-1", "auth_token": "x"})
        base = {"version": "1.0.0", "auth_token": "x"}
        ack = await peer.reply(bc.REGISTER, {**base, "client_id": "reg-1"})
        self.assertEqual(ack[3]["RegisterAck"]["message"], "Registration successful")
        wrong = await peer.reply(bc.REGISTER, {**base, "client_id": "other"})
        self.assertEqual(
            wrong[3]["Error"]["error_message"],
            "client_id does not match the connected client",
        )
        newer = await peer.reply(
            bc.UNREGISTER, {**base, "version": "2.0", "client_id": "reg-1"}
        )
        self.assertEqual(
            newer[3]["Error"]["error_message"], "Unsupported version: newer than server"
        )


class RestAuthTests(RoomsDaemonCase):
    extra = """
[services.rooms]
api_token = "rooms-api-token-0123456789"
"""

    async def test_bearer_and_nonce_auth(self) -> None:
        """GETs need the bearer or a nonce-auth credential; POST mints a token."""
        from actrix.core.auth import sign_credential
        from tests.daemon import SHARED_KEY

        client = http_client(self)
        base = f"http://127.0.0.1:{self.port}"
        denied = await client.get(base + "/api/stats")
        self.assertEqual(
            (denied.code, await denied.content()), (401, b"unauthorized\n")
        )
        ok = await client.get(
            base + "/api/stats",
            headers=Headers({"Authorization": ["Bearer rooms-api-token-0123456789"]}),
        )
        self.assertEqual(ok.code, 200)
        await ok.content()
        credential = sign_credential(
            SHARED_KEY.encode(), "rooms_api:GET /api/rooms", reactor.seconds()
        )
        nonce_ok = await client.get(
            base + "/api/rooms?realm_id=7",
            headers=Headers({"X-Actrix-Credential": [credential.to_header()]}),
        )
        self.assertEqual(json.loads(await nonce_ok.content()), {"rooms": []})
        replay = await client.get(
            base + "/api/rooms",
            headers=Headers({"X-Actrix-Credential": [credential.to_header()]}),
        )
        self.assertEqual(replay.code, 401)
        await replay.content()
        body: dict[str, Any] = {
            "realm_id": 7,
            "room": "team-*",
            "role": "publisher",
            "ttl": 600,
        }
        signed = sign_credential(
            SHARED_KEY.encode(),
            "room_token:" + roomtokens.canonical_json(body).decode(),
            reactor.seconds(),
        )
        minted = await client.post(
            base + "/api/rooms/tokens", json={**body, "credential": signed.to_json()}
        )
        reply = json.loads(await minted.content())
        self.assertEqual(minted.code, 200, reply)
        self.assertEqual(reply["claims"]["role"], "sender")
        again = await client.post(
            base + "/api/rooms/tokens", json={**body, "credential": signed.to_json()}
        )
        self.assertEqual(
            json.loads(await again.content()),
            {"error": "Request rejected", "code": 403},
        )
        unknown = {**body, "realm_id": 99}
        signed = sign_credential(
            SHARED_KEY.encode(),
            "room_token:" + roomtokens.canonical_json(unknown).decode(),
            reactor.seconds(),
        )
        missing = await client.post(
            base + "/api/rooms/tokens", json={**unknown, "credential": signed.to_json()}
        )
        self.assertEqual(missing.code, 404)
        await missing.content()
        peer = await self.json_peer()
        joined = await peer.request(
            type="JOIN", room_id="team-1", payload={"token": reply["token"]}
        )
        self.assertEqual(joined["type"], "ACK", joined)


class PersistenceAndIdleTests(TestCase):
    timeout = 20

    async def test_configured_room_survives_restart_and_idle_peer_leaves(self) -> None:
        """A configured room keeps created_at across restarts; idle peers leave."""
        directory = Path(self.mktemp())
        extra = """
[services.rooms]
allow_anonymous = true
idle_timeout = 1

[[services.rooms.room]]
name = "hall"
realm_id = 0
max_peers = 5
metadata = { topic = "weekly" }
"""
        settings = make_settings(directory, enable=63, extra=extra)
        # The first daemon is stopped here (not at cleanup) to restart it.
        root = build_root_service(settings, reactor)
        root.privilegedStartService()
        root.startService()
        self.addCleanup(lambda: root.stopService() if root.running else None)
        base = f"http://127.0.0.1:{http_port(root)}"
        client = http_client(self)
        first = json.loads(await (await client.get(base + "/api/rooms/hall")).content())
        self.assertEqual(first["max_peers"], 5)
        quiet, busy = JsonPeer(reactor), JsonPeer(reactor)
        for peer in (quiet, busy):
            self.addCleanup(peer.abort)
            await peer.open(http_port(root))
            await peer.request(type="JOIN", room_id="hall")
        for _ in range(5):
            await deferLater(reactor, 0.5, lambda: None)
            busy.send(type="KEEP_ALIVE")
            if quiet.closed:
                break
        self.assertEqual(await quiet.wait_closed(), 1001)
        left = await busy.of_type("PEER_LEFT")
        self.assertEqual(left["peer_id"], quiet.peer_id)
        busy.abort()
        await root.stopService()
        self.assertFalse(root.running)
        await deferLater(reactor, 1.1, lambda: None)  # created_at is in ms
        again = start_daemon(self, settings)
        url = f"http://127.0.0.1:{http_port(again)}/api/rooms/hall"
        second = json.loads(await (await http_client(self).get(url)).content())
        self.assertEqual(second["created_at"], first["created_at"])
        self.assertEqual(second["peers"], [])


class FramingPathTests(RoomsDaemonCase):
    async def test_fragmented_and_binary_json_frames(self) -> None:
        """Fragmented messages (Autobahn's path) and JSON in binary frames work."""
        a = await self.json_peer()
        protocol: Any = a.protocol
        protocol.autoFragmentSize = 7
        reply = await a.request(type="KEEP_ALIVE", request_id="frag")
        self.assertEqual(reply["type"], "ACK")
        protocol.autoFragmentSize = 0
        a.send_raw(json.dumps({"type": "KEEP_ALIVE", "request_id": "b"}).encode(), True)
        reply = await a.next(lambda f: f.get("request_id") == "b")
        self.assertEqual(reply["type"], "ACK")
        a.send_raw(b'{"type":"KEEP_ALIVE","x":"\xff"}', True)
        error = await a.of_type("ERROR")
        self.assertEqual(error["payload"]["message"], "invalid JSON")
