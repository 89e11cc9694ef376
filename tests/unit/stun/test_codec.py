"""The STUN/TURN codec: RFC 5769 vectors, round trips, and only DecodeError on junk."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from actrix.stun import codec

# RFC 5769 §2.1-2.4 sample messages.
SAMPLE_REQUEST = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69"
    "656e74002400046e0001ff80290008932ff9b151263b36000600096576746a3a6836765920"
    "2020000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf"
)
SAMPLE_IPV4_RESPONSE = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f722000"
    "2000080001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d78028"
    "0004c07d4c96"
)
SAMPLE_IPV6_RESPONSE = bytes.fromhex(
    "010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f722000"
    "2000140002a1470113a9faa5d3f179bc25f4b5bed2b9d900080014a382954e4be67bf11784"
    "c97c8292c275bfe3ed4180280004c8fb0b4c"
)
SAMPLE_LONG_TERM = bytes.fromhex(
    "000100602112a44278ad3433c6ad72c029da412e00060012e3839ee38388e383aae38383e3"
    "82afe382b900000015001c662f2f3439396b39353464364f4c33346f4c3946535476793634"
    "73410014000b6578616d706c652e6f72670000080014f67024656dd64a3e02b8e0712e85c9"
    "a28ca89666"
)
SHORT_TERM_PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"
TXID = bytes.fromhex("b7e7a701bc34d686fa87dfae")


class Rfc5769Tests(SynchronousTestCase):
    def test_sample_request_integrity_and_fingerprint(self) -> None:
        """The sample request decodes (FINGERPRINT checked) and its MI verifies."""
        message = codec.decode(SAMPLE_REQUEST)
        self.assertEqual(message.msg_type, codec.BINDING_REQUEST)
        self.assertTrue(message.fingerprint)
        self.assertEqual(message.attrs[codec.USERNAME], b"evtj:h6vY")
        self.assertEqual(message.attrs[codec.SOFTWARE], b"STUN test client")
        self.assertTrue(codec.check_integrity(message, SHORT_TERM_PASSWORD))
        self.assertFalse(codec.check_integrity(message, b"wrong"))

    def test_sample_ipv4_response(self) -> None:
        """The IPv4 sample response yields 192.0.2.1:32853 and verifies."""
        message = codec.decode(SAMPLE_IPV4_RESPONSE)
        self.assertTrue(codec.check_integrity(message, SHORT_TERM_PASSWORD))
        self.assertEqual(
            codec.decode_xor_address(
                message.attrs[codec.XOR_MAPPED_ADDRESS], message.transaction_id
            ),
            ("192.0.2.1", 32853),
        )

    def test_sample_ipv6_response(self) -> None:
        """The IPv6 sample response yields its address and verifies."""
        message = codec.decode(SAMPLE_IPV6_RESPONSE)
        self.assertTrue(codec.check_integrity(message, SHORT_TERM_PASSWORD))
        self.assertEqual(
            codec.decode_xor_address(
                message.attrs[codec.XOR_MAPPED_ADDRESS], message.transaction_id
            ),
            ("2001:db8:1234:5678:11:2233:4455:6677", 32853),
        )

    def test_sample_long_term_integrity(self) -> None:
        """The long-term sample verifies with MD5(user:realm:password)."""
        message = codec.decode(SAMPLE_LONG_TERM)
        username = codec.decode_text(message.attrs[codec.USERNAME])
        self.assertEqual(username, "\u30de\u30c8\u30ea\u30c3\u30af\u30b9")
        self.assertEqual(message.attrs[codec.REALM], b"example.org")
        self.assertEqual(message.attrs[codec.NONCE], b"f//499k954d6OL34oL9FSTvy64sA")
        key = codec.long_term_key(username, "example.org", "TheMatrIX")
        self.assertTrue(codec.check_integrity(message, key))

    def test_encoder_reproduces_sample_long_term_request(self) -> None:
        """Our encoder yields the RFC's long-term sample byte for byte (MI included)."""
        username = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"
        encoded = codec.encode(
            codec.BINDING_REQUEST,
            bytes.fromhex("78ad3433c6ad72c029da412e"),
            [
                (codec.USERNAME, username.encode()),
                (codec.NONCE, b"f//499k954d6OL34oL9FSTvy64sA"),
                (codec.REALM, b"example.org"),
            ],
            key=codec.long_term_key(username, "example.org", "TheMatrIX"),
        )
        self.assertEqual(encoded, SAMPLE_LONG_TERM)

    def test_fingerprint_values_match_samples(self) -> None:
        """Our CRC-32 computation gives each sample's FINGERPRINT value."""
        for sample in (SAMPLE_REQUEST, SAMPLE_IPV4_RESPONSE, SAMPLE_IPV6_RESPONSE):
            expected = int.from_bytes(sample[-4:], "big")
            value = codec.fingerprint_value(sample[:-8], len(sample) - 20)
            self.assertEqual(value, expected)

    def test_encoded_fingerprint_and_integrity_verify(self) -> None:
        """A message we encode with MI and FINGERPRINT decodes and verifies."""
        encoded = codec.encode(
            codec.BINDING_SUCCESS,
            TXID,
            [(codec.SOFTWARE, b"test vector")],
            key=SHORT_TERM_PASSWORD,
            fingerprint=True,
        )
        message = codec.decode(encoded)
        self.assertTrue(message.fingerprint)
        self.assertTrue(codec.check_integrity(message, SHORT_TERM_PASSWORD))

    def test_bad_fingerprint_is_rejected(self) -> None:
        """A flipped FINGERPRINT bit makes the message undecodable."""
        damaged = SAMPLE_REQUEST[:-1] + bytes([SAMPLE_REQUEST[-1] ^ 1])
        self.assertRaises(codec.DecodeError, codec.decode, damaged)

    def test_bad_integrity_fails_check(self) -> None:
        """A message whose MI bytes are altered does not verify."""
        body = bytearray(SAMPLE_LONG_TERM)
        body[-1] ^= 0xFF
        message = codec.decode(bytes(body))
        key = codec.long_term_key(
            "\u30de\u30c8\u30ea\u30c3\u30af\u30b9", "example.org", "TheMatrIX"
        )
        self.assertFalse(codec.check_integrity(message, key))


