"""The in-process AIS: ActrIds, identity tokens and the current KS key (ais.md).

Implements :class:`actrix.core.interfaces.IdentityIssuer`. ``register`` mints a
new snowflake serial; ``refresh`` issues a new token and PSK for the SAME ActrId
(the original minted a new serial on credential update, which broke relays).
The token is ECIES-encrypted to the current KS public key by ``seal`` (the
daemon passes :class:`~actrix.core.sealer.TokenSealer`'s child process) or else
on the crypto runner. The key is loaded from ``ais_keys.db`` or fetched from
KS, and replaced 10 minutes before it expires (checked every 600 s) or on
demand.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any, Final

from google.protobuf.timestamp_pb2 import Timestamp
from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

import actrix
from actrix.ais.metrics import AisMetrics
from actrix.ais.serials import SerialGenerator
from actrix.ais.store import CurrentKey, CurrentKeyStore
from actrix.core import tokens
from actrix.core.actrid import actr_id_repr
from actrix.core.credentials import CryptoRunner, InlineCrypto
from actrix.core.errors import own_copy
from actrix.core.interfaces import Claims, KeyProvider, KeyProviderError
from actrix.core.storage import StorageUnavailable
from actrix.proto import actr_pb2

log = Logger()

REFRESH_MARGIN: Final = 600

# (public key, claims) -> the ECIES token of the claims JSON.
Seal = Callable[[bytes, Claims], Awaitable[bytes]]
REFRESH_INTERVAL: Final = 600.0


class KeyUnavailable(Exception):
    """No signing key could be loaded or fetched."""


class IdentityIssuer:
    """Issues identities with tokens encrypted to the current KS key."""

    def __init__(
        self,
        keys: KeyProvider,
        store: CurrentKeyStore,
        clock: IReactorTime,
        serials: SerialGenerator,
        token_ttl_secs: int = 3600,
        heartbeat_interval_secs: int = 30,
        crypto: CryptoRunner | None = None,
        metrics: AisMetrics | None = None,
        seal: Seal | None = None,
    ) -> None:
        self._keys = keys
        self._store = store
        self._clock = clock
        self._serials = serials
        self._token_ttl = token_ttl_secs
        self._heartbeat = heartbeat_interval_secs
        self._crypto: CryptoRunner = crypto or InlineCrypto()
        self._seal = seal
        self.metrics = metrics or AisMetrics()
        self.current: CurrentKey | None = None
        self._loading: list[Deferred[CurrentKey]] | None = None
        # Told (key id, token, claims) of every token issued; tap.py points it
        # at the in-process validator so that token needs no decryption there.
        self.on_issued: Callable[[int, bytes, Claims], None] | None = None

    @property
    def keys(self) -> KeyProvider:
        """Where this issuer's keys come from."""
        return self._keys

    # -- IdentityIssuer ----------------------------------------------------

    async def register(
        self, request: actr_pb2.RegisterRequest
    ) -> actr_pb2.RegisterResponse:
        """A new ActrId in ``request.realm`` with ``request.actr_type`` copied.

        A request whose ``actr_type`` or ``realm`` is absent or lacks a required
        field is refused before anything is issued or counted: the ActrId built
        from it could not be serialized into the answer.
        """
        if not (
            request.HasField("actr_type")
            and request.HasField("realm")
            and request.actr_type.IsInitialized()
            and request.realm.IsInitialized()
        ):
            return _error(
                400,
                "Invalid request: actr_type (manufacturer, name) and realm "
                "(realm_id) are required",
            )
        actr_id = actr_pb2.ActrId(serial_number=self._serials.next())
        actr_id.realm.CopyFrom(request.realm)
        actr_id.type.CopyFrom(request.actr_type)
        response = await self._issue(actr_id)
        if response.HasField("success"):
            self.metrics.registrations += 1
        return response

    async def refresh(self, actr_id: actr_pb2.ActrId) -> actr_pb2.RegisterResponse:
        """A new token and PSK for ``actr_id`` itself."""
        if not actr_id.IsInitialized():
            return _error(400, "Invalid request: incomplete ActrId")
        response = await self._issue(actr_id)
        if response.HasField("success"):
            self.metrics.refreshes += 1
        return response

    async def _issue(self, actr_id: actr_pb2.ActrId) -> actr_pb2.RegisterResponse:
        try:
            key = await self.ensure_key()
        except KeyUnavailable as e:
            self.metrics.registration_errors += 1
            return _error(500, f"Token generation failed: KS unavailable: {e}")
        psk = os.urandom(tokens.PSK_LEN)
        expr_time = int(self._clock.seconds()) + self._token_ttl
        claims = Claims(
            realm_id=actr_id.realm.realm_id,
            actor_id=actr_id_repr(actr_id),
            expr_time=expr_time,
            psk=psk,
        )
        try:
            if self._seal is not None:
                token = await self._seal(key.public_key, claims)
            else:
                token = await self._crypto.run(
                    tokens.encrypt_token, key.public_key, claims
                )
        except Exception as e:
            log.failure("while encrypting a token with key {key_id}", key_id=key.key_id)
            self.metrics.registration_errors += 1
            return _error(500, f"Token generation failed: Encryption failed: {e}")
        if self.on_issued is not None:
            self.on_issued(key.key_id, token, claims)
        ok = actr_pb2.RegisterResponse.RegisterOk(
            actr_id=actr_id,
            credential=actr_pb2.AIdCredential(
                encrypted_token=token, token_key_id=key.key_id
            ),
            psk=psk,
            credential_expires_at=Timestamp(seconds=expr_time, nanos=0),
            signaling_heartbeat_interval_secs=self._heartbeat,
        )
        return actr_pb2.RegisterResponse(success=ok)

    # -- key management ----------------------------------------------------

    async def ensure_key(self) -> CurrentKey:
        """The current key, loading or fetching it first if none is loaded.

        Concurrent callers share one load. Raises KeyUnavailable.
        """
        if self.current is not None:
            return self.current
        if self._loading is not None:
            d: Deferred[CurrentKey] = Deferred()
            self._loading.append(d)
            return await d
        self._loading = []
        try:
            key = await self._load_or_fetch()
        except Exception as e:
            # Any failure must clear ``_loading``, or later callers wait forever.
            waiters, self._loading = self._loading, None
            for waiter in waiters:
                waiter.errback(own_copy(e))
            raise
        waiters, self._loading = self._loading, None
        for waiter in waiters:
            waiter.callback(key)
        return key

    async def _load_or_fetch(self) -> CurrentKey:
        now = int(self._clock.seconds())
        try:
            stored = await self._store.load()
        except Exception:
            log.failure("while loading the AIS current key")
            stored = None
        if stored is not None and now <= stored.expires_at + stored.tolerance_seconds:
            log.info("AIS loaded stored key {key_id}", key_id=stored.key_id)
            self.current = stored
            return stored
        return await self.rotate(None if stored is None else stored.key_id)

    async def rotate(self, replacing: int | None = None) -> CurrentKey:
        """Fetch a new key from KS and make it current. Raises KeyUnavailable.

        The store swaps it in only if its key is still ``replacing`` (default:
        the key in memory); when another node sharing the store rotated first,
        its key is adopted and the one just fetched stays unused.
        """
        if replacing is None and self.current is not None:
            replacing = self.current.key_id
        try:
            record = await self._keys.generate_key()
        except KeyProviderError as e:
            self.metrics.rotation_errors += 1
            raise KeyUnavailable(str(e)) from e
        if len(record.public_key) != 33:
            self.metrics.rotation_errors += 1
            raise KeyUnavailable("KS returned a public key that is not 33 bytes")
        key = CurrentKey(
            record.key_id,
            record.public_key,
            int(self._clock.seconds()),
            record.expires_at,
            record.tolerance_seconds,
        )
        try:
            winner = await self._store.replace(key, replacing)
        except StorageUnavailable as e:
            # The key still works from memory; it is saved on the next rotation.
            log.warn("AIS key {key_id} not saved: {error}", key_id=key.key_id, error=e)
        except Exception:
            log.failure("while saving AIS key {key_id}", key_id=key.key_id)
        else:
            if winner.key_id != key.key_id:
                log.info(
                    "AIS key {key_id} was rotated by another node first; using it",
                    key_id=winner.key_id,
                )
                self.current = winner
                return winner
        self.current = key
        self.metrics.rotations += 1
        log.info("AIS now encrypts to KS key {key_id}", key_id=key.key_id)
        return key

    async def refresh_if_due(self) -> None:
        """Load a key if none, else replace it from 10 min before its expiry."""
        key = await self.ensure_key()
        now = int(self._clock.seconds())
        if key.fetched_at == now:
            return  # fetched just now (startup); do not fetch twice
        if now >= key.expires_at - REFRESH_MARGIN:
            stored = await self._stored_key()
            if (
                stored is not None
                and stored.key_id != key.key_id
                and now < stored.expires_at - REFRESH_MARGIN
            ):
                # Another node sharing the store rotated already.
                log.info("AIS adopts stored key {key_id}", key_id=stored.key_id)
                self.current = stored
                return
            await self.rotate(key.key_id)

    async def _stored_key(self) -> CurrentKey | None:
        try:
            return await self._store.load()
        except StorageUnavailable as e:
            log.warn("AIS cannot read the stored key: {error}", error=e)
        except Exception:
            log.failure("while loading the AIS current key")
        return None

    def refresh_timer(self, interval: float = REFRESH_INTERVAL) -> TimerService:
        """A TimerService running :meth:`refresh_if_due` now and every 600 s."""

        async def tick_once() -> None:
            try:
                await self.refresh_if_due()
            except KeyUnavailable as e:
                log.warn("AIS key refresh failed, retrying later: {error}", error=e)
            except Exception:
                log.failure("while refreshing the AIS key")

        def tick() -> Deferred[None]:
            return Deferred.fromCoroutine(tick_once())

        timer = TimerService(interval, tick)
        timer.clock = self._clock
        timer.setName("ais-key-refresh")
        return timer

    async def health(self) -> dict[str, Any]:
        """The ``GET /ais/health`` body (ais.md §1.2)."""
        database = "ok"
        try:
            await self._store.ping()
        except Exception:
            database = "failed"
        key_cache: dict[str, Any]
        ks_ok = True
        try:
            key = await self.ensure_key()
            secret = await self._keys.secret_key(key.key_id)
            ks_ok = secret is not None
            now = int(self._clock.seconds())
            key_cache = {
                "status": "ok",
                "key_id": key.key_id,
                "expires_in": max(0, key.expires_at - now),
            }
        except (KeyUnavailable, KeyProviderError) as e:
            ks_ok = False
            key_cache = {"status": "failed", "error": str(e)}
        healthy = database == "ok" and ks_ok and key_cache["status"] == "ok"
        return {
            "service": "ais",
            "version": actrix.__version__,
            "status": "healthy" if healthy else "degraded",
            "database": database,
            "ks_service": "ok" if ks_ok else "failed",
            "key_cache": key_cache,
        }


def _error(code: int, message: str) -> actr_pb2.RegisterResponse:
    return actr_pb2.RegisterResponse(
        error=actr_pb2.ErrorResponse(code=code, message=message)
    )
