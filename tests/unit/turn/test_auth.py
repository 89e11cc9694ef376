"""actr TURN credentials: base122 usernames carrying real ECIES tokens."""

from __future__ import annotations

import gc
import traceback

import coincurve
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from actrix.core import base122, tokens
from actrix.core.credentials import TokenValidator
from actrix.core.interfaces import Claims, CredentialError, KeyRecord, SecretKey
from actrix.stun import codec
from actrix.turn.auth import AuthFailure, TurnAuth
from tests.unit.turn.helpers import REALM, Harness, error_code, turn_config

KEY_ID = 7
REALM_ID = 42
PSK = bytes(range(32))


class FakeKeys:
    """A KeyProvider holding one key pair."""

    def __init__(self) -> None:
        self.private = coincurve.PrivateKey()
        self.known = True
        self.calls = 0

    async def generate_key(self) -> KeyRecord:
        raise NotImplementedError

    async def secret_key(self, key_id: int) -> SecretKey | None:
        self.calls += 1
        if key_id != KEY_ID or not self.known:
            return None
        return SecretKey(KEY_ID, self.private.secret, 0, 0)

    def token(self, expires: int, realm_id: int = REALM_ID) -> bytes:
        claims = Claims(realm_id, "actor-1", expires, PSK)
        return tokens.encrypt_token(self.private.public_key.format(True), claims)


class FakeRealms:
    """A RealmDirectory whose realms are a dict of problems."""

    def __init__(self) -> None:
        self.problems: dict[int, str | None] = {REALM_ID: None}

    def realm(self, realm_id: int) -> None:
        return None

    def realm_problem(self, realm_id: int) -> str | None:
        return self.problems.get(realm_id, "Realm not found")

    def acl_allowed(self, realm_id: int, from_type: str, to_type: str) -> bool:
        return False

    async def add_acl(
        self, realm_id: int, from_type: str, to_type: str, allow: bool
    ) -> None:
        return None


def actr_username(token: bytes, realm_id: int = REALM_ID, key_id: int = KEY_ID) -> str:
    return base122.encode(
        realm_id.to_bytes(4, "big") + key_id.to_bytes(4, "big") + token
    )


class ActrCredentialTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.keys = FakeKeys()
        self.realms = FakeRealms()
        self.harness = Harness(realms=self.realms)
        validator = TokenValidator(self.keys, self.harness.clock)
        self.harness.auth._validator = validator
        self.now = int(self.harness.clock.seconds())

    def test_real_token_allocates(self) -> None:
        """A base122 username with a real ECIES token and the hex PSK allocates."""
        username = actr_username(self.keys.token(self.now + 3600))
        client = self.harness.client(("192.0.2.1", 1), username, PSK.hex())
        reply = client.allocate()
        self.assertIsNone(error_code(reply))
        self.assertTrue(codec.check_integrity(reply, client.key))
        self.assertEqual(self.harness.auth.cached_count, 1)
        # The second request hits the key cache: no new KS lookup.
        calls = self.keys.calls
        self.assertIsNone(error_code(client.refresh()))
        self.assertEqual(self.keys.calls, calls)

    def test_wrong_psk_fails(self) -> None:
        """The PSK used as password must be the token's PSK."""
        username = actr_username(self.keys.token(self.now + 3600))
        client = self.harness.client(("192.0.2.1", 1), username, "00" * 32)
        self.assertEqual(error_code(client.allocate()), 401)
        self.assertEqual(self.harness.metrics.auth_failures["bad_integrity"], 1)

    def test_expired_token_fails_even_when_cached(self) -> None:
        """An expired token is refused, also after it was cached."""
        expired = actr_username(self.keys.token(self.now - 1))
        client = self.harness.client(("192.0.2.1", 1), expired, PSK.hex())
        self.assertEqual(error_code(client.allocate()), 401)
        self.assertEqual(self.harness.metrics.auth_failures["expired"], 1)
        fresh = actr_username(self.keys.token(self.now + 100))
        client = self.harness.client(("192.0.2.1", 2), fresh, PSK.hex())
        self.assertIsNone(error_code(client.allocate()))
        self.harness.clock.advance(101)
        client.nonce = None
        self.assertEqual(error_code(client.refresh()), 401)
        self.assertEqual(self.harness.metrics.auth_failures["expired"], 2)

    def test_suspended_realm_fails_even_when_cached(self) -> None:
        """Suspending the realm stops a cached credential at once."""
        username = actr_username(self.keys.token(self.now + 3600))
        client = self.harness.client(("192.0.2.1", 1), username, PSK.hex())
        self.assertIsNone(error_code(client.allocate()))
        self.realms.problems[REALM_ID] = "Realm is suspended"
        self.assertEqual(error_code(client.refresh()), 401)
        self.assertEqual(self.harness.metrics.auth_failures["realm_inactive"], 1)

    def test_suspended_realm_fails_on_first_use(self) -> None:
        """A token of a suspended realm never validates."""
        self.realms.problems[REALM_ID] = "Realm is suspended"
        username = actr_username(self.keys.token(self.now + 3600))
        client = self.harness.client(("192.0.2.1", 1), username, PSK.hex())
        self.assertEqual(error_code(client.allocate()), 401)

    def test_unknown_key_fails(self) -> None:
        """A token for a key the KS does not know is refused."""
        username = actr_username(self.keys.token(self.now + 3600), key_id=99)
        client = self.harness.client(("192.0.2.1", 1), username, PSK.hex())
        self.assertEqual(error_code(client.allocate()), 401)
        self.assertEqual(self.harness.metrics.auth_failures["unknown_key"], 1)

    def test_realm_mismatch_fails(self) -> None:
        """The realm in the username must be the token's realm."""
        token = self.keys.token(self.now + 3600, realm_id=43)
        client = self.harness.client(("192.0.2.1", 1), actr_username(token), PSK.hex())
        self.assertEqual(error_code(client.allocate()), 401)

    def test_undecodable_username_fails(self) -> None:
        """A username that is not base122 (index-6 character) is refused cleanly."""
        client = self.harness.client(("192.0.2.1", 1), "\u0600abc", PSK.hex())
        self.assertEqual(error_code(client.allocate()), 401)
        self.assertEqual(self.harness.metrics.auth_failures["bad_username"], 1)
        short = self.harness.client(("192.0.2.1", 2), base122.encode(b"1234"), "x")
        self.assertEqual(error_code(short.allocate()), 401)

    def test_garbage_token_fails_and_is_remembered(self) -> None:
        """A token that does not decrypt is refused, and not decrypted again soon."""
        username = actr_username(b"\x04" + bytes(200))
        client = self.harness.client(("192.0.2.1", 1), username, PSK.hex())
        self.assertEqual(error_code(client.allocate()), 401)
        calls = self.keys.calls
        self.assertEqual(error_code(client.allocate()), 401)
        self.assertEqual(self.keys.calls, calls)
        self.assertEqual(self.harness.metrics.auth_failures["decrypt"], 2)

    def test_no_key_source_fails(self) -> None:
        """Without a validator actr credentials are refused with an auth error."""
        harness = Harness()
        username = actr_username(self.keys.token(self.now + 3600))
        client = harness.client(("192.0.2.1", 1), username, PSK.hex())
        self.assertEqual(error_code(client.allocate()), 401)
        self.assertEqual(harness.metrics.auth_failures["no_key_source"], 1)

    def test_cache_is_bounded(self) -> None:
        """The key cache never holds more than its capacity."""
        auth = TurnAuth(
            self.harness.clock,
            REALM,
            validator=TokenValidator(self.keys, self.harness.clock),
            realms=self.realms,
            cache_size=2,
        )
        for i in range(3):
            username = actr_username(self.keys.token(self.now + 100 + i))
            self.successResultOf(Deferred.fromCoroutine(auth.resolve(username, REALM)))
        self.assertEqual(auth.cached_count, 2)