class FramingTests(SynchronousTestCase):
    def test_wrong_magic_cookie(self) -> None:
        """A header without the magic cookie is rejected."""
        data = bytearray(codec.encode(codec.BINDING_REQUEST, TXID, []))
        data[4] ^= 1
        self.assertRaises(codec.DecodeError, codec.decode, bytes(data))

    def test_truncated_and_oversize(self) -> None:
        """Too short, a length that disagrees with the datagram, or odd lengths fail."""
        good = codec.encode(codec.BINDING_REQUEST, TXID, [(codec.SOFTWARE, b"abc")])
        for bad in (good[:19], good[:-1], good + b"\x00\x00\x00\x00", b""):
            self.assertRaises(codec.DecodeError, codec.decode, bad)

    def test_attribute_after_integrity_is_ignored(self) -> None:
        """Attributes after MESSAGE-INTEGRITY (other than FINGERPRINT) are ignored."""
        data = codec.encode(codec.BINDING_REQUEST, TXID, [], key=b"k")
        trailer = b"\x80\x22\x00\x04abcd"
        data = data[:2] + (len(data) - 20 + 8).to_bytes(2, "big") + data[4:] + trailer
        message = codec.decode(data)
        self.assertNotIn(codec.SOFTWARE, message.attrs)
        self.assertTrue(codec.check_integrity(message, b"k"))

    def test_unknown_required_attributes_are_listed(self) -> None:
        """Comprehension-required attributes we do not know end up in ``unknown``."""
        data = codec.encode(
            codec.BINDING_REQUEST, TXID, [(0x7777, b"x"), (0x8777, b"y")]
        )
        self.assertEqual(codec.decode(data).unknown, [0x7777])

    def test_channel_data_framing(self) -> None:
        """ChannelData pads on streams, frame_size reports padded sizes."""
        frame = codec.encode_channel_data(0x4001, b"hello", pad=True)
        self.assertEqual(len(frame), 12)
        self.assertEqual(codec.frame_size(frame), 12)
        self.assertEqual(codec.decode_channel_data(frame), (0x4001, b"hello"))
        self.assertEqual(codec.frame_size(b"\x40\x01"), 0)
        self.assertRaises(codec.DecodeError, codec.frame_size, b"\x80\x00\x00\x00")
        self.assertRaises(codec.DecodeError, codec.decode_channel_data, frame[:6])
        self.assertRaises(
            codec.DecodeError, codec.decode_channel_data, b"\x3f\xff\x00\x00"
        )

    def test_method_and_class(self) -> None:
        """Message types split into method and class both ways."""
        for method in (1, 3, 4, 6, 7, 8, 9, 0xFFF):
            for klass in (0, 0x10, 0x100, 0x110):
                data = codec.encode(codec.message_type(method, klass), TXID, [])
                message = codec.decode(data)
                self.assertEqual((message.method, message.msg_class), (method, klass))


