"""Wire-format checks of the generated protobuf modules against the upstream schema."""

from __future__ import annotations

# Twisted's trial assertion methods carry no annotations, so under --strict every
# self.assert*() call is an untyped call.
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from twisted.trial.unittest import SynchronousTestCase

from actrix.proto import actr_pb2, common_pb2, ks_pb2, signaling_pb2, webrtc_pb2


def _descriptor(message: type[Message]) -> Descriptor:
    descriptor = message.DESCRIPTOR
    assert isinstance(descriptor, Descriptor)
    return descriptor


def _numbers(message: type[Message]) -> dict[str, int]:
    return {field.name: field.number for field in _descriptor(message).fields}


def _oneof(message: type[Message], name: str) -> dict[str, int]:
    oneof = _descriptor(message).oneofs_by_name[name]
    return {field.name: field.number for field in oneof.fields}


class FieldNumberTests(SynchronousTestCase):
    """Field numbers, labels and defaults of key messages."""

    def test_envelope(self) -> None:
        """SignalingEnvelope has header fields 1-6 and the flow oneof at 10-14."""
        descriptor = _descriptor(signaling_pb2.SignalingEnvelope)
        self.assertEqual(
            _oneof(signaling_pb2.SignalingEnvelope, "flow"),
            {
                "peer_to_server": 10,
                "actr_to_server": 11,
                "server_to_actr": 12,
                "actr_relay": 13,
                "envelope_error": 14,
            },
        )
        numbers = _numbers(signaling_pb2.SignalingEnvelope)
        self.assertEqual(
            [numbers[name] for name in ("envelope_version", "envelope_id")], [1, 2]
        )
        self.assertEqual(numbers["timestamp"], 4)
        self.assertEqual(numbers["tracestate"], 6)
        timestamp = descriptor.fields_by_name["timestamp"]
        self.assertIs(timestamp.message_type, Timestamp.DESCRIPTOR)
        self.assertTrue(timestamp.is_required)
        self.assertFalse(descriptor.fields_by_name["reply_for"].is_required)

    def test_actr_to_signaling_payload(self) -> None:
        """ActrToSignaling payload numbers follow signaling.md §2.3."""
        self.assertEqual(
            _oneof(signaling_pb2.ActrToSignaling, "payload"),
            {
                "unregister_request": 3,
                "ping": 4,
                "credential_update_request": 5,
                "discovery_request": 10,
                "route_candidates_request": 11,
                "get_service_spec_request": 12,
                "subscribe_actr_up_request": 20,
                "unsubscribe_actr_up_request": 21,
                "error": 30,
            },
        )

    def test_signaling_to_actr_payload(self) -> None:
        """SignalingToActr payload numbers follow signaling.md §2.4."""
        payload = _oneof(signaling_pb2.SignalingToActr, "payload")
        self.assertEqual(payload["register_response"], 2)
        self.assertEqual(payload["actr_up_event"], 22)
        self.assertEqual(payload["error"], 30)
        self.assertEqual(payload["actr_down_event"], 23)  # actrix addition
        self.assertEqual(len(payload), 11)

    def test_relay_payload(self) -> None:
        """ActrRelay payload spans 10-14 with the webrtc types at 10 and 11."""
        descriptor = _descriptor(signaling_pb2.ActrRelay)
        self.assertEqual(
            _oneof(signaling_pb2.ActrRelay, "payload"),
            {
                "ice_candidate": 10,
                "session_description": 11,
                "role_negotiation": 12,
                "role_assignment": 13,
                "ice_restart_request": 14,
            },
        )
        self.assertIs(
            descriptor.fields_by_name["ice_candidate"].message_type,
            webrtc_pb2.IceCandidate.DESCRIPTOR,
        )

    def test_register_ok(self) -> None:
        """RegisterOk carries fields 1-5 with the documented labels."""
        descriptor = _descriptor(actr_pb2.RegisterResponse.RegisterOk)
        self.assertEqual(
            _numbers(actr_pb2.RegisterResponse.RegisterOk),
            {
                "actr_id": 1,
                "credential": 2,
                "psk": 3,
                "credential_expires_at": 4,
                "signaling_heartbeat_interval_secs": 5,
            },
        )
        required = {f.name for f in descriptor.fields if f.is_required}
        self.assertEqual(
            required, {"actr_id", "credential", "signaling_heartbeat_interval_secs"}
        )

    def test_aid_credential(self) -> None:
        """AIdCredential is bytes 1 and uint32 2, both required."""
        fields = _descriptor(actr_pb2.AIdCredential).fields_by_name
        token, key_id = fields["encrypted_token"], fields["token_key_id"]
        self.assertEqual((token.number, token.type), (1, FieldDescriptor.TYPE_BYTES))
        self.assertEqual((key_id.number, key_id.type), (2, FieldDescriptor.TYPE_UINT32))
        self.assertTrue(token.is_required and key_id.is_required)

    def test_route_candidates_ok(self) -> None:
        """RouteCandidatesOk.ws_address_map is repeated WsAddressEntry field 5."""
        message = actr_pb2.RouteCandidatesResponse.RouteCandidatesOk
        ws_map = _descriptor(message).fields_by_name["ws_address_map"]
        self.assertEqual(ws_map.number, 5)
        self.assertTrue(ws_map.is_repeated)
        self.assertIs(ws_map.message_type, actr_pb2.WsAddressEntry.DESCRIPTOR)

    def test_declared_defaults(self) -> None:
        """Unset limit reads 64; unset is_exact_match and remote_fixed read false."""
        request = actr_pb2.DiscoveryRequest()
        self.assertEqual(request.limit, 64)
        self.assertFalse(request.HasField("limit"))
        self.assertFalse(actr_pb2.CandidateCompatibilityInfo().is_exact_match)
        self.assertFalse(actr_pb2.RoleAssignment().remote_fixed)
        limit = _descriptor(actr_pb2.DiscoveryRequest).fields_by_name["limit"]
        self.assertTrue(limit.has_default_value)

    def test_nested_empty_messages(self) -> None:
        """The success arms of the unregister and (un)subscribe responses are empty."""
        messages: list[type[Message]] = [
            actr_pb2.UnregisterResponse.UnregisterOk,
            actr_pb2.SubscribeActrUpResponse.SubscribeOk,
            actr_pb2.UnsubscribeActrUpResponse.UnsubscribeOk,
        ]
        for message in messages:
            descriptor = _descriptor(message)
            with self.subTest(message=descriptor.full_name):
                self.assertEqual(len(descriptor.fields), 0)

    def test_ks_messages(self) -> None:
        """KS requests embed supervisor.v1.NonceCredential at the documented numbers."""
        self.assertEqual(ks_pb2.DESCRIPTOR.package, "ks.v1")
        request = _descriptor(ks_pb2.GetSecretKeyRequest).fields_by_name
        self.assertEqual(request["key_id"].number, 1)
        self.assertEqual(request["credential"].number, 2)
        self.assertIs(
            request["credential"].message_type, common_pb2.NonceCredential.DESCRIPTOR
        )
        self.assertEqual(
            _descriptor(common_pb2.NonceCredential).full_name,
            "supervisor.v1.NonceCredential",
        )
        method = ks_pb2.DESCRIPTOR.services_by_name["KeyServer"].methods_by_name
        self.assertEqual(set(method), {"GenerateKey", "GetSecretKey", "HealthCheck"})


