"""RFC 8489 credential pieces: the Appendix B vector, MI-SHA256, algorithms, cookie."""

from __future__ import annotations

import base64
import contextlib
import hmac

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from actrix.stun import codec, credentials

MATRIX = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"
TXID = bytes.fromhex("78ad3433c6ad72c029da412e")
B1_NONCE = b"obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA"

# RFC 8489 Appendix B.1 as corrected by errata 6268 (the published dump has
# a wrong length and USERHASH): USERHASH, NONCE, REALM, PASSWORD-ALGORITHM
# (SHA-256), MESSAGE-INTEGRITY-SHA256. Password "TheMatrIX" after OpaqueString.
SAMPLE_B1 = bytes.fromhex(
    "00010090"
    "2112a442"
    "78ad3433c6ad72c029da412e"
    "001e0020"
    "4a3cf38fef6992bda952c6780417da0f"
    "24819415569e60b205c46e41407f1704"
    "00150029"
    "6f624d61744a6f7332414141 43662f2f3439396b"
    "39353464364f4c33346f4c3946535476793634734100 0000"
    "0014000b"
    "6578616d706c652e6f726700"
    "001d0004"
    "00020000"
    "001c0020"
    "b5c7bf005b6c52a21c51c5e892f81924"
    "136296cb927c431493092 78cc6518e65".replace(" ", "")
)


class AppendixBTests(SynchronousTestCase):
    def test_sample_userhash(self) -> None:
        """USERHASH of the sample is SHA-256(username ":" realm)."""
        message = codec.decode(SAMPLE_B1)
        self.assertEqual(
            message.attrs[codec.USERHASH], credentials.userhash(MATRIX, "example.org")
        )
        self.assertEqual(message.attrs[codec.NONCE], B1_NONCE)

    def test_sample_sha256_integrity(self) -> None:
        """The sample's MESSAGE-INTEGRITY-SHA256 verifies with the SHA-256 key only."""
        message = codec.decode(SAMPLE_B1)
        self.assertEqual(message.integrity_offset, -1)
        self.assertEqual(message.integrity256_offset, len(SAMPLE_B1) - 36)
        key = credentials.long_term_key_sha256(MATRIX, "example.org", "TheMatrIX")
        self.assertTrue(credentials.check_integrity_sha256(message, key))
        md5 = codec.long_term_key(MATRIX, "example.org", "TheMatrIX")
        self.assertFalse(credentials.check_integrity_sha256(message, md5))
        self.assertFalse(codec.check_integrity(message, key))
        self.assertEqual(
            credentials.decode_password_algorithm(
                message.attrs[codec.PASSWORD_ALGORITHM]
            ),
            codec.ALGORITHM_SHA256,
        )

    def test_encoder_reproduces_sample(self) -> None:
        """Our encoder yields the corrected Appendix B.1 request byte for byte."""
        encoded = codec.encode(
            codec.BINDING_REQUEST,
            TXID,
            [
                (codec.USERHASH, credentials.userhash(MATRIX, "example.org")),
                (codec.NONCE, B1_NONCE),
                (codec.REALM, b"example.org"),
                (
                    codec.PASSWORD_ALGORITHM,
                    credentials.encode_password_algorithm(codec.ALGORITHM_SHA256),
                ),
            ],
            key=credentials.long_term_key_sha256(MATRIX, "example.org", "TheMatrIX"),
            sha256=True,
        )
        self.assertEqual(encoded, SAMPLE_B1)

    def test_altered_sample_fails(self) -> None:
        """One flipped bit in the HMAC makes the check fail."""
        damaged = bytearray(SAMPLE_B1)
        damaged[-1] ^= 1
        message = codec.decode(bytes(damaged))
        key = credentials.long_term_key_sha256(MATRIX, "example.org", "TheMatrIX")
        self.assertFalse(credentials.check_integrity_sha256(message, key))