class ParseBoundTests(SynchronousTestCase):
    """Defect 8: the cost of decoding one message is bounded."""

    @staticmethod
    def _with_attributes(count: int) -> bytes:
        body = codec.encode(codec.BINDING_REQUEST, TXID, [(0x8030, b"")] * count)
        return body

    def test_attribute_cap(self) -> None:
        """MAX_ATTRIBUTES attributes decode; one more is a DecodeError."""
        message = codec.decode(self._with_attributes(codec.MAX_ATTRIBUTES))
        self.assertIn(0x8030, message.attrs)
        with self.assertRaises(codec.DecodeError):
            codec.decode(self._with_attributes(codec.MAX_ATTRIBUTES + 1))

    def test_sixteen_thousand_attributes_stop_at_the_cap(self) -> None:
        """The issue's 64 KB Binding with 16 000 attributes stops at the cap.

        "too many attributes" is raised only when the budget runs out, i.e.
        after MAX_ATTRIBUTES attribute headers, not 16 000.
        """
        flood = self._with_attributes(16_000)
        self.assertEqual(len(flood), 20 + 4 * 16_000)
        with self.assertRaisesRegex(codec.DecodeError, "too many attributes"):
            codec.decode(flood)

    def test_repeated_peers_count_too(self) -> None:
        """Repeated XOR-PEER-ADDRESS attributes count against the cap."""
        peer = codec.encode_xor_address("203.0.113.1", 1, TXID)
        many = codec.encode(
            codec.message_type(codec.METHOD_CREATE_PERMISSION, codec.CLASS_REQUEST),
            TXID,
            [(codec.XOR_PEER_ADDRESS, peer)] * (codec.MAX_ATTRIBUTES + 1),
        )
        with self.assertRaises(codec.DecodeError):
            codec.decode(many)

    def test_is_request(self) -> None:
        """The class bits are read without decoding."""
        self.assertTrue(codec.is_request(codec.encode(codec.BINDING_REQUEST, TXID, [])))
        for msg_type in (
            codec.SEND_INDICATION,
            codec.BINDING_SUCCESS,
            codec.BINDING_ERROR,
        ):
            self.assertFalse(codec.is_request(codec.encode(msg_type, TXID, [])))
        self.assertFalse(codec.is_request(b"\x00"))


