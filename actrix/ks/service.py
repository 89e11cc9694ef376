"""The in-process Key Server: mints secp256k1 pairs and hands out secrets (ks.md).

Implements :class:`actrix.core.interfaces.KeyProvider`. Keys live in
:class:`actrix.ks.store.KeyStore`; with a KEK the secrets are sealed at rest.
"""

from __future__ import annotations

import base64
import binascii

import coincurve
from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from actrix.core.interfaces import (
    KeyProviderError,
    KeyRecord,
    KeyStoreUnavailable,
    SecretKey,
)
from actrix.core.storage import Database, StorageUnavailable
from actrix.ks import kek as kek_mod
from actrix.ks.metrics import KsMetrics
from actrix.ks.store import KeyRow, KeyStore, newest_key_txn

log = Logger()

ROW_CACHE_SIZE = 4096


class KeyService:
    """Key pairs with a TTL (0 = never expire) and a tolerance after expiry."""

    def __init__(
        self,
        store: KeyStore,
        clock: IReactorTime,
        key_ttl_seconds: int,
        tolerance_seconds: int,
        kek: bytes | None = None,
        metrics: KsMetrics | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self.key_ttl_seconds = key_ttl_seconds
        self.tolerance_seconds = tolerance_seconds
        self._kek = kek
        self.metrics = metrics or KsMetrics()
        # Rows never change once written, so lookups are served from memory
        # after the first read (expiry is still checked on every call).
        self._rows: dict[int, KeyRow] = {}

    async def generate_key(self) -> KeyRecord:
        """Create, store and return a new key pair's public half.

        Raises:
            KeyProviderError: the store failed.
        """
        secret = coincurve.PrivateKey()
        public = secret.public_key.format(compressed=True)
        secret_b64 = base64.b64encode(secret.secret).decode("ascii")
        stored = (
            secret_b64 if self._kek is None else kek_mod.seal(self._kek, secret_b64)
        )
        now = int(self._clock.seconds())
        expires_at = 0 if self.key_ttl_seconds == 0 else now + self.key_ttl_seconds
        try:
            key_id = await self._store.insert_key(
                base64.b64encode(public).decode("ascii"), stored, now, expires_at
            )
        except StorageUnavailable as e:
            log.warn("KS key not stored: {error}", error=e)
            raise KeyStoreUnavailable("key store unavailable") from e
        except Exception as e:
            log.failure("while storing a new key")
            raise KeyProviderError("Failed to store key") from e
        self._remember(KeyRow(key_id, "", stored, now, expires_at))
        self.metrics.keys_generated += 1
        self.metrics.key_count += 1
        log.info("generated KS key {key_id}", key_id=key_id)
        return KeyRecord(key_id, public, expires_at, self.tolerance_seconds)

    async def secret_key(self, key_id: int) -> SecretKey | None:
        """The secret of ``key_id``; None if unknown or past expiry + tolerance.

        Raises:
            KeyProviderError: the store failed or the secret cannot be unsealed.
        """
        row = self._rows.get(key_id)
        if row is None:
            try:
                row = await self._store.get_key(key_id)
            except StorageUnavailable as e:
                log.warn("KS key {key_id} not loaded: {error}", key_id=key_id, error=e)
                raise KeyStoreUnavailable("key store unavailable") from e
            except Exception as e:
                log.failure("while loading key {key_id}", key_id=key_id)
                raise KeyProviderError("Failed to load key") from e
            if row is None:
                return None
            self._remember(row)
        now = int(self._clock.seconds())
        if row.expires_at > 0 and row.expires_at + self.tolerance_seconds < now:
            log.info("key {key_id} is past its tolerance", key_id=key_id)
            return None
        if row.expires_at > 0 and row.expires_at < now:
            log.debug("key {key_id} served in its tolerance window", key_id=key_id)
        secret = self._open(row)
        self.metrics.secrets_served += 1
        return SecretKey(key_id, secret, row.expires_at, self.tolerance_seconds)

    def _remember(self, row: KeyRow) -> None:
        if len(self._rows) >= ROW_CACHE_SIZE:
            del self._rows[next(iter(self._rows))]
        self._rows[row.key_id] = row

    def _open(self, row: KeyRow) -> bytes:
        try:
            text = row.secret_key
            if self._kek is not None:
                text = kek_mod.unseal(self._kek, text)
            secret = base64.b64decode(text, validate=True)
        except (kek_mod.KekError, binascii.Error, ValueError) as e:
            log.error(
                "stored secret of key {key_id} cannot be opened", key_id=row.key_id
            )
            raise KeyProviderError("Failed to decrypt key") from e
        if len(secret) != 32:
            raise KeyProviderError("Stored secret has the wrong length")
        return secret

    @property
    def backend(self) -> str:
        """The store's engine, ``SQLite`` or ``PostgreSQL``."""
        return self._store.backend

    async def key_count(self) -> int:
        """Stored rows, expired ones included (ks.md §2.3). Raises on DB errors."""
        count = await self._store.count_keys()
        self.metrics.key_count = count
        return count

    async def delete_expired(self) -> int:
        """Delete keys past expiry + tolerance (the original ignored tolerance)."""
        now = int(self._clock.seconds())
        removed = await self._store.delete_expired(now, self.tolerance_seconds)
        for key_id, row in list(self._rows.items()):
            if row.expires_at > 0 and row.expires_at + self.tolerance_seconds < now:
                del self._rows[key_id]
        if removed:
            self.metrics.keys_deleted += removed
            self.metrics.key_count = max(0, self.metrics.key_count - removed)
            log.info("deleted {count} expired KS keys", count=removed)
        return removed

    def cleanup_timer(self, interval: float) -> TimerService:
        """A TimerService running :meth:`delete_expired` every ``interval`` s."""

        async def sweep() -> None:
            try:
                await self.delete_expired()
            except Exception:
                log.failure("while deleting expired KS keys")

        def tick() -> Deferred[None]:
            return Deferred.fromCoroutine(sweep())

        timer = TimerService(interval, tick)
        timer.clock = self._clock
        timer.setName("ks-cleanup")
        return timer


def check_kek_sync(database: Database, kek: bytes | None) -> None:
    """At startup: refuse a KEK (or its absence) that cannot open the stored keys.

    Reads the newest row synchronously (before the reactor runs).

    Raises:
        KekError: the newest stored secret does not open with this configuration.
    """
    path = database.label
    row = database.run_sync(newest_key_txn)
    if row is None:
        return
    try:
        text = row.secret_key if kek is None else kek_mod.unseal(kek, row.secret_key)
        secret = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise kek_mod.KekError(
            f"{path}: stored secrets are sealed with a KEK; configure services.ks.kek*"
        ) from e
    except kek_mod.KekError as e:
        raise kek_mod.KekError(f"{path}: the configured KEK is wrong: {e}") from e
    if len(secret) != 32:
        raise kek_mod.KekError(
            f"{path}: stored secrets are sealed with a KEK; configure services.ks.kek*"
        )