class NegativeCacheMemoryTests(SynchronousTestCase):
    """Defect 2: a remembered failure must not grow with every hit."""

    def setUp(self) -> None:
        self.keys = FakeKeys()
        self.harness = Harness(realms=FakeRealms())
        self.harness.auth._validator = TokenValidator(self.keys, self.harness.clock)
        self.username = actr_username(b"\x04" + bytes(200))
        failure = self.failureResultOf(
            Deferred.fromCoroutine(self.harness.auth.resolve(self.username, REALM)),
            AuthFailure,
        )
        self.assertEqual(failure.value.reason, "decrypt")

    def _hit(self) -> AuthFailure:
        try:
            self.harness.auth.lookup(self.username, REALM)
        except AuthFailure as failure:
            return failure
        self.fail("the remembered failure was not raised")

    def test_each_hit_raises_a_new_shallow_exception(self) -> None:
        """Every hit gets its own exception, whose traceback does not deepen."""
        first, second = self._hit(), self._hit()
        self.assertIsNot(first, second)
        self.assertEqual(second.reason, "decrypt")
        for _ in range(1000):
            last = self._hit()
        depth = len(list(traceback.walk_tb(last.__traceback__)))
        self.assertEqual(depth, len(list(traceback.walk_tb(first.__traceback__))))
        self.assertLessEqual(depth, 2)

    def test_memory_stays_flat_under_bad_requests(self) -> None:
        """10**5 requests hitting the negative cache leave allocated memory flat."""
        client = self.harness.client(("192.0.2.7", 1), self.username, PSK.hex())
        client.nonce = client._fetch_nonce()
        client.send(codec.METHOD_REFRESH)  # warm up caches and counters
        request = codec.decode(client.link.sent[-1])  # only for the shape
        self.assertEqual(error_code(request), 401)
        data = codec.encode(
            codec.message_type(codec.METHOD_REFRESH, codec.CLASS_REQUEST),
            bytes(12),
            [
                (codec.USERNAME, self.username.encode()),
                (codec.REALM, REALM.encode()),
                (codec.NONCE, client.nonce),
            ],
            key=client.key,
        )
        link = client.link
        handle = self.harness.service.handle_message
        for _ in range(1000):
            handle(codec.decode(data), link)
            link.sent.clear()
        gc.collect()
        before = len(gc.get_objects())
        for _ in range(100_000):
            handle(codec.decode(data), link)
            link.sent.clear()
        gc.collect()
        grown = len(gc.get_objects()) - before
        self.assertEqual(self.harness.metrics.auth_failures["decrypt"], 101_001)
        # Before the fix every hit kept a traceback entry and its frame alive
        # (700 000 objects here); tracebacks and frames are gc-tracked.
        self.assertLess(grown, 100)


class SlowValidator:
    """A validator whose answer the test releases by hand."""

    def __init__(self, claims: Claims) -> None:
        self.claims = claims
        self.waiting: list[Deferred[None]] = []
        self.fail = False

    async def validate(self, token: bytes, key_id: int, realm: int) -> Claims:
        d: Deferred[None] = Deferred()
        self.waiting.append(d)
        await d
        if self.fail:
            raise CredentialError("ks_error", "KS unreachable", 500)
        return self.claims


