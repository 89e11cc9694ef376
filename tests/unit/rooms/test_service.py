"""RoomService rules with a task.Clock and recording sinks (no sockets)."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from actrix.core import roomtokens
from actrix.core.ice import IceServerSource
from actrix.core.interfaces import RealmInfo
from actrix.core.realms import RoomSecret
from actrix.core.settings import RoomsConfig
from actrix.rooms.grants import Authorizer
from actrix.rooms.members import Peer
from actrix.rooms.model import (
    OFFER,
    JoinResult,
    PeerInfo,
    RoomError,
    Signal,
    SignalData,
)
from actrix.rooms.service import RoomService

SECRET = b"\x07" * 32


class FakeRealms:
    def __init__(self) -> None:
        self.status = {5: "Normal"}

    def room_secret(self, realm_id: int, kid: int) -> bytes | None:
        return SECRET if realm_id in self.status and kid == 1 else None

    def realm_problem(self, realm_id: int) -> str | None:
        return None if self.status.get(realm_id) == "Normal" else "inactive"

    def realm(self, realm_id: int) -> RealmInfo | None:
        status = self.status.get(realm_id)
        return None if status is None else RealmInfo(realm_id, "r", status, None, 0, 0)

    async def current_room_secret(self, realm_id: int) -> RoomSecret:
        return RoomSecret(realm_id, 1, SECRET, None)


class Recorder:
    def __init__(self) -> None:
        self.uses: list[str] = []

    def record_use(self, nonce: str, exp: int) -> None:
        self.uses.append(nonce)


@attrs.define
class Sink:
    events: list[tuple[str, Any]] = attrs.Factory(list)
    accept_signals: bool = True

    def peer_joined(self, room_id: str, peer: PeerInfo) -> None:
        self.events.append(("joined", peer.peer_id))

    def peer_left(self, room_id: str, peer_id: str) -> None:
        self.events.append(("left", peer_id))

    def signal(self, signal: Signal) -> bool:
        self.events.append(("signal", signal))
        return self.accept_signals

    def end(self, code: int, error: RoomError | None, replaced_by: str | None) -> None:
        self.events.append(("end", code))


class ServiceCase(SynchronousTestCase):
    config = RoomsConfig(default_max_peers=2, max_rooms=3, allow_anonymous=True)

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.realms = FakeRealms()
        self.recorder = Recorder()
        self.authorizer = Authorizer(
            self.realms,
            self.clock,
            self.recorder,
            allow_anonymous=self.config.allow_anonymous,
            anonymous_realm_id=0,
        )
        self.ice = IceServerSource("h", 3478, True, b"s")
        self.service = RoomService(self.config, self.clock, self.authorizer, self.ice)
        self.acks: list[JoinResult] = []

    def peer(self) -> tuple[Peer, Sink]:
        sink = Sink()
        return self.service.open_json(sink), sink

    def join(self, peer: Peer, room: str, **kw: Any) -> None:
        self.service.join(peer, room, ack=self.acks.append, **kw)

    def token(self, room: str = "*", **claims: Any) -> str:
        fields: dict[str, Any] = {
            "realm_id": 5,
            "room": room,
            "role": "any",
            "exp": int(self.clock.seconds()) + 60,
            "nonce": roomtokens.new_nonce(),
            "kid": 1,
        }
        fields.update(claims)
        return roomtokens.mint(roomtokens.RoomClaims(**fields), SECRET)

    def code(self, fn: Any, *args: Any, **kw: Any) -> tuple[str, str, str | None]:
        try:
            fn(*args, **kw)
        except RoomError as e:
            return e.code, e.message, e.details
        raise AssertionError("no error")


class JoinTests(ServiceCase):
    def test_join_acks_then_announces(self) -> None:
        """The joiner's ACK lists it; others get PEER_JOINED; ICE expiry <= ice_ttl."""
        a, a_sink = self.peer()
        b, _ = self.peer()
        self.join(a, "r")
        self.join(b, "r")
        self.assertEqual(
            [p.peer_id for p in self.acks[1].peers], [a.peer_id, b.peer_id]
        )
        self.assertEqual(a_sink.events, [("joined", b.peer_id)])
        username = self.acks[0].ice_servers[1]["username"]
        self.assertEqual(username, f"{int(self.clock.seconds()) + 3600}:{a.peer_id}")

    def test_move_announces_peer_left_and_refusal_keeps_room(self) -> None:
        """A move announces PEER_LEFT; a refused JOIN leaves the peer where it was."""
        a, a_sink = self.peer()
        b, _ = self.peer()
        c, _ = self.peer()
        self.join(a, "one")
        self.join(b, "one")
        self.join(c, "full")
        self.join(self.peer()[0], "full")
        self.assertEqual(
            self.code(self.join, b, "full"),
            ("ROOM_FULL", "room full is full (max 2 peers)", None),
        )
        self.assertIs(b.room, self.service.room("one"))
        self.join(b, "two")
        self.assertIn(("left", b.peer_id), a_sink.events)

    def test_room_limit_and_errors(self) -> None:
        """max_rooms, room_id checks and ALREADY_IN_ROOM."""
        a, _ = self.peer()
        for name in ("x", "y", "z"):
            self.join(self.peer()[0], name)
        self.assertEqual(
            self.code(self.join, a, "w"),
            ("ROOM_FULL", "room limit reached", "max_rooms"),
        )
        self.assertEqual(self.code(self.join, a, None)[1], "room_id is required")
        self.assertEqual(self.code(self.join, a, "a\x01")[1], "invalid room_id")
        self.assertEqual(self.code(self.join, a, "r" * 257)[1], "invalid room_id")
        self.join(a, "x")
        self.assertEqual(self.code(self.join, a, "x")[0], "ALREADY_IN_ROOM")

    def test_wrong_realm_and_token_roles(self) -> None:
        """A token room in another realm is wrong_realm; roles are checked."""
        a, _ = self.peer()
        self.join(a, "anon-room")
        b, _ = self.peer()
        token = self.token(role="sender")
        self.assertEqual(
            self.code(self.join, b, "anon-room", token=token)[2], "wrong_realm"
        )
        self.assertEqual(
            self.code(self.join, b, "t", token=token, role="receiver")[2], "wrong_role"
        )
        self.join(b, "t", token=token)
        self.assertEqual(b.role, "sender")

    def test_max_uses_counted_only_on_success(self) -> None:
        """A refused join does not use the token; the limit then refuses."""
        token = self.token(max_uses=1)
        a, _ = self.peer()
        self.join(self.peer()[0], "f", token=self.token())
        self.join(self.peer()[0], "f", token=self.token())
        self.assertEqual(self.code(self.join, a, "f", token=token)[0], "ROOM_FULL")
        self.assertEqual(self.recorder.uses, [])
        self.join(a, "g", token=token)
        self.assertEqual(len(self.recorder.uses), 1)
        self.assertEqual(
            self.code(self.join, self.peer()[0], "g", token=token)[2], "uses_exhausted"
        )

    def test_discover(self) -> None:
        """DISCOVER: own room, unknown room, foreign room needs a token."""
        a, _ = self.peer()
        self.assertEqual(
            self.code(self.service.discover, a, None, None)[0], "NOT_IN_ROOM"
        )
        self.assertEqual(
            self.code(self.service.discover, a, "nope", None)[0], "ROOM_NOT_FOUND"
        )
        b, _ = self.peer()
        self.join(b, "secret", token=self.token())
        self.assertEqual(
            self.code(self.service.discover, a, "secret", None)[2], "token_required"
        )
        room_id, peers = self.service.discover(a, "secret", self.token("secret"))
        self.assertEqual((room_id, [p.peer_id for p in peers]), ("secret", [b.peer_id]))