class EncodingTests(SynchronousTestCase):
    """Hand-computed byte encodings."""

    def test_realm(self) -> None:
        """Realm(realm_id=1) is tag 0x08 followed by varint 1."""
        self.assertEqual(actr_pb2.Realm(realm_id=1).SerializeToString(), b"\x08\x01")

    def test_actr_id(self) -> None:
        """A small ActrId encodes to the hand-assembled bytes and parses back."""
        actr_id = actr_pb2.ActrId(
            realm=actr_pb2.Realm(realm_id=300),
            serial_number=1,
            type=actr_pb2.ActrType(manufacturer="a", name="b"),
        )
        # 0a 03 | 08 ac 02 : realm{300}; 10 01 : serial 1;
        # 1a 06 | 0a 01 61 12 01 62 : type{"a","b"}
        expected = bytes.fromhex("0a0308ac0210011a060a0161120162")
        self.assertEqual(actr_id.SerializeToString(), expected)
        self.assertEqual(actr_pb2.ActrId.FromString(expected), actr_id)

    def test_envelope_error_flow(self) -> None:
        """An envelope_error envelope uses field 14 (tag 0x72)."""
        envelope = signaling_pb2.SignalingEnvelope(
            envelope_version=1,
            envelope_id="x",
            timestamp=Timestamp(seconds=1),
            envelope_error=actr_pb2.ErrorResponse(code=429, message=""),
        )
        expected = bytes.fromhex("080112017822020801720508ad031200")
        self.assertEqual(envelope.SerializeToString(), expected)

    def test_missing_required_fields_parse(self) -> None:
        """Parsing tolerates missing required fields, like prost."""
        parsed = signaling_pb2.SignalingEnvelope.FromString(b"")
        self.assertFalse(parsed.IsInitialized())
        self.assertEqual(parsed.WhichOneof("flow"), None)
