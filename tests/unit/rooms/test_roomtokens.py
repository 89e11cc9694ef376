"""Room tokens (rooms.md §4.1, §4.6 vectors) and ICE credentials (§4.5)."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from actrix.core import roomtokens
from actrix.core.ice import IceServerSource, rest_credential

SECRET = bytes(range(32))
TOKEN_A = (
    "rt1.eyJleHAiOjE3NjcyMjU2MDAsImtpZCI6MSwibWF4X3VzZXMiOjUsIm5vbmNlIjoicTZiWjNsMHNY"
    "b1FoMUpjOSIsInBlZXIiOiJhbGljZSIsInJlYWxtX2lkIjoxMDEsInJvbGUiOiJzZW5kZXIiLCJyb29t"
    "IjoidGVhbS0qIn0.VUhhzsEp3IKlcfMpT1R0TuYdJP8wJOwU4Fnggjc1AsQ"
)
TOKEN_B = (
    "rt1.eyJleHAiOjE3NjcyMjU2MDAsImtpZCI6MSwibm9uY2UiOiJaeDhLcTJMbVAwYUI3Y0RlIiwicmVh"
    "bG1faWQiOjEwMSwicm9sZSI6ImFueSIsInJvb20iOiJsb2JieSJ9.rzGXsC0UI4_3rbLQPY22bC1sH3l8"
    "DVBDQVbdIPIedKQ"
)


class RoomTokenTests(SynchronousTestCase):
    def test_vector_a(self) -> None:
        """Token A of §4.6 is minted byte for byte and parses back."""
        claims = roomtokens.RoomClaims(
            realm_id=101,
            room="team-*",
            role="sender",
            exp=1767225600,
            nonce="q6bZ3l0sXoQh1Jc9",
            kid=1,
            peer="alice",
            max_uses=5,
        )
        self.assertEqual(roomtokens.mint(claims, SECRET), TOKEN_A)
        parsed, body, mac = roomtokens.parse(TOKEN_A)
        self.assertEqual(parsed, claims)
        self.assertEqual(len(body), 128)
        self.assertEqual(
            mac.hex(),
            "554861cec129dc82a571f3294f54744ee61d24ff3024ec14e059e082373502c4",
        )
        self.assertTrue(roomtokens.signature_valid(body, mac, SECRET))
        self.assertFalse(roomtokens.signature_valid(body, mac, b"\x01" * 32))

    def test_vector_b(self) -> None:
        """Token B of §4.6 (no peer, no max_uses) is minted byte for byte."""
        claims = roomtokens.RoomClaims(
            realm_id=101,
            room="lobby",
            role="any",
            exp=1767225600,
            nonce="Zx8Kq2LmP0aB7cDe",
            kid=1,
        )
        self.assertEqual(roomtokens.mint(claims, SECRET), TOKEN_B)

    def test_room_and_role_grants(self) -> None:
        """A prefix claim grants its prefix; '*' grants all; roles match or any."""
        claims, _, _ = roomtokens.parse(TOKEN_A)
        self.assertTrue(claims.grants_room("team-alpha"))
        self.assertFalse(claims.grants_room("teams"))
        self.assertTrue(claims.grants_role("sender"))
        self.assertFalse(claims.grants_role("receiver"))
        self.assertEqual(roomtokens.normalize_role("publisher"), "sender")
        self.assertIsNone(roomtokens.normalize_role("admin"))

    def test_non_canonical_claims_are_malformed(self) -> None:
        """Whitespace in the claims, a missing key or an extra one is malformed."""
        import base64

        def token(body: bytes) -> str:
            b64 = base64.urlsafe_b64encode(body).rstrip(b"=").decode()
            return f"rt1.{b64}.{'A' * 43}"

        for body in (
            b'{"exp": 1,"kid":1,"nonce":"abcdefgh","realm_id":1,"role":"any",'
            b'"room":"x"}',
            b'{"exp":1,"kid":1,"nonce":"abcdefgh","realm_id":1,"role":"any"}',
            b'{"exp":1,"kid":1,"nonce":"abcdefgh","realm_id":1,"role":"any",'
            b'"room":"x","z":1}',
            b'{"exp":1,"kid":1,"nonce":"abc","realm_id":1,"role":"any","room":"x"}',
        ):
            with self.assertRaises(roomtokens.TokenFormatError):
                roomtokens.parse(token(body))

    @given(st.text(max_size=300))
    def test_parse_any_text_raises_only_format_error(self, text: str) -> None:
        """Any text either parses or raises TokenFormatError."""
        for candidate in (text, "rt1." + text):
            with contextlib.suppress(roomtokens.TokenFormatError):
                roomtokens.parse(candidate)


class IceTests(SynchronousTestCase):
    def test_rest_vectors(self) -> None:
        """§4.5 vectors for a JSON and a binary peer."""
        secret = b"turn-rest-demo-secret"
        self.assertEqual(
            rest_credential(secret, "a1b2c3d4", 1767225600),
            ("1767225600:a1b2c3d4", "CDt/FbMtP4o62yXy7AeMRtqKPuI="),
        )
        self.assertEqual(
            rest_credential(secret, "cam-1", 1767225600)[1],
            "pcoaunqTqB1zP7jilHEQmuvXoWY=",
        )

    def test_servers_as_in_the_example(self) -> None:
        """The §2.6 ice_servers list: STUN, then TURN UDP/TCP/TLS with credentials."""
        source = IceServerSource(
            "turn.example.com", 3478, True, b"turn-rest-demo-secret", True, 5349
        )
        self.assertEqual(
            source.servers("a1b2c3d4", 1767225600),
            [
                {"urls": ["stun:turn.example.com:3478"]},
                {
                    "urls": [
                        "turn:turn.example.com:3478?transport=udp",
                        "turn:turn.example.com:3478?transport=tcp",
                        "turns:turn.example.com:5349?transport=tcp",
                    ],
                    "username": "1767225600:a1b2c3d4",
                    "credential": "CDt/FbMtP4o62yXy7AeMRtqKPuI=",
                },
            ],
        )
        self.assertEqual(IceServerSource("h", 1, False).servers("x", 1), [])


class MintRequestTests(SynchronousTestCase):
    def test_signed_payload_vector(self) -> None:
        """§6.2: the canonical body and its nonce-auth signature."""
        from actrix.core.auth import compute_signature

        body = {
            "realm_id": 101,
            "room": "team-*",
            "role": "publisher",
            "peer": "alice",
            "ttl": 3600,
            "max_uses": 5,
        }
        payload = "room_token:" + roomtokens.canonical_json(body).decode()
        self.assertEqual(
            payload,
            'room_token:{"max_uses":5,"peer":"alice","realm_id":101,'
            '"role":"publisher","room":"team-*","ttl":3600}',
        )
        self.assertEqual(
            compute_signature(
                b"test-psk-0123456789",
                1767222000,
                "550e8400-e29b-41d4-a716-446655440000",
                payload,
            ),
            "7JImiXnDRCQniWx0XBZ6ZBGKEVz9lzc8TPChpfn24WM=",
        )
