"""The JSON room codec (rooms.md §2): decoding bounds, payloads, encoding order."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from actrix.rooms import json_codec
from actrix.rooms.model import ABSENT, Endpoint, PeerInfo, SignalData


class DecodeTests(SynchronousTestCase):
    def test_full_envelope(self) -> None:
        """Every envelope key is read; peer_id and timestamp are ignored."""
        request = json_codec.decode(
            b'{"type":"OFFER","peer_id":"x","target_id":"t","room_id":"r",'
            b'"payload":{"sdp":"v=0"},"timestamp":5,"request_id":"q","extra":1}'
        )
        self.assertEqual(
            request,
            json_codec.JsonRequest("OFFER", "q", "r", "t", {"sdp": "v=0"}),
        )

    def test_missing_type_and_null_payload(self) -> None:
        """A missing type decodes as '' and a null payload as absent."""
        request = json_codec.decode('{"payload":null}')
        self.assertEqual(request.type, "")
        self.assertIs(request.payload, ABSENT)

    def test_invalid_envelopes(self) -> None:
        """Unparsable, non-object and mistyped envelopes raise JsonDecodeError."""
        for data in (
            b"{",
            b"[]",
            b'"x"',
            b'{"type":5}',
            b'{"type":"JOIN","room_id":5}',
            b'{"type":"JOIN","timestamp":"x"}',
            b'{"type":"JOIN","timestamp":1.5}',
            b'{"type":"JOIN","timestamp":true}',
            b'{"type":"JOIN","request_id":[]}',
            b'{"type":"JOIN","payload":NaN}',
            b'{"type":"JOIN","payload":' + b"1" * 41 + b"}",
            b'{"type":"JOIN","payload":1' + b"0" * 40 + b".5}",
            b"\xff\xfe",
            b'{"type":"JOIN","payload":' + b"[" * 40 + b"]" * 40 + b"}",
            b"[" * 100000 + b"]" * 100000,
        ):
            with self.assertRaises(json_codec.JsonDecodeError, msg=data[:40]):
                json_codec.decode(data)

    def test_depth_limit_is_inclusive(self) -> None:
        """Nesting up to MAX_DEPTH containers is accepted."""
        depth = json_codec.MAX_DEPTH - 1
        data = '{"type":"X","payload":' + "[" * depth + "]" * depth + "}"
        self.assertEqual(json_codec.decode(data).type, "X")

    @given(st.binary(max_size=200))
    def test_any_bytes_raise_only_decode_error(self, data: bytes) -> None:
        """Decoding arbitrary bytes yields a request or JsonDecodeError."""
        with contextlib.suppress(json_codec.JsonDecodeError):
            json_codec.decode(data)

    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=5),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c),
            max_leaves=10,
        )
    )
    def test_any_json_raises_only_decode_error(self, value: object) -> None:
        """Any JSON document as an envelope or a payload decodes or is refused."""
        for doc in (value, {"type": "JOIN", "payload": value, "room_id": value}):
            try:
                request = json_codec.decode(json.dumps(doc))
                json_codec.join_fields(request.payload)
            except (json_codec.JsonDecodeError, json_codec.PayloadError):
                pass


class JoinPayloadTests(SynchronousTestCase):
    def test_fields(self) -> None:
        """Display name, endpoint, token, role alias and metadata are read."""
        fields = json_codec.join_fields(
            {
                "display_name": "Alice",
                "endpoint": {"ip": "1.2.3.4", "port": 5},
                "token": "rt1.x",
                "role": "publisher",
                "metadata": {"a": 1},
            }
        )
        self.assertEqual(
            fields,
            json_codec.JoinFields(
                "Alice", Endpoint("1.2.3.4", 5), "rt1.x", "sender", {"a": 1}
            ),
        )
        self.assertEqual(json_codec.join_fields(ABSENT), json_codec.JoinFields())

    def test_invalid_payloads(self) -> None:
        """Each mistyped field is a PayloadError."""
        payloads: tuple[Any, ...] = (
            5,
            [],
            {"display_name": 5},
            {"display_name": "x" * 129},
            {"endpoint": {"ip": "x"}},
            {"endpoint": {"ip": "x", "port": True}},
            {"endpoint": {"ip": "x", "port": 70000}},
            {"token": 1},
            {"role": "admin"},
            {"metadata": []},
            {"metadata": {"k": "v" * 4100}},
        )
        for payload in payloads:
            with self.assertRaises(json_codec.PayloadError, msg=str(payload)[:60]):
                json_codec.join_fields(payload)

    def test_time_sync_and_token(self) -> None:
        """t1 must be a number (not a bool); a DISCOVER token must be a string."""
        self.assertEqual(json_codec.time_sync_t1({"t1": 1.5}), 1.5)
        self.assertIsNone(json_codec.time_sync_t1({"t1": True}))
        self.assertIsNone(json_codec.time_sync_t1(ABSENT))
        self.assertEqual(json_codec.payload_token({"token": "t"}), "t")
        self.assertIsNone(json_codec.payload_token({"token": 1}))


class EncodeTests(SynchronousTestCase):
    def test_join_ack_of_the_example(self) -> None:
        """§2.6: the JOIN ACK frame byte for byte (ice_servers shortened)."""
        peers = (PeerInfo("a1b2c3d4", 1767222000002, "alice", role="sender"),)
        payload = json_codec.peer_list("team-alpha", peers)
        payload["ice_servers"] = [{"urls": ["stun:turn.example.com:3478"]}]
        text = json_codec.encode(
            "ACK",
            1767222000002,
            peer_id="a1b2c3d4",
            room_id="team-alpha",
            payload=payload,
            request_id="req-1",
        )
        self.assertEqual(
            text,
            b'{"type":"ACK","peer_id":"a1b2c3d4","room_id":"team-alpha","payload":'
            b'{"room_id":"team-alpha","peers":[{"peer_id":"a1b2c3d4","display_name":'
            b'"alice","joined_at":1767222000002,"role":"sender"}],"ice_servers":'
            b'[{"urls":["stun:turn.example.com:3478"]}]},"timestamp":1767222000002,'
            b'"request_id":"req-1"}',
        )

    def test_error_frame(self) -> None:
        """ERROR carries no peer_id/room_id; details and request_id when given."""
        self.assertEqual(
            json_codec.error("ROOM_FULL", "room limit reached", 1, "max_rooms", "r"),
            b'{"type":"ERROR","payload":{"code":"ROOM_FULL","message":'
            b'"room limit reached","details":"max_rooms"},"timestamp":1,'
            b'"request_id":"r"}',
        )
        self.assertEqual(
            json_codec.error("NOT_IN_ROOM", "not in any room", 2),
            b'{"type":"ERROR","payload":{"code":"NOT_IN_ROOM","message":'
            b'"not in any room"},"timestamp":2}',
        )

    def test_welcome_and_peer_left(self) -> None:
        """The welcome ACK and PEER_LEFT (no payload) as altair sends them."""
        self.assertEqual(
            json_codec.encode("ACK", 3, peer_id="ab", payload={"message": "connected"}),
            b'{"type":"ACK","peer_id":"ab","payload":{"message":"connected"},'
            b'"timestamp":3}',
        )
        self.assertEqual(
            json_codec.encode("PEER_LEFT", 4, peer_id="ab", room_id="r"),
            b'{"type":"PEER_LEFT","peer_id":"ab","room_id":"r","timestamp":4}',
        )


class SignalDataTests(SynchronousTestCase):
    def test_json_to_binary(self) -> None:
        """§8: signal_data wrapper unwrapped, no payload is '', else compact JSON."""
        self.assertEqual(SignalData({"signal_data": "abc"}).as_text(), "abc")
        self.assertEqual(SignalData().as_text(), "")
        self.assertEqual(SignalData({"type": "offer"}).as_text(), '{"type":"offer"}')

    def test_binary_to_json(self) -> None:
        """§8: an object parses through; anything else is wrapped."""
        self.assertEqual(SignalData(text='{"a":1}').as_json(), {"a": 1})
        self.assertEqual(SignalData(text="v=0").as_json(), {"signal_data": "v=0"})
        self.assertEqual(SignalData(text="[1]").as_json(), {"signal_data": "[1]"})

    def test_round_trips(self) -> None:
        """Both directions round-trip."""
        value = {"type": "answer", "sdp": "v=0\r\n"}
        self.assertEqual(SignalData(text=SignalData(value).as_text()).as_json(), value)
        self.assertEqual(SignalData(SignalData(text="raw").as_json()).as_text(), "raw")