class RelayTests(ServiceCase):
    def test_relay_rules(self) -> None:
        """Relays reach room members only; sizes the target refuses are reported."""
        a, _ = self.peer()
        b, b_sink = self.peer()
        c, c_sink = self.peer()
        signal = Signal(OFFER, a.peer_id, b.peer_id, SignalData({"sdp": "x"}))
        self.assertEqual(self.code(self.service.relay, a, signal)[0], "NOT_IN_ROOM")
        self.join(a, "r")
        self.join(b, "r")
        self.join(c, "other")
        self.service.relay(a, signal)
        self.assertEqual(b_sink.events[-1], ("signal", signal))
        elsewhere = attrs.evolve(signal, target=c.peer_id)
        self.assertEqual(
            self.code(self.service.relay, a, elsewhere)[0], "PEER_NOT_FOUND"
        )
        b_sink.accept_signals = False
        self.assertEqual(
            self.code(self.service.relay, a, signal),
            ("INVALID_MESSAGE", "message too large for target", "frame_too_large"),
        )
        self.assertEqual(c_sink.events, [])


class BinaryTests(ServiceCase):
    def test_connect_takeover_and_conflict(self) -> None:
        """Anonymous duplicates take over (4001); other conflicts are refused."""
        first, first_sink = Sink(), Sink()
        self.service.connect(first, "cam-1", "test_token_1", ())
        peer, result = self.service.connect(first_sink, "cam-1", "test_token_1", ())
        self.assertEqual(first.events, [("end", 4001)])
        self.assertIsNone(result.expires_at)
        other = self.token(peer="someone-else")
        self.assertEqual(
            self.code(self.service.connect, Sink(), "cam-1", other, ())[2], "wrong_peer"
        )
        self.assertEqual(
            self.code(self.service.connect, Sink(), "cam-1", self.token(), ())[1],
            "client_id already connected",
        )
        self.assertEqual(
            self.code(self.service.connect, Sink(), "bad id", "x", ())[1],
            "invalid client_id",
        )
        self.assertIs(self.service.peer("cam-1"), peer)

    def test_sender_offer_reaches_receivers(self) -> None:
        """A sender's create offer goes to receivers present and joining later."""
        cam, _ = self.service.connect(Sink(), "cam", "anon", ())
        early_sink = Sink()
        early, _ = self.service.connect(early_sink, "early", "anon", ())
        self.service.room_create(
            cam, "stage", "anon", "Sender", "v=0", None, self.acks.append
        )
        self.service.room_join(
            early, "stage", "anon", "receiver", None, None, self.acks.append
        )
        offers = [e[1] for e in early_sink.events if e[0] == "signal"]
        self.assertEqual([(o.source, o.data.text) for o in offers], [("cam", "v=0")])
        self.assertEqual(
            self.code(
                self.service.room_create,
                cam,
                "stage",
                "anon",
                "sender",
                "x",
                None,
                print,
            )[1],
            "room already exists",
        )
        self.assertEqual(
            self.code(
                self.service.room_join,
                cam,
                "stage",
                "anon",
                "viewer",
                None,
                None,
                print,
            )[1],
            "Invalid role: must be 'sender' or 'receiver'",
        )
        self.assertEqual(
            self.code(
                self.service.room_join,
                cam,
                "stage",
                "anon",
                "sender",
                None,
                None,
                print,
            )[1],
            "Offer SDP is required for sender role",
        )
        self.assertEqual(
            self.code(self.service.room_leave, cam, "nope")[0], "ROOM_NOT_FOUND"
        )


