"""Rooms over real WebSockets: binary sessions and JSON/binary interop."""

from __future__ import annotations

import json
import uuid
from typing import Any

from twisted.internet import reactor

from actrix.rooms import binary_codec as bc
from tests.daemon import http_client
from tests.rooms_client import BinaryPeer, JsonPeer
from tests.rooms_daemon import RoomsDaemonCase


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


class BinaryRoomErrorTests(RoomsDaemonCase):
    async def test_room_errors_7_8_10_and_internal_12(self) -> None:
        """Unknown room (7), full room (8), not a member (10), our bug (12)."""
        base = {"version": "1.0.0", "auth_token": "x", "role": "receiver"}
        peers = [await self.binary_peer(f"p{i}") for i in range(4)]
        missing = await peers[0].reply(
            bc.ROOM_JOIN, {**base, "client_id": "p0", "room_id": "ghost"}
        )
        self.assertEqual(
            (missing[3]["Error"]["error_code"], missing[3]["Error"]["error_message"]),
            (7, "Room not found"),
        )
        created = await peers[0].reply(
            bc.ROOM_CREATE, {**base, "client_id": "p0", "room_id": "tiny"}
        )
        self.assertEqual(created[0], bc.ROOM_CREATE_ACK)
        for i in (1, 2):
            joined = await peers[i].reply(
                bc.ROOM_JOIN, {**base, "client_id": f"p{i}", "room_id": "tiny"}
            )
            self.assertEqual(joined[0], bc.ROOM_JOIN_ACK)
        full = await peers[3].reply(
            bc.ROOM_JOIN, {**base, "client_id": "p3", "room_id": "tiny"}
        )
        self.assertEqual(full[3]["Error"]["error_code"], 8)
        self.assertEqual(full[3]["Error"]["code"], "ROOM_FULL")
        leave = {"version": "1.0.0", "auth_token": "x", "client_id": "p3"}
        outside = await peers[3].reply(bc.ROOM_LEAVE, {**leave, "room_id": "tiny"})
        self.assertEqual(
            outside[3]["Error"]["error_message"], "Client is not in the specified room"
        )
        self.assertEqual(outside[3]["Error"]["error_code"], 10)

        def broken(*args: object) -> None:
            raise RuntimeError("a bug")

        service = _room_service(self.root)
        service.relay = broken
        bug = await peers[0].reply(
            bc.SIGNAL_OFFER, {"target_client_id": "p1", "signal_data": "x"}
        )
        self.assertEqual(
            (bug[3]["Error"]["error_code"], bug[3]["Error"]["code"]),
            (12, "INTERNAL_ERROR"),
        )
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


def _room_service(root: Any) -> Any:
    """The daemon's RoomService, reached through its site's /rooms/ws resource."""
    site = root.listener("http").factory
    rooms = site.resource.children[b"rooms"]
    return rooms.children[b"ws"]._factory.edge.service


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


class AliasTests(RoomsDaemonCase):
    extra = """
[services.rooms]
allow_anonymous = true
json_ws_alias = true
binary_root_alias = true
"""

    async def test_original_clients_default_urls(self) -> None:
        """altair's /ws and Signal Manager's / reach the room endpoints."""
        json_peer = JsonPeer(reactor)
        json_peer.path = "/ws"
        self.addCleanup(json_peer.abort)
        await json_peer.open(self.port)
        self.assertEqual(len(json_peer.peer_id), 8)
        binary = BinaryPeer(reactor)
        binary.path = "/"
        self.addCleanup(binary.abort)
        ack = await binary.connect_as(self.port, "sm-1")
        self.assertEqual(ack["ConnectAck"]["status"], "success")
        health = await http_client(self).get(f"http://127.0.0.1:{self.port}/health")
        self.assertEqual(health.code, 200)
        await health.content()