class IntegritySha256Tests(SynchronousTestCase):
    def _signed(self, key: bytes) -> bytes:
        return codec.encode(
            codec.BINDING_SUCCESS,
            TXID,
            [(codec.SOFTWARE, b"x")],
            key=key,
            sha256=True,
            fingerprint=True,
        )

    def test_truncated_value_verifies(self) -> None:
        """A 16-byte MESSAGE-INTEGRITY-SHA256 (the minimum) is checked on its prefix."""
        key = b"k" * 32
        header = codec.encode(codec.BINDING_REQUEST, TXID, [])
        header = header[:2] + (20).to_bytes(2, "big") + header[4:]
        mac = hmac.digest(key, header, "sha256")
        attr = (codec.MESSAGE_INTEGRITY_SHA256).to_bytes(2, "big") + b"\x00\x10"
        message = codec.decode(header + attr + mac[:16])
        self.assertTrue(credentials.check_integrity_sha256(message, key))
        message = codec.decode(header + attr + mac[16:])
        self.assertFalse(credentials.check_integrity_sha256(message, key))

    def test_bad_lengths_are_malformed(self) -> None:
        """MESSAGE-INTEGRITY-SHA256 of 12 or 18 bytes is a decode error."""
        for size in (12, 18, 36):
            value = b"\x00" * size
            data = codec.encode(
                codec.BINDING_REQUEST,
                TXID,
                [(codec.MESSAGE_INTEGRITY_SHA256, value)],
            )
            self.assertRaises(codec.DecodeError, codec.decode, data)

    def test_attributes_after_it_are_ignored(self) -> None:
        """Only FINGERPRINT counts after MESSAGE-INTEGRITY-SHA256; MI may precede it."""
        key = b"k" * 16
        signed = codec.encode(
            codec.BINDING_REQUEST,
            TXID,
            [(codec.USERNAME, b"u")],
            key=key,
            sha256=True,
        )
        trailing = codec.encode(codec.BINDING_REQUEST, TXID, [(codec.REALM, b"r")])
        data = bytearray(signed + trailing[20:])
        data[2:4] = (len(data) - 20).to_bytes(2, "big")
        message = codec.decode(bytes(data))
        self.assertNotIn(codec.REALM, message.attrs)
        self.assertTrue(credentials.check_integrity_sha256(message, key))

    def test_fingerprint_after_it(self) -> None:
        """A signed message with FINGERPRINT decodes and verifies."""
        message = codec.decode(self._signed(b"secret"))
        self.assertTrue(message.fingerprint)
        self.assertTrue(credentials.check_integrity_sha256(message, b"secret"))
        self.assertFalse(credentials.check_integrity_sha256(message, b"other"))

    def test_unknown_list_excludes_the_new_attributes(self) -> None:
        """USERHASH, PASSWORD-ALGORITHM and MI-SHA256 are known, not 420 material."""
        data = codec.encode(
            codec.BINDING_REQUEST,
            TXID,
            [
                (codec.USERHASH, b"\x00" * 32),
                (codec.PASSWORD_ALGORITHM, b"\x00\x01\x00\x00"),
                (0x0033, b"??"),
            ],
        )
        self.assertEqual(codec.decode(data).unknown, [0x0033])


class AlgorithmListTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """PASSWORD-ALGORITHMS lists round-trip in order."""
        value = credentials.encode_password_algorithms([2, 1])
        self.assertEqual(value, bytes.fromhex("0002000000010000"))
        self.assertEqual(credentials.decode_password_algorithms(value), [2, 1])

    def test_parameters_are_skipped_with_bounds(self) -> None:
        """Entries with parameters are skipped by their padded length; overruns fail."""
        value = (
            bytes.fromhex("00030005") + b"abcde\x00\x00\x00" + bytes.fromhex("00010000")
        )
        self.assertEqual(credentials.decode_password_algorithms(value), [3, 1])
        self.assertRaises(
            codec.DecodeError,
            credentials.decode_password_algorithms,
            bytes.fromhex("00030009") + b"abcd",
        )
        self.assertRaises(
            codec.DecodeError, credentials.decode_password_algorithms, b"\x00\x01"
        )
        self.assertRaises(
            codec.DecodeError, credentials.decode_password_algorithm, b"\x00\x02"
        )
        self.assertRaises(
            codec.DecodeError,
            credentials.decode_password_algorithm,
            bytes.fromhex("00020004"),
        )

    @given(st.binary(max_size=64))
    def test_decoders_raise_only_decode_error(self, data: bytes) -> None:
        """Any bytes either decode or raise DecodeError."""
        for decoder in (
            credentials.decode_password_algorithms,
            credentials.decode_password_algorithm,
        ):
            with contextlib.suppress(codec.DecodeError):
                decoder(data)

    def test_nonce_cookie_features(self) -> None:
        """The cookie is obMatJos2 + 4 base64 characters of the 24-bit feature set."""
        cookie = credentials.nonce_cookie(
            credentials.FEATURE_PASSWORD_ALGORITHMS
            | credentials.FEATURE_USERNAME_ANONYMITY
        )
        self.assertEqual(cookie[:9], b"obMatJos2")
        bits = int.from_bytes(base64.b64decode(cookie[9:]), "big")
        self.assertEqual(bits, 0xC00003)
        self.assertEqual(len(cookie), 13)