class AsyncValidationTests(SynchronousTestCase):
    def test_request_answered_when_validation_completes(self) -> None:
        """The first request of a new username is answered after validation."""
        harness = Harness(realms=FakeRealms())
        now = int(harness.clock.seconds())
        slow = SlowValidator(Claims(REALM_ID, "a", now + 600, PSK))
        harness.auth._validator = slow
        username = actr_username(b"\x04" + bytes(120))
        client = harness.client(("192.0.2.1", 1), username, PSK.hex())
        client.nonce = client._fetch_nonce()
        sent = len(client.link.sent)
        first = client.send(
            codec.METHOD_ALLOCATE,
            [(codec.REQUESTED_TRANSPORT, codec.encode_requested_transport())],
        )
        self.assertIsNone(first)
        self.assertEqual(len(slow.waiting), 1)
        slow.waiting[0].callback(None)
        self.assertEqual(len(client.link.sent), sent + 1)
        reply = codec.decode(client.link.sent[-1])
        self.assertIsNone(error_code(reply))

    def test_key_server_failure_gets_500(self) -> None:
        """When the KS cannot be asked the request gets 500 and is not cached."""
        harness = Harness(realms=FakeRealms())
        slow = SlowValidator(Claims(REALM_ID, "a", 0, PSK))
        slow.fail = True
        harness.auth._validator = slow
        username = actr_username(b"\x04" + bytes(120))
        client = harness.client(("192.0.2.1", 1), username, PSK.hex())
        client.nonce = client._fetch_nonce()
        client.send(
            codec.METHOD_ALLOCATE,
            [(codec.REQUESTED_TRANSPORT, codec.encode_requested_transport())],
        )
        slow.waiting[0].callback(None)
        self.assertEqual(error_code(codec.decode(client.link.sent[-1])), 500)
        client.send(
            codec.METHOD_ALLOCATE,
            [(codec.REQUESTED_TRANSPORT, codec.encode_requested_transport())],
        )
        self.assertEqual(len(slow.waiting), 2)

    def test_lost_connection_drops_waiting_request(self) -> None:
        """An Allocate whose connection closed during validation allocates nothing."""
        harness = Harness(realms=FakeRealms())
        now = int(harness.clock.seconds())
        slow = SlowValidator(Claims(REALM_ID, "a", now + 600, PSK))
        harness.auth._validator = slow
        username = actr_username(b"\x04" + bytes(120))
        client = harness.client(("192.0.2.1", 1), username, PSK.hex())
        client.nonce = client._fetch_nonce()
        sent = len(client.link.sent)
        client.send(
            codec.METHOD_ALLOCATE,
            [(codec.REQUESTED_TRANSPORT, codec.encode_requested_transport())],
        )
        harness.service.connection_lost(client.link)
        slow.waiting[0].callback(None)
        self.assertEqual(harness.service.allocations, {})
        self.assertEqual(harness.relays.open, {})
        self.assertEqual(len(client.link.sent), sent)
        self.assertEqual(harness.auth.cached_count, 1)

    def test_new_usernames_are_rate_limited_for_every_method(self) -> None:
        """Fresh actr usernames past the per-IP burst get 486 without a decryption."""
        harness = Harness(
            turn_config(allocation_rate_per_ip=1.0, allocation_burst_per_ip=2),
            realms=FakeRealms(),
        )
        slow = SlowValidator(Claims(REALM_ID, "a", 0, PSK))
        harness.auth._validator = slow
        codes = []
        for i in range(3):
            username = actr_username(bytes([i + 1]) * 40)
            client = harness.client(("192.0.2.1", 1), username, PSK.hex())
            client.nonce = client._fetch_nonce()
            reply = client.send(codec.METHOD_REFRESH)
            codes.append(None if reply is None else error_code(reply))
        self.assertEqual(codes, [None, None, 486])
        self.assertEqual(len(slow.waiting), 2)
        other = harness.client(("192.0.2.2", 1), actr_username(b"\x09" * 40), "x")
        other.nonce = other._fetch_nonce()
        self.assertIsNone(other.send(codec.METHOD_REFRESH))
        self.assertEqual(len(slow.waiting), 3)

    def test_spec_key_vector(self) -> None:
        """turn-auth.md §4's key vector: MD5(username:realm:hex psk)."""
        text = bytes.fromhex("c280c28008c280c28137555b773c").decode()
        self.assertEqual(base122.decode(text)[8:], bytes.fromhex("deadbeef"))
        key = codec.long_term_key(text, "actor-rtc.local", bytes(range(32)).hex())
        self.assertEqual(key.hex(), "0ee3d7cb2cc6fd8c8e4a79e7325ba869")
