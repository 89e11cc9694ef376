"""RFC 8489 authentication of TURN requests: algorithms, bid-down, SHA-256, USERHASH."""

from __future__ import annotations

from collections.abc import Iterable

from twisted.trial.unittest import SynchronousTestCase

from actrix.stun import codec, credentials
from actrix.turn.auth import rest_credentials
from tests.unit.turn.helpers import REALM, Harness, error_code, turn_config
from tests.unit.turn.test_service import _capture_events

BOTH = credentials.encode_password_algorithms(
    [codec.ALGORITHM_SHA256, codec.ALGORITHM_MD5]
)
TRANSPORT = (codec.REQUESTED_TRANSPORT, codec.encode_requested_transport())


class Rfc8489Client:
    """Sends requests with explicit RFC 8489 attributes to a Harness."""

    def __init__(
        self,
        harness: Harness,
        username: str = "alice",
        password: str = "alice-password",  # noqa: S107 (test fixture)
        address: tuple[str, int] = ("192.0.2.20", 41000),
    ) -> None:
        self.harness = harness
        self.client = harness.client(address, username, password)
        self.username = username
        self.password = password
        challenge = self.request(codec.METHOD_ALLOCATE, [TRANSPORT], sign=None)
        assert challenge is not None
        self.challenge = challenge
        self.nonce = challenge.attrs[codec.NONCE]

    def key(self, algorithm: int) -> bytes:
        if algorithm == codec.ALGORITHM_SHA256:
            return credentials.long_term_key_sha256(self.username, REALM, self.password)
        return codec.long_term_key(self.username, REALM, self.password)

    def request(
        self,
        method: int,
        attrs: Iterable[tuple[int, bytes]] = (),
        *,
        sign: bytes | None,
        sha256: bool = False,
        name: bool = True,
        hashed: bool = False,
        nonce: bytes | None = None,
    ) -> codec.Message | None:
        attrs = list(attrs)
        if sign is not None:
            if name:
                attrs.append((codec.USERNAME, self.username.encode()))
            if hashed:
                attrs.append(
                    (codec.USERHASH, credentials.userhash(self.username, REALM))
                )
            attrs += [
                (codec.REALM, REALM.encode()),
                (codec.NONCE, nonce or self.nonce),
            ]
        data = codec.encode(
            codec.message_type(method, codec.CLASS_REQUEST),
            self.client.txid(),
            attrs,
            key=sign,
            sha256=sha256,
        )
        return self.client.deliver(data)

    def allocate(
        self,
        algorithm: int | None,
        *,
        sha256: bool,
        offered: bytes | None = BOTH,
        extra: Iterable[tuple[int, bytes]] = (),
        name: bool = True,
        hashed: bool = False,
    ) -> codec.Message:
        attrs = [TRANSPORT, *extra]
        if algorithm is not None:
            attrs.append(
                (
                    codec.PASSWORD_ALGORITHM,
                    credentials.encode_password_algorithm(algorithm),
                )
            )
        if offered is not None:
            attrs.append((codec.PASSWORD_ALGORITHMS, offered))
        key = self.key(algorithm or codec.ALGORITHM_MD5)
        reply = self.request(
            codec.METHOD_ALLOCATE,
            attrs,
            sign=key,
            sha256=sha256,
            name=name,
            hashed=hashed,
        )
        assert reply is not None
        return reply


class ChallengeTests(SynchronousTestCase):
    def test_challenge_offers_algorithms_and_cookie(self) -> None:
        """A 401 carries PASSWORD-ALGORITHMS and a nonce with the feature cookie."""
        client = Rfc8489Client(Harness())
        self.assertEqual(error_code(client.challenge), 401)
        self.assertEqual(client.challenge.attrs[codec.PASSWORD_ALGORITHMS], BOTH)
        self.assertTrue(client.nonce.startswith(b"obMatJos2wAAD"))

    def test_configured_order_and_no_userhash(self) -> None:
        """The list follows turn.password_algorithms; userhash off drops its bit."""
        config = turn_config(password_algorithms=(1,), userhash=False)
        client = Rfc8489Client(Harness(config))
        self.assertEqual(
            credentials.decode_password_algorithms(
                client.challenge.attrs[codec.PASSWORD_ALGORITHMS]
            ),
            [codec.ALGORITHM_MD5],
        )
        self.assertTrue(client.nonce.startswith(b"obMatJos2gAAB"))


class NegotiationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.harness = Harness()
        self.client = Rfc8489Client(self.harness)

    def test_sha256_key_and_sha256_integrity(self) -> None:
        """SHA-256 with MESSAGE-INTEGRITY-SHA256 allocates; the answer is signed so."""
        reply = self.client.allocate(codec.ALGORITHM_SHA256, sha256=True)
        self.assertIsNone(error_code(reply))
        key = self.client.key(codec.ALGORITHM_SHA256)
        self.assertEqual(reply.integrity_offset, -1)
        self.assertTrue(credentials.check_integrity_sha256(reply, key))
        self.assertEqual(self.harness.metrics.authenticated[("sha256", "sha256")], 1)
        # The allocation's later requests may use the same negotiation.
        refresh = self.client.request(
            codec.METHOD_REFRESH,
            [
                (
                    codec.PASSWORD_ALGORITHM,
                    credentials.encode_password_algorithm(codec.ALGORITHM_SHA256),
                ),
                (codec.PASSWORD_ALGORITHMS, BOTH),
            ],
            sign=key,
            sha256=True,
        )
        assert refresh is not None
        self.assertIsNone(error_code(refresh))
        self.assertTrue(credentials.check_integrity_sha256(refresh, key))

    def test_sha256_key_with_sha1_integrity(self) -> None:
        """The SHA-256 key also signs a classic MESSAGE-INTEGRITY, as does the reply."""
        reply = self.client.allocate(codec.ALGORITHM_SHA256, sha256=False)
        self.assertIsNone(error_code(reply))
        key = self.client.key(codec.ALGORITHM_SHA256)
        self.assertTrue(codec.check_integrity(reply, key))
        self.assertEqual(reply.integrity256_offset, -1)
        self.assertEqual(self.harness.metrics.authenticated[("sha256", "sha1")], 1)

    def test_md5_negotiated_with_sha256_integrity(self) -> None:
        """MD5 chosen from the list works with MESSAGE-INTEGRITY-SHA256."""
        reply = self.client.allocate(codec.ALGORITHM_MD5, sha256=True)
        self.assertIsNone(error_code(reply))
        key = self.client.key(codec.ALGORITHM_MD5)
        self.assertTrue(credentials.check_integrity_sha256(reply, key))

    def test_rfc5389_client_unchanged(self) -> None:
        """No algorithm attributes: MD5 and MESSAGE-INTEGRITY, as RFC 5389 had it."""
        reply = self.client.allocate(None, sha256=False, offered=None)
        self.assertIsNone(error_code(reply))
        self.assertTrue(codec.check_integrity(reply, self.client.key(1)))
        self.assertEqual(self.harness.metrics.authenticated[("md5", "sha1")], 1)

    def test_wrong_key_for_algorithm_is_401(self) -> None:
        """Claiming SHA-256 but signing with the MD5 key fails integrity."""
        attrs = [
            TRANSPORT,
            (
                codec.PASSWORD_ALGORITHM,
                credentials.encode_password_algorithm(codec.ALGORITHM_SHA256),
            ),
            (codec.PASSWORD_ALGORITHMS, BOTH),
        ]
        reply = self.client.request(
            codec.METHOD_ALLOCATE, attrs, sign=self.client.key(1), sha256=True
        )
        assert reply is not None
        self.assertEqual(error_code(reply), 401)
        self.assertEqual(self.harness.metrics.auth_failures["bad_integrity"], 1)

    def test_unknown_required_attribute_is_420_signed_alike(self) -> None:
        """420 lists the attribute and is signed with MESSAGE-INTEGRITY-SHA256."""
        reply = self.client.allocate(
            codec.ALGORITHM_SHA256, sha256=True, extra=[(0x0031, b"\x00\x00\x00\x00")]
        )
        self.assertEqual(error_code(reply), 420)
        self.assertEqual(
            codec.decode_unknown_attributes(reply.attrs[codec.UNKNOWN_ATTRIBUTES]),
            [0x0031],
        )
        key = self.client.key(codec.ALGORITHM_SHA256)
        self.assertTrue(credentials.check_integrity_sha256(reply, key))


class BidDownTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.harness = Harness()
        self.client = Rfc8489Client(self.harness)
        self.events = _capture_events(self)

    def _assert_bid_down(self, reply: codec.Message) -> None:
        self.assertEqual(error_code(reply), 400)
        self.assertNotIn(
            self.client.client.link.address, self.harness.service.allocations
        )

    def test_tampered_list_is_400(self) -> None:
        """A PASSWORD-ALGORITHMS list other than the one we sent is a bid-down: 400."""
        md5_only = credentials.encode_password_algorithms([codec.ALGORITHM_MD5])
        reply = self.client.allocate(
            codec.ALGORITHM_MD5, sha256=False, offered=md5_only
        )
        self._assert_bid_down(reply)
        self.assertEqual(self.harness.metrics.auth_failures["bid_down"], 1)
        self.assertEqual(self.harness.metrics.rejected[400], 1)

    def test_algorithm_without_list_is_400(self) -> None:
        """PASSWORD-ALGORITHM without PASSWORD-ALGORITHMS is refused."""
        reply = self.client.allocate(codec.ALGORITHM_MD5, sha256=False, offered=None)
        self._assert_bid_down(reply)

    def test_list_without_algorithm_is_400(self) -> None:
        """PASSWORD-ALGORITHMS without PASSWORD-ALGORITHM is refused."""
        reply = self.client.allocate(None, sha256=False)
        self._assert_bid_down(reply)

    def test_algorithm_outside_the_list_is_400(self) -> None:
        """An algorithm we did not offer is refused."""
        reply = self.client.allocate(7, sha256=False)
        self._assert_bid_down(reply)

    def test_malformed_algorithm_is_400(self) -> None:
        """A PASSWORD-ALGORITHM whose parameters do not fit is refused."""
        attrs = [
            TRANSPORT,
            (codec.PASSWORD_ALGORITHM, b"\x00\x02\x00\x09"),
            (codec.PASSWORD_ALGORITHMS, BOTH),
        ]
        reply = self.client.request(
            codec.METHOD_ALLOCATE, attrs, sign=self.client.key(2), sha256=True
        )
        assert reply is not None
        self._assert_bid_down(reply)

    def test_bid_down_logged_once(self) -> None:
        """Repeated bid-downs from one address log one line (throttled)."""
        md5_only = credentials.encode_password_algorithms([codec.ALGORITHM_MD5])
        for _ in range(5):
            self.client.allocate(codec.ALGORITHM_MD5, sha256=False, offered=md5_only)
        lines = [e for e in self.events if e.get("reason") == "bid_down"]
        self.assertEqual(len(lines), 1)
        self.assertEqual(self.harness.metrics.auth_failures["bid_down"], 5)

    def test_stripped_cookie_is_stale(self) -> None:
        """A nonce whose cookie was removed on the way is not ours: 438."""
        stripped = self.client.nonce[13:]
        reply = self.client.request(
            codec.METHOD_ALLOCATE,
            [TRANSPORT],
            sign=self.client.key(1),
            nonce=stripped,
        )
        assert reply is not None
        self.assertEqual(error_code(reply), 438)
        altered = b"obMatJos2AAAA" + self.client.nonce[13:]
        reply = self.client.request(
            codec.METHOD_ALLOCATE,
            [TRANSPORT],
            sign=self.client.key(1),
            nonce=altered,
        )
        assert reply is not None
        self.assertEqual(error_code(reply), 438)

    def test_md5_disabled_refuses_rfc5389_clients(self) -> None:
        """With only sha256 configured, a request without algorithms gets 400."""
        harness = Harness(turn_config(password_algorithms=(2,)))
        client = Rfc8489Client(harness)
        reply = client.allocate(None, sha256=False, offered=None)
        self.assertEqual(error_code(reply), 400)
        self.assertEqual(harness.metrics.auth_failures["md5_disabled"], 1)
        sha = credentials.encode_password_algorithms([2])
        reply = client.allocate(2, sha256=True, offered=sha)
        self.assertIsNone(error_code(reply))


class UserhashTests(SynchronousTestCase):
    def test_static_user_by_hash(self) -> None:
        """A static user may name itself by USERHASH only, for every request."""
        harness = Harness()
        client = Rfc8489Client(harness)
        reply = client.allocate(2, sha256=True, name=False, hashed=True)
        self.assertIsNone(error_code(reply))
        self.assertEqual(harness.metrics.userhash_requests, 1)
        allocation = harness.service.allocations[client.client.link.address]
        self.assertEqual(allocation.username, "alice")
        refresh = client.request(
            codec.METHOD_REFRESH,
            [
                (codec.PASSWORD_ALGORITHM, credentials.encode_password_algorithm(2)),
                (codec.PASSWORD_ALGORITHMS, BOTH),
            ],
            sign=client.key(2),
            sha256=True,
            name=False,
            hashed=True,
        )
        assert refresh is not None
        self.assertIsNone(error_code(refresh))

    def test_unknown_hash_is_401(self) -> None:
        """A USERHASH we cannot map is refused like an unknown user."""
        harness = Harness()
        client = Rfc8489Client(harness, "mallory", "x")
        reply = client.allocate(2, sha256=True, name=False, hashed=True)
        self.assertEqual(error_code(reply), 401)
        self.assertEqual(harness.metrics.auth_failures["unknown_userhash"], 1)

    def test_rest_user_learned_from_a_named_allocation(self) -> None:
        """A REST username seen by name once can then be used by its hash."""
        harness = Harness()
        now = int(harness.clock.seconds())
        username, password = rest_credentials("rest-secret", "bob", now + 600)
        named = Rfc8489Client(harness, username, password, ("192.0.2.30", 1))
        self.assertIsNone(error_code(named.allocate(None, sha256=False, offered=None)))
        hashed = Rfc8489Client(harness, username, password, ("192.0.2.31", 2))
        reply = hashed.allocate(2, sha256=True, name=False, hashed=True)
        self.assertIsNone(error_code(reply))

    def test_userhash_disabled_means_missing_username(self) -> None:
        """With turn.userhash off, USERHASH alone is a request without USERNAME."""
        harness = Harness(turn_config(userhash=False))
        client = Rfc8489Client(harness)
        reply = client.allocate(2, sha256=True, name=False, hashed=True)
        self.assertEqual(error_code(reply), 400)
