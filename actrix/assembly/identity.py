"""Builders of the identity services: KS, AIS, the shared nonce verifier and
the credential validator every other service checks tokens with."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from actrix.assembly import StartupError, Wiring
from actrix.core.auth import NonceVerifier
from actrix.core.config import (
    KsClientConfig,
)
from actrix.core.http import (
    KleinGuard,
)
from actrix.core.interfaces import (
    KeyProvider,
)
from actrix.core.storage import StorageError, open_store

if TYPE_CHECKING:
    from actrix.ks.client import KeyServerClient


log = Logger()


def nonce_verifier(wiring: Wiring) -> NonceVerifier:
    """The one ``nonce.db`` verifier KS and AIS share (a nonce is used once on both).

    Built by whichever of them comes first, once its own setup has succeeded,
    and handed to the other.
    """
    from actrix.core.nonces import STORE, NonceStore, cleanup_timer

    if wiring.verifier is None:
        settings, reactor = wiring.settings, wiring.reactor
        database = open_store(settings.storage, settings.sqlite_path, STORE, reactor)
        wiring.root.add_database(database)
        store = NonceStore(database)
        wiring.root.add_background(cleanup_timer(store, reactor))
        wiring.verifier = NonceVerifier(
            settings.actrix_shared_key.encode(), store, reactor
        )
    return wiring.verifier


def ks_client(wiring: Wiring, config: KsClientConfig) -> KeyServerClient:
    """The daemon's client for a ``dependencies.ks`` table, built on first use.

    AIS and the credential validator often name the same remote KS; they share
    one client and its connection pool.
    """
    from actrix.ks.client import KeyServerClient

    client = wiring.ks_clients.get(config)
    if client is None:
        client = KeyServerClient.from_config(
            config, wiring.settings.actrix_shared_key.encode(), wiring.reactor
        )
        if len(wiring.ks_clients) > 0:  # service names must stay unique
            client.setName(f"{client.name} #{len(wiring.ks_clients) + 1}")
        client.setServiceParent(wiring.root.background)
        wiring.ks_clients[config] = client
    return client


def build_ks(wiring: Wiring) -> None:
    """KS (bit 16): ``/ks`` and the in-process KeyProvider."""
    from actrix.core.config import ENABLE_KS
    from actrix.ks.kek import KekError, load_kek
    from actrix.ks.metrics import KsMetrics
    from actrix.ks.resource import KsResource
    from actrix.ks.service import KeyService, check_kek_sync
    from actrix.ks.store import STORE, KeyStore

    settings = wiring.settings
    config = settings.services.ks
    if not settings.enabled(ENABLE_KS) or config is None:
        return
    try:
        kek = load_kek(config)
    except KekError as e:
        raise StartupError(str(e)) from e
    database = open_store(settings.storage, settings.sqlite_path, STORE, wiring.reactor)
    try:
        check_kek_sync(database, kek)
    except (KekError, StorageError) as e:
        database.close()
        raise StartupError(str(e)) from e
    wiring.root.add_database(database)
    metrics = KsMetrics()
    service = KeyService(
        KeyStore(database),
        wiring.reactor,
        key_ttl_seconds=config.storage.key_ttl_seconds,
        tolerance_seconds=config.tolerance_seconds,
        kek=kek,
        metrics=metrics,
    )
    wiring.root.add_background(service.cleanup_timer(config.cleanup_interval_seconds))
    wiring.metrics.register(metrics)
    resource = KsResource(
        service, nonce_verifier(wiring), wiring.reactor, metrics, wiring.throttle
    )
    wiring.site.mount("ks", KleinGuard(resource.app.resource()))
    wiring.key_provider = service


def build_ais(wiring: Wiring) -> None:
    """AIS (bit 8): ``/ais`` and the in-process IdentityIssuer."""
    from actrix.ais.metrics import AisMetrics
    from actrix.ais.ratelimit import IpRateLimiter
    from actrix.ais.resource import AisResource
    from actrix.ais.serials import SerialGenerator
    from actrix.ais.service import IdentityIssuer
    from actrix.ais.store import STORE, CurrentKeyStore
    from actrix.core.config import ENABLE_AIS
    from actrix.core.credentials import choose_crypto
    from actrix.core.sealer import TokenSealer

    settings = wiring.settings
    config = settings.services.ais
    if not settings.enabled(ENABLE_AIS) or config is None:
        return
    reactor = wiring.reactor
    keys: KeyProvider | None = wiring.key_provider
    if config.ks is not None:
        keys = ks_client(wiring, config.ks)
    if keys is None:
        raise StartupError("services.ais: no KS (local KS off, no dependencies.ks)")
    database = open_store(settings.storage, settings.sqlite_path, STORE, reactor)
    wiring.root.add_database(database)
    metrics = AisMetrics()
    crypto = choose_crypto(reactor, wiring.root.background)
    # Tokens are sealed in a child process (the reactor's core stays free);
    # the crypto runner takes over whenever that process cannot.
    sealer = TokenSealer(reactor, crypto)
    wiring.root.add_background(sealer)
    wiring.metrics.register(sealer.stats)
    issuer = IdentityIssuer(
        keys,
        CurrentKeyStore(database),
        reactor,
        SerialGenerator(lambda: int(reactor.seconds() * 1000)),
        token_ttl_secs=config.token_ttl_secs,
        heartbeat_interval_secs=config.signaling_heartbeat_interval_secs,
        crypto=crypto,
        metrics=metrics,
        seal=sealer.encrypt_token,
    )
    wiring.root.add_background(issuer.refresh_timer())
    wiring.metrics.register(metrics)
    verifier = nonce_verifier(wiring)
    limiter = IpRateLimiter(
        reactor, config.register_rate_per_second, config.register_burst
    )
    resource = AisResource(issuer, verifier, limiter, metrics, wiring.throttle)
    wiring.site.mount("ais", KleinGuard(resource.app.resource()))
    wiring.health_checks["ais"] = lambda: issuer.current is not None
    wiring.identity_issuer = issuer


def build_validator(wiring: Wiring) -> None:
    """The CredentialValidator for signaling and TURN (local KS or KS client)."""
    from actrix.ais.service import IdentityIssuer
    from actrix.core.config import ENABLE_SIGNALING, ENABLE_TURN
    from actrix.core.credentials import TokenValidator, choose_crypto
    from actrix.core.revocations import RevokingValidator

    settings = wiring.settings
    if not (settings.enabled(ENABLE_SIGNALING) or settings.enabled(ENABLE_TURN)):
        return
    signaling, ais = settings.services.signaling, settings.services.ais
    # An explicit signaling dependency wins; then the local KS; then AIS's KS.
    remote = signaling.ks if signaling is not None else None
    if remote is None and wiring.key_provider is None and ais is not None:
        remote = ais.ks
    keys: KeyProvider | None = wiring.key_provider
    if remote is not None:
        keys = ks_client(wiring, remote)
    if keys is None:
        log.warn("no KS configured: identity credentials cannot be validated")
        return
    validator = TokenValidator(
        keys,
        wiring.reactor,
        crypto=choose_crypto(wiring.reactor, wiring.root.background),
    )
    wiring.metrics.register(validator.stats)
    assert wiring.revocations is not None  # noqa: S101 (built first)
    wiring.credential_validator = RevokingValidator(validator, wiring.revocations)
    issuer = wiring.identity_issuer
    if isinstance(issuer, IdentityIssuer) and issuer.keys is keys:
        # Same KS, same key ids: tokens issued here are known without ECIES.
        issuer.on_issued = validator.remember