class SweepTests(ServiceCase):
    config = RoomsConfig(
        allow_anonymous=True, stale_timeout=100, empty_room_ttl=50, cleanup_interval=10
    )

    def test_stale_peer_removed_with_peer_left(self) -> None:
        """A peer silent past stale_timeout is removed (PEER_LEFT, close 1001)."""
        a, a_sink = self.peer()
        b, b_sink = self.peer()
        self.join(a, "r")
        self.join(b, "r")
        self.clock.advance(60)
        self.service.touch(a)
        self.clock.advance(60)
        self.service.sweep()
        self.assertEqual(b_sink.events[-1], ("end", 1001))
        self.assertEqual(a_sink.events[-1], ("left", b.peer_id))
        self.assertIsNone(self.service.peer(b.peer_id))

    def test_empty_room_dropped_after_ttl_persistent_kept(self) -> None:
        """An empty room goes after empty_room_ttl from emptiness; persistent stays."""
        self.service.add_persistent("hall", 0, 10, {"k": 1}, 5)
        a, _ = self.peer()
        self.join(a, "r")
        self.clock.advance(200)
        self.service.touch(a)
        self.service.leave(a)
        self.clock.advance(49)
        self.service.sweep()
        self.assertIsNotNone(self.service.room("r"))
        self.clock.advance(1)
        self.service.sweep()
        self.assertIsNone(self.service.room("r"))
        self.assertIsNotNone(self.service.room("hall"))

    def test_inactive_realm_closes_members(self) -> None:
        """check_realms ends members of a suspended realm with 4003."""
        a, a_sink = self.peer()
        self.join(a, "r", token=self.token())
        b, b_sink = self.peer()
        self.join(b, "anon")
        self.realms.status[5] = "Suspended"
        self.service.check_realms()
        self.assertEqual(a_sink.events[-1], ("end", 4003))
        self.assertEqual(b_sink.events, [])
        self.assertEqual(self.service.stats()["peers"], {"total": 1, "without_room": 0})

    def test_end_realm_closes_its_peers_whatever_the_cache_says(self) -> None:
        """end_realm (a suspension through the admin API) ends the realm's peers."""
        a, a_sink = self.peer()
        self.join(a, "r", token=self.token())
        b, b_sink = self.peer()
        self.join(b, "anon")
        self.assertEqual(self.service.count_realm(5), 1)
        self.assertEqual(self.service.end_realm(5), 1)
        self.assertEqual(a_sink.events[-1], ("end", 4003))
        self.assertEqual(b_sink.events, [])
        self.assertEqual(self.service.count_realm(5), 0)
        self.assertEqual(self.service.end_realm(5), 0)
