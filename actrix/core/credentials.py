"""Identity-token validation shared by signaling and TURN (signaling.md §4.2).

:class:`TokenValidator` fetches the KS secret of a token's key id (cached until
the key's expiry + tolerance; unknown keys cached briefly as absent; concurrent
misses for one key share one KS call), decrypts the ECIES token (on the reactor when
one decryption fits the 200 µs budget, as measured at startup by
:func:`choose_crypto`; else on the bounded :class:`CryptoThreads` pool) and
checks expiry and realm. Validated tokens are kept
in a bounded LRU keyed by ``(key_id, sha256(token))`` because signaling checks
the same credential on every message; a hit re-checks expiry, realm and key
tolerance against the clock.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Final, Protocol, TypeVar

import attrs
from prometheus_client.core import CounterMetricFamily, Metric
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from actrix.core import tokens
from actrix.core.errors import own_copy
from actrix.core.interfaces import (
    Claims,
    CredentialError,
    KeyProvider,
    KeyProviderError,
    SecretKey,
)

log = Logger()

R = TypeVar("R")

NEGATIVE_TTL: Final = 10.0
MAX_KEYS: Final = 1024
# Distinct key ids being fetched from KS at once. Key ids come from clients
# (TURN usernames, signaling credentials), so without a cap a flood of made-up
# ids would open one KS request each while KS is slow.
MAX_PENDING_FETCHES: Final = 64
MAX_TOKENS: Final = 20000
CRYPTO_THREADS: Final = 2


class CryptoRunner(Protocol):
    """Runs a CPU-heavy function somewhere that does not block the reactor."""

    def run(self, fn: Callable[..., R], *args: Any) -> Deferred[R]: ...


class InlineCrypto:
    """Runs the function at once on the calling thread (tests, tools)."""

    def run(self, fn: Callable[..., R], *args: Any) -> Deferred[R]:
        try:
            return succeed(fn(*args))
        except Exception as e:
            d: Deferred[R] = Deferred()
            d.errback(e)
            return d


class CryptoThreads(Service):
    """A bounded thread pool for ECIES, started and stopped with the daemon."""

    def __init__(self, reactor: Any, threads: int = CRYPTO_THREADS) -> None:
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=0, maxthreads=threads, name="actrix-crypto")
        self.setName("crypto-threads")

    def startService(self) -> None:
        super().startService()
        self._pool.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        # Joins the workers; each job is sub-millisecond so this is quick.
        # A pool stopped already raises AlreadyQuit on a second stop.
        if not self._pool.joined:
            self._pool.stop()
        return succeed(None)

    def run(self, fn: Callable[..., R], *args: Any) -> Deferred[R]:
        if not self._pool.started:
            return InlineCrypto().run(fn, *args)
        d: Deferred[R] = deferToThreadPool(self._reactor, self._pool, fn, *args)
        return d


@attrs.frozen
class _KeyEntry:
    secret: SecretKey | None  # None: KS said unknown (negative entry)
    valid_until: float  # seconds; inf for never-expiring keys

    def usable(self, now: float) -> bool:
        return now <= self.valid_until


def _key_valid_until(key: SecretKey) -> float:
    if key.expires_at <= 0:
        return float("inf")
    return float(key.expires_at + key.tolerance_seconds)


def _in_tolerance(key: SecretKey, now: float) -> bool:
    return key.expires_at > 0 and key.expires_at < now <= _key_valid_until(key)


class TokenValidator:
    """Implements :class:`actrix.core.interfaces.CredentialValidator`."""

    def __init__(
        self,
        key_provider: KeyProvider,
        clock: IReactorTime,
        crypto: CryptoRunner | None = None,
        negative_ttl: float = NEGATIVE_TTL,
        max_keys: int = MAX_KEYS,
        max_tokens: int = MAX_TOKENS,
        max_pending: int = MAX_PENDING_FETCHES,
    ) -> None:
        self._keys_source = key_provider
        self._max_pending = max_pending
        self._clock = clock
        self._crypto: CryptoRunner = crypto or InlineCrypto()
        self._negative_ttl = negative_ttl
        self._max_keys = max_keys
        self._max_tokens = max_tokens
        self._keys: dict[int, _KeyEntry] = {}
        self._pending: dict[int, list[Deferred[SecretKey | None]]] = {}
        self._tokens: OrderedDict[tuple[int, bytes], Claims] = OrderedDict()
        self.stats = ValidatorStats()

    async def validate(
        self, encrypted_token: bytes, key_id: int, expected_realm: int
    ) -> Claims:
        """Decrypt and check a token; the claims carry ``key_in_tolerance``.

        Raises:
            CredentialError: with the signaling.md §4.2 reason.
        """
        key = await self._secret_for(key_id)
        now = self._clock.seconds()
        if key is None:
            self.stats.rejected += 1
            raise CredentialError(
                "unknown_key",
                f"Token decryption failed: KS error: Key not found: {key_id}",
            )
        if now > _key_valid_until(key):
            self.stats.rejected += 1
            raise CredentialError(
                "unknown_key",
                f"Token decryption failed: KS error: Key {key_id} has expired",
            )
        cache_key = (key_id, hashlib.sha256(encrypted_token).digest())
        claims = self._tokens.get(cache_key)
        if claims is not None:
            self._tokens.move_to_end(cache_key)
            self.stats.token_hits += 1
        else:
            claims = await self._decrypt(key, encrypted_token)
            now = self._clock.seconds()
        if now > claims.expr_time:
            self._tokens.pop(cache_key, None)
            self.stats.rejected += 1
            raise CredentialError("expired", "Token has expired")
        if claims.realm_id != expected_realm:
            self.stats.rejected += 1
            raise CredentialError(
                "realm_mismatch", "Token decryption failed: Realm ID mismatch"
            )
        if cache_key not in self._tokens:
            self._tokens[cache_key] = claims
            if len(self._tokens) > self._max_tokens:
                self._tokens.popitem(last=False)
        self.stats.accepted += 1
        if _in_tolerance(key, now):
            return attrs.evolve(claims, key_in_tolerance=True)
        return claims

    def remember(self, key_id: int, encrypted_token: bytes, claims: Claims) -> None:
        """Cache the claims of a token this process has just issued.

        The in-process AIS calls this with the claims it encrypted, so the
        first use of a new identity needs no decryption (~140 µs of ECIES).
        The key itself is still fetched and checked on that first use.
        """
        cache_key = (key_id, hashlib.sha256(encrypted_token).digest())
        self._tokens[cache_key] = claims
        self._tokens.move_to_end(cache_key)
        if len(self._tokens) > self._max_tokens:
            self._tokens.popitem(last=False)

    def validate_cached(
        self, encrypted_token: bytes, key_id: int, expected_realm: int
    ) -> Claims | None:
        """The claims of a token already in the cache, checked now; else None.

        A synchronous fast path for callers that check the same token on every
        message: it answers only when :meth:`validate` would accept the token
        without a KS call or a decryption (key cached and usable, token in the
        LRU, not expired, realm matching). Any other case returns None and the
        caller uses :meth:`validate`, which gives the exact error.
        """
        entry = self._keys.get(key_id)
        if entry is None or entry.secret is None:
            return None
        now = self._clock.seconds()
        if not entry.usable(now):
            return None
        cache_key = (key_id, hashlib.sha256(encrypted_token).digest())
        claims = self._tokens.get(cache_key)
        if (
            claims is None
            or now > claims.expr_time
            or claims.realm_id != expected_realm
        ):
            return None
        self._tokens.move_to_end(cache_key)
        self.stats.token_hits += 1
        self.stats.accepted += 1
        if _in_tolerance(entry.secret, now):
            return attrs.evolve(claims, key_in_tolerance=True)
        return claims

    def cached_until(
        self, encrypted_token: bytes, key_id: int, expected_realm: int
    ) -> tuple[Claims, float] | None:
        """:meth:`validate_cached`, and until when (seconds) its answer holds.

        The answer stands until the token expires, the key stops being usable,
        or the key enters its tolerance period (``key_in_tolerance`` changes),
        whichever comes first, so a caller may keep it that long (signaling
        keeps one per session and checks only the clock on later relays).
        """
        claims = self.validate_cached(encrypted_token, key_id, expected_realm)
        if claims is None:
            return None
        entry = self._keys[key_id]  # validate_cached found it usable
        secret = entry.secret
        until = min(float(claims.expr_time), entry.valid_until)
        if secret is not None and secret.expires_at > 0 and not claims.key_in_tolerance:
            until = min(until, float(secret.expires_at))
        return claims, until

    async def _decrypt(self, key: SecretKey, token: bytes) -> Claims:
        self.stats.decryptions += 1
        try:
            return await self._crypto.run(tokens.decrypt_token, key.secret_key, token)
        except tokens.TokenError as e:
            self.stats.rejected += 1
            if e.kind == "claims":
                raise CredentialError(
                    "claims", f"Token decryption failed: Deserialization error: {e}"
                ) from e
            raise CredentialError(
                "decrypt", f"Token decryption failed: Decryption error: {e}"
            ) from e

    async def _secret_for(self, key_id: int) -> SecretKey | None:
        now = self._clock.seconds()
        entry = self._keys.get(key_id)
        if entry is not None:
            if entry.usable(now):
                return entry.secret
            del self._keys[key_id]
        waiters = self._pending.get(key_id)
        if waiters is not None:
            d: Deferred[SecretKey | None] = Deferred()
            waiters.append(d)
            return await d
        if len(self._pending) >= self._max_pending:
            self.stats.rejected += 1
            raise CredentialError(
                "ks_error", "Token decryption failed: KS error: too many key lookups"
            )
        self._pending[key_id] = []
        try:
            key = await self._fetch(key_id)
        except Exception as e:
            # Any failure (not only CredentialError) must release the waiters
            # and the slot, or every later lookup of this key would hang.
            for waiter in self._pending.pop(key_id, []):
                waiter.errback(_own_copy(e))
            raise
        for waiter in self._pending.pop(key_id, []):
            waiter.callback(key)
        return key

    async def _fetch(self, key_id: int) -> SecretKey | None:
        self.stats.key_fetches += 1
        try:
            key = await self._keys_source.secret_key(key_id)
        except KeyProviderError as e:
            self.stats.rejected += 1
            log.warn(
                "KS lookup of key {key_id} failed: {error}", key_id=key_id, error=e
            )
            raise CredentialError(
                "ks_error", f"Token decryption failed: KS error: {e}"
            ) from e
        now = self._clock.seconds()
        if key is None:
            entry = _KeyEntry(None, now + self._negative_ttl)
        else:
            entry = _KeyEntry(key, _key_valid_until(key))
        if len(self._keys) >= self._max_keys:
            self._evict(now)
        self._keys[key_id] = entry
        return key

    def _evict(self, now: float) -> None:
        for key_id in [k for k, e in self._keys.items() if not e.usable(now)]:
            del self._keys[key_id]
        while len(self._keys) >= self._max_keys:
            del self._keys[next(iter(self._keys))]


def _own_copy(error: Exception) -> Exception:
    """A new exception per waiter, without a traceback.

    One shared object raised again in every waiter would gain each waiter's
    frames on its traceback, and whoever caches it would keep them all.
    """
    if isinstance(error, CredentialError):
        return CredentialError(error.kind, error.reason, error.code)
    fresh = own_copy(error)
    if isinstance(fresh, Exception) and type(fresh) is type(error):
        return fresh
    return CredentialError("ks_error", f"Token decryption failed: KS error: {error}")


@attrs.define(eq=False)
class ValidatorStats:
    """Counters for metrics (``actrix_credentials_*``)."""

    accepted: int = 0
    rejected: int = 0
    decryptions: int = 0
    token_hits: int = 0
    key_fetches: int = 0

    def collect(self) -> Iterator[Metric]:
        for name, doc, value in (
            ("accepted", "Identity tokens accepted", self.accepted),
            ("rejected", "Identity tokens rejected", self.rejected),
            ("decryptions", "ECIES decryptions performed", self.decryptions),
            (
                "token_cache_hits",
                "Validations served from the token LRU",
                self.token_hits,
            ),
            ("key_fetches", "KS secret lookups", self.key_fetches),
        ):
            yield CounterMetricFamily(f"actrix_credentials_{name}", doc, value=value)


CRYPTO_BUDGET: Final = 200e-6


def measure_decrypt(samples: int = 100, warmup: int = 20) -> float:
    """Seconds one token decryption costs on this machine (~20 ms to measure).

    The first calls pay for imports, key parsing and cold caches, so they are
    not counted, and the fastest sample is taken: it is the work's own cost,
    while slower samples measure whatever else the machine was doing at startup
    (a busy startup must not flip the inline/thread-pool choice).
    """
    import time

    import coincurve

    secret = coincurve.PrivateKey()
    claims = Claims(1, "1@1/acme:calibrate", 1, bytes(tokens.PSK_LEN))
    token = tokens.encrypt_token(secret.public_key.format(compressed=True), claims)
    for _ in range(warmup):
        tokens.decrypt_token(secret.secret, token)
    timings = []
    for _ in range(samples):
        start = time.perf_counter()
        tokens.decrypt_token(secret.secret, token)
        timings.append(time.perf_counter() - start)
    return min(timings)


def choose_crypto(
    reactor: Any, background: Any, budget: float = CRYPTO_BUDGET
) -> CryptoRunner:
    """Inline ECIES when one call fits the reactor budget, else the thread pool.

    The decision is measured once per daemon and logged; the pool (when used)
    is one background service shared by AIS and the validator.
    """
    try:
        existing: CryptoRunner = background.getServiceNamed("crypto-threads")
        return existing
    except KeyError:
        pass
    cost = measure_decrypt()
    if cost <= budget:
        log.info(
            "ECIES decrypt takes {us:.0f} us: running it on the reactor",
            us=cost * 1e6,
        )
        return InlineCrypto()
    log.info(
        "ECIES decrypt takes {us:.0f} us: running it on a thread pool",
        us=cost * 1e6,
    )
    return shared_crypto_threads(reactor, background)


def shared_crypto_threads(reactor: Any, background: Any) -> CryptoThreads:
    """The daemon's one crypto pool, created in ``background`` on first use."""
    try:
        existing: CryptoThreads = background.getServiceNamed("crypto-threads")
    except KeyError:
        existing = CryptoThreads(reactor)
        existing.setServiceParent(background)
    return existing
