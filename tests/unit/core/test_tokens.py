"""Tests for actrix.core.tokens: the claims JSON and the ECIES envelope."""

from __future__ import annotations

import coincurve
from twisted.trial.unittest import SynchronousTestCase

from actrix.core import tokens
from actrix.core.interfaces import Claims

# Known answer from the Rust ``ecies`` crate's own tests (src/lib.rs,
# ``test_known_encrypted``): this secret decrypts this ciphertext to
# "hello world🌍" with the default (16-byte nonce AES-GCM) configuration.
RUST_SECRET = bytes.fromhex(
    "e520872701d9ec44dbac2eab85512ad14ad0c42e01de56d7b528abd8524fcb47"
)
RUST_CIPHERTEXT = bytes.fromhex(
    "047be1885aeb48d4d4db0c992996725d3264784fef88c5b60782f8d0f940c213227fc3f904f8"
    "46d5ec3d0fba6653754501e8ebadc421aa3892a20fef33cff0206047058a4cfb4efbeae96b2d"
    "019b4ab2edce33328748a0d008a69c8f5816b72d45bd9b5a41bb6ea0127ab23057ec6fcd"
)
RUST_PLAINTEXT = "hello world🌍".encode()


def _claims(actor: str = "1a2b3c@1001/acme:echo") -> Claims:
    return Claims(
        realm_id=1001, actor_id=actor, expr_time=1730614800, psk=bytes(range(32))
    )


class ClaimsJsonTests(SynchronousTestCase):
    """ais.md §2: compact JSON, keys in order, PSK as a number array."""

    def test_exact_form(self) -> None:
        """The encoded claims match the original byte for byte."""
        psk = ",".join(str(i) for i in range(32))
        self.assertEqual(
            tokens.encode_claims(_claims()),
            (
                '{"realm_id":1001,"actor_id":"1a2b3c@1001/acme:echo",'
                f'"expr_time":1730614800,"psk":[{psk}]}}'
            ).encode(),
        )

    def test_unicode_is_raw_utf8(self) -> None:
        """Non-ASCII type names are written as UTF-8, not \\u escapes."""
        encoded = tokens.encode_claims(_claims("1@1/açme:éko"))
        self.assertIn("açme:éko".encode(), encoded)

    def test_decode_any_order(self) -> None:
        """Decoding ignores key order and whitespace."""
        text = b'{ "psk": [1, 2], "expr_time": 5, "actor_id": "a", "realm_id": 7 }'
        self.assertEqual(tokens.decode_claims(text), Claims(7, "a", 5, b"\x01\x02"))

    def test_decode_rejects_bad_claims(self) -> None:
        """Missing keys, wrong types, bad PSKs, deep nesting, lone surrogates fail."""
        for bad in (
            b"[]",
            b"{}",
            b'{"realm_id":1,"actor_id":"a","expr_time":1}',
            b'{"realm_id":"1","actor_id":"a","expr_time":1,"psk":[]}',
            b'{"realm_id":1,"actor_id":"a","expr_time":1,"psk":[256]}',
            b"\xff",
            b"[" * 5000,
            b'{"realm_id":1,"actor_id":"\\ud800","expr_time":1,"psk":[]}',
        ):
            with self.assertRaises(tokens.TokenError) as ctx:
                tokens.decode_claims(bad)
            self.assertEqual(ctx.exception.kind, "claims")


class EciesTests(SynchronousTestCase):
    """ais.md §4: byte compatibility with the Rust ecies crate."""

    def test_rust_known_answer(self) -> None:
        """Our ECIES and eciespy both decrypt the Rust crate's ciphertext."""
        import ecies

        self.assertEqual(len(RUST_CIPHERTEXT), tokens.OVERHEAD + len(RUST_PLAINTEXT))
        self.assertEqual(ecies.decrypt(RUST_SECRET, RUST_CIPHERTEXT), RUST_PLAINTEXT)
        self.assertEqual(
            tokens.ecies_decrypt(RUST_SECRET, RUST_CIPHERTEXT), RUST_PLAINTEXT
        )

    def test_interoperates_with_eciespy(self) -> None:
        """eciespy opens our envelopes and we open eciespy's (default config)."""
        import ecies

        secret = coincurve.PrivateKey()
        for public in (
            secret.public_key.format(compressed=True),
            secret.public_key.format(compressed=False),
        ):
            message = tokens.encode_claims(_claims("1@1/açme:éko"))
            ours = tokens.ecies_encrypt(public, message)
            self.assertEqual(ecies.decrypt(secret.secret, ours), message)
            theirs = bytes(ecies.encrypt(public, message))
            self.assertEqual(tokens.ecies_decrypt(secret.secret, theirs), message)

    def test_invalid_ephemeral_point(self) -> None:
        """A 0x04 prefix on a point not on the curve is a decrypt error."""
        token = b"\x04" + b"\x01" * 64 + RUST_CIPHERTEXT[65:]
        with self.assertRaises(tokens.TokenError) as ctx:
            tokens.decrypt_token(RUST_SECRET, token)
        self.assertEqual(ctx.exception.kind, "decrypt")

    def test_byte_layout(self) -> None:
        """Tokens are 65-byte uncompressed key ‖ 16 nonce ‖ 16 tag ‖ ciphertext."""
        secret = coincurve.PrivateKey()
        claims = _claims()
        token = tokens.encrypt_token(secret.public_key.format(compressed=True), claims)
        self.assertEqual(len(token), 65 + 16 + 16 + len(tokens.encode_claims(claims)))
        self.assertEqual(token[0], 0x04)
        coincurve.PublicKey(token[:65])  # a valid curve point
        self.assertEqual(tokens.decrypt_token(secret.secret, token), claims)

    def test_wrong_key_is_decrypt_error(self) -> None:
        """Another key's secret fails as a decrypt error."""
        token = tokens.encrypt_token(
            coincurve.PrivateKey().public_key.format(compressed=True), _claims()
        )
        with self.assertRaises(tokens.TokenError) as ctx:
            tokens.decrypt_token(coincurve.PrivateKey().secret, token)
        self.assertEqual(ctx.exception.kind, "decrypt")

    def test_truncated_is_decrypt_error(self) -> None:
        """A token no longer than the envelope overhead is a decrypt error."""
        with self.assertRaises(tokens.TokenError) as ctx:
            tokens.decrypt_token(RUST_SECRET, RUST_CIPHERTEXT[: tokens.OVERHEAD])
        self.assertEqual(ctx.exception.kind, "decrypt")
