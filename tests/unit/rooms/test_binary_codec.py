"""The binary session codec (rooms.md §3): header, variants, fields, Struct."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from actrix.rooms import binary_codec as bc

UUID = uuid.UUID("550e8400-e29b-41d4-a716-446655440000").bytes
TOKEN_B = (
    "rt1.eyJleHAiOjE3NjcyMjU2MDAsImtpZCI6MSwibm9uY2UiOiJaeDhLcTJMbVAwYUI3Y0RlIiwicmVh"
    "bG1faWQiOjEwMSwicm9sZSI6ImFueSIsInJvb20iOiJsb2JieSJ9.rzGXsC0UI4_3rbLQPY22bC1sH3l8"
    "DVBDQVbdIPIedKQ"
)
CONNECT_VECTOR = (
    bytes.fromhex("aa01550e8400e29b41d4a7164466554400000200e1")
    + ('{"Connect":{"client_id":"cam-1","auth_token":"' + TOKEN_B + '"}}').encode()
)

# One valid request per client type.
REQUESTS: dict[int, dict[str, Any]] = {
    bc.CONNECT: {"client_id": "c", "auth_token": "t", "capabilities": ["room_events"]},
    bc.DISCONNECT: {"client_id": "c", "reason": None},
    bc.HEARTBEAT: {"timestamp": 1},
    bc.SIGNAL_OFFER: {"target_client_id": "t", "signal_data": "s"},
    bc.SIGNAL_ANSWER: {"target_client_id": "t", "signal_data": "s", "request_id": "r"},
    bc.SIGNAL_ICE_CANDIDATE: {"target_client_id": "t", "signal_data": "s"},
    bc.REGISTER: {"version": "1.0.0", "client_id": "c", "auth_token": "t"},
    bc.UNREGISTER: {"version": "1.0.0", "client_id": "c", "auth_token": "t"},
    bc.ROOM_CREATE: {
        "version": "1.0.0",
        "client_id": "c",
        "auth_token": "t",
        "role": "s",
    },
    bc.ROOM_JOIN: {
        "version": "1.0.0",
        "client_id": "c",
        "auth_token": "t",
        "room_id": "r",
        "role": "receiver",
    },
    bc.ROOM_LEAVE: {
        "version": "0.9",
        "client_id": "c",
        "auth_token": "t",
        "room_id": "r",
    },
    bc.TIME_SYNC: {"t1": 1.5},
}


def _error(data: bytes) -> tuple[int, str]:
    try:
        bc.decode(data)
    except bc.BinaryError as e:
        return e.error_code, e.message
    raise AssertionError("decoded")


class HeaderTests(SynchronousTestCase):
    def test_connect_vector(self) -> None:
        """§3.3: the 246-byte CONNECT frame decodes to its fields."""
        self.assertEqual(len(CONNECT_VECTOR), 246)
        request = bc.decode(CONNECT_VECTOR)
        self.assertEqual(request.header, bc.Header(bc.CONNECT, UUID, bc.PAYLOAD_JSON))
        self.assertEqual(request.fields, {"client_id": "cam-1", "auth_token": TOKEN_B})
        again = bc.encode(bc.CONNECT, UUID, bc.PAYLOAD_JSON, request.fields)
        self.assertEqual(again, CONNECT_VECTOR)

    def test_framing_faults(self) -> None:
        """Each §3.1 framing fault has its code and reason."""
        good = CONNECT_VECTOR
        cases = {
            b"": (2, "Malformed message: frame too short"),
            good[:20]: (2, "Malformed message: frame too short"),
            b"\x55" + good[1:]: (2, "Malformed message: invalid start byte"),
            good[:1] + b"\x07" + good[2:]: (
                2,
                "Malformed message: invalid message type 0x07",
            ),
            good[:18] + b"\x09" + good[19:]: (
                2,
                "Malformed message: invalid payload type 0x09",
            ),
            good[:19] + b"\x00\x00": (2, "Malformed message: empty payload"),
            good + b"x": (2, "Malformed message: payload length mismatch"),
            good[:-1]: (2, "Malformed message: payload length mismatch"),
            good[:1] + b"\x02" + good[2:]: (
                2,
                "Malformed message: unexpected message type 0x02",
            ),
            good[:1] + b"\xff" + good[2:]: (
                2,
                "Malformed message: unexpected message type 0xff",
            ),
        }
        for data, expected in cases.items():
            self.assertEqual(_error(data), expected, data[:22].hex())

    def test_unsupported_payload_types(self) -> None:
        """BINARY, TEXT and CBOR payloads answer ERROR 6."""
        for payload_type in (bc.PAYLOAD_BINARY, bc.PAYLOAD_TEXT, bc.PAYLOAD_CBOR):
            data = CONNECT_VECTOR[:18] + bytes([payload_type]) + CONNECT_VECTOR[19:]
            self.assertEqual(_error(data), (6, "Unsupported payload type"))

    def test_oversize_payload_refused_on_encode(self) -> None:
        """A payload over 65 535 bytes cannot be encoded."""
        with self.assertRaises(bc.BinaryError):
            bc.encode(
                bc.SIGNAL_OFFER, UUID, bc.PAYLOAD_JSON, {"signal_data": "x" * 70000}
            )

    @given(st.binary(max_size=120))
    def test_any_bytes_raise_only_binary_error(self, data: bytes) -> None:
        """Arbitrary bytes decode or raise BinaryError."""
        for candidate in (data, b"\xaa\x01" + UUID + b"\x02" + data, _framed(data, 4)):
            with contextlib.suppress(bc.BinaryError):
                bc.decode(candidate)

    @given(st.binary(max_size=200), st.sampled_from(sorted(bc.CLIENT_TYPES)))
    def test_any_protobuf_body_raises_only_binary_error(
        self, body: bytes, msg_type: int
    ) -> None:
        """Arbitrary PROTOBUF/JSON bodies under a valid header decode or refuse."""
        for payload_type in (bc.PAYLOAD_PROTOBUF, bc.PAYLOAD_JSON):
            with contextlib.suppress(bc.BinaryError):
                bc.decode(_framed(body, payload_type, msg_type))


def _framed(body: bytes, payload_type: int, msg_type: int = bc.HEARTBEAT) -> bytes:
    body = body or b"\x00"
    return bc.HEADER.pack(bc.START, msg_type, UUID, payload_type, len(body)) + body


class VariantTests(SynchronousTestCase):
    def test_every_client_type_decodes_tagged_and_bare(self) -> None:
        """Each client type decodes from its tagged variant and from bare fields."""
        for msg_type, fields in REQUESTS.items():
            for payload_type in bc.SERVED_PAYLOADS:
                frame = bc.encode(msg_type, UUID, payload_type, fields)
                self.assertEqual(bc.decode(frame).fields, fields, hex(msg_type))
            import json

            bare = json.dumps(fields).encode()
            self.assertEqual(
                bc.decode(_framed(bare, bc.PAYLOAD_JSON, msg_type)).fields, fields
            )

    def test_missing_required_fields(self) -> None:
        """Each required field, absent or mistyped, names itself."""
        for msg_type, fields in REQUESTS.items():
            for name in [n for n in fields if n in _required(msg_type)]:
                for broken in (
                    {k: v for k, v in fields.items() if k != name},
                    {**fields, name: [1]},
                ):
                    frame = bc.encode(msg_type, UUID, bc.PAYLOAD_JSON, broken)
                    self.assertEqual(
                        _error(frame), (2, f"Missing or invalid '{name}' field")
                    )

    def test_variant_mismatch_and_non_object(self) -> None:
        """Another type's variant, or a non-object payload, is refused."""
        frame = _framed(b'{"Heartbeat":{"timestamp":1}}', bc.PAYLOAD_JSON, bc.CONNECT)
        self.assertEqual(
            _error(frame), (2, "Malformed message: payload does not match message type")
        )
        frame = _framed(b"[1]", bc.PAYLOAD_JSON)
        self.assertEqual(
            _error(frame), (2, "Malformed message: payload is not an object")
        )
        frame = _framed(b"{", bc.PAYLOAD_JSON)
        self.assertEqual(_error(frame), (2, "Malformed message: invalid JSON payload"))

    def test_newer_version_refused(self) -> None:
        """A version above 1.0.0 (byte-wise) is refused."""
        fields = {**REQUESTS[bc.REGISTER], "version": "1.0.1"}
        frame = bc.encode(bc.REGISTER, UUID, bc.PAYLOAD_JSON, fields)
        self.assertEqual(_error(frame), (2, "Unsupported version: newer than server"))

    def test_protobuf_vector(self) -> None:
        """§3.2: the 41-byte Struct of a Heartbeat."""
        body = bc.to_struct_bytes({"Heartbeat": {"timestamp": 1767222000000}})
        self.assertEqual(
            body.hex(),
            "0a270a09486561727462656174121a2a180a160a0974696d657374616d70"
            "1209110000983b6ab77942",
        )
        request = bc.decode(_framed(body, bc.PAYLOAD_PROTOBUF))
        self.assertEqual(request.fields, {"timestamp": 1767222000000})

    def test_error_fields(self) -> None:
        """The Error variant: SM's fields then code and details."""
        self.assertEqual(
            list(bc.error_fields(5, "Target client not found", "PEER_NOT_FOUND", None)),
            ["error_code", "error_message", "code", "details"],
        )


def _required(msg_type: int) -> set[str]:
    return {name for name, _ in bc._REQUIRED[msg_type]}