class AttributeTests(SynchronousTestCase):
    def test_addresses_round_trip(self) -> None:
        """XOR and plain addresses round-trip for IPv4 and IPv6."""
        for ip in ("127.0.0.1", "203.0.113.9", "::1", "2001:db8::5"):
            xor = codec.encode_xor_address(ip, 40000, TXID)
            self.assertEqual(codec.decode_xor_address(xor, TXID), (ip, 40000))
            plain = codec.encode_address(ip, 3478)
            self.assertEqual(codec.decode_address(plain), (ip, 3478))

    def test_scalar_attributes_round_trip(self) -> None:
        """LIFETIME, CHANNEL-NUMBER, transports, families, EVEN-PORT round-trip."""
        self.assertEqual(codec.decode_u32(codec.encode_u32(600)), 600)
        self.assertEqual(
            codec.decode_channel_number(codec.encode_channel_number(0x4ABC)), 0x4ABC
        )
        self.assertEqual(
            codec.decode_requested_transport(codec.encode_requested_transport()), 17
        )
        self.assertEqual(codec.decode_address_family(codec.encode_address_family(2)), 2)
        self.assertTrue(codec.decode_even_port(codec.encode_even_port(True)))
        self.assertFalse(codec.decode_even_port(codec.encode_even_port(False)))
        self.assertEqual(
            codec.decode_unknown_attributes(codec.encode_unknown_attributes([1, 0x1A])),
            [1, 0x1A],
        )
        self.assertEqual(
            codec.decode_error_code(codec.encode_error_code(438)), (438, "Stale Nonce")
        )

    def test_malformed_attribute_values(self) -> None:
        """Wrong sizes and families raise DecodeError."""
        for fn, value in (
            (codec.decode_address, b"\x00\x03\x00\x01\x01\x02\x03\x04"),
            (codec.decode_address, b"\x00\x01"),
            (codec.decode_u32, b"\x00"),
            (codec.decode_channel_number, b"\x40"),
            (codec.decode_requested_transport, b""),
            (codec.decode_address_family, b"\x01"),
            (codec.decode_even_port, b""),
            (codec.decode_unknown_attributes, b"\x00"),
            (codec.decode_error_code, b"\x00\x00\x09\x99"),
            (codec.decode_text, b"\xff\xfe"),
        ):
            self.assertRaises(codec.DecodeError, fn, value)


_attrs = st.lists(
    st.tuples(
        st.integers(0, 0xFFFF).filter(lambda t: t not in (8, 0x8028)),
        st.binary(max_size=40),
    ),
    max_size=6,
)


class PropertyTests(SynchronousTestCase):
    @given(
        msg_type=st.integers(0, 0x3FFF),
        txid=st.binary(min_size=12, max_size=12),
        attrs=_attrs,
        key=st.one_of(st.none(), st.binary(min_size=1, max_size=20)),
        fingerprint=st.booleans(),
    )
    def test_round_trip(
        self,
        msg_type: int,
        txid: bytes,
        attrs: list[tuple[int, bytes]],
        key: bytes | None,
        fingerprint: bool,
    ) -> None:
        """Any encoded message decodes to the same type, id and first attributes."""
        data = codec.encode(msg_type, txid, attrs, key=key, fingerprint=fingerprint)
        message = codec.decode(data)
        self.assertEqual((message.msg_type, message.transaction_id), (msg_type, txid))
        first: dict[int, bytes] = {}
        for attr_type, value in attrs:
            first.setdefault(attr_type, value)
        for attr_type, value in first.items():
            self.assertEqual(message.attrs[attr_type], value)
        self.assertEqual(message.fingerprint, fingerprint)
        if key is not None:
            self.assertTrue(codec.check_integrity(message, key))

    @given(st.binary(max_size=200))
    def test_decode_raises_only_decode_error(self, data: bytes) -> None:
        """Decoding arbitrary bytes either works or raises DecodeError."""
        try:
            message = codec.decode(data)
        except codec.DecodeError:
            return
        for attr_type, value in message.attrs.items():
            for fn in (codec.decode_xor_address, codec.decode_address):
                try:
                    if fn is codec.decode_address:
                        codec.decode_address(value)
                    else:
                        codec.decode_xor_address(value, message.transaction_id)
                except codec.DecodeError:
                    pass
            del attr_type

    @given(st.binary(min_size=4, max_size=40).map(lambda b: b"\x21\x12\xa4\x42" + b))
    def test_decode_with_cookie_raises_only_decode_error(self, tail: bytes) -> None:
        """Valid cookies with random lengths and bodies only raise DecodeError."""
        data = b"\x00\x01" + len(tail[4:]).to_bytes(2, "big") + tail
        data = data[:4] + b"\x21\x12\xa4\x42" + bytes(12) + tail[4:]
        with contextlib.suppress(codec.DecodeError):
            codec.decode(data)

    @given(st.binary(max_size=64))
    def test_channel_and_frame_raise_only_decode_error(self, data: bytes) -> None:
        """ChannelData and frame-size parsing raise only DecodeError."""
        for fn in (codec.decode_channel_data, codec.frame_size):
            with contextlib.suppress(codec.DecodeError):
                fn(data)
