"""Rooms over real WebSockets: the JSON protocol, tokens, limits, framing paths."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater

from actrix.core.realms import realms_path, set_realm_status_txn
from actrix.core.storage import connect_sync
from tests.daemon import http_client
from tests.rooms_client import BinaryPeer, JsonPeer
from tests.rooms_daemon import RoomsDaemonCase, room_token


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

    async def test_internal_fault_is_internal_error(self) -> None:
        """A fault in the service answers INTERNAL_ERROR, logged once; others go on."""

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("a bug")

        site: Any = self.root.listener("http").factory
        rooms = site.resource.children[b"rooms"]
        rooms.children[b"ws"]._factory.edge.service.join = broken
        a = await self.json_peer()
        reply = await a.request(type="JOIN", room_id="r")
        self.assertEqual(
            reply["payload"], {"code": "INTERNAL_ERROR", "message": "internal error"}
        )
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual((await a.request(type="KEEP_ALIVE"))["type"], "ACK")

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
        token = room_token(
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
        expired = room_token(self.directory, 7, "team-*", exp=1)
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
        token = room_token(self.directory, 7, "*")
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
