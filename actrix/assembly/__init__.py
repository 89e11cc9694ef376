"""The daemon's assembly: one builder per service, joined by :class:`Wiring`.

:mod:`actrix.tap` calls the builders in dependency order. Each builder owns one
service: it reads ``wiring.settings``, checks its enable bit, creates the
service's store/service/resource, mounts it on ``wiring.site`` or adds listeners
to ``wiring.root``, registers its metrics collector on ``wiring.metrics`` and,
where other services depend on it, sets ``wiring.key_provider`` /
``identity_issuer`` / ``credential_validator``. Imports stay inside each builder
so a daemon loads only what it runs. Services never import each other; here each
is given the others through the small interfaces in :mod:`actrix.core.interfaces`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from actrix.core.auth import NonceVerifier
from actrix.core.config import KsClientConfig, Settings
from actrix.core.http import SiteRoot
from actrix.core.interfaces import (
    CredentialValidator,
    IdentityIssuer,
    KeyProvider,
)
from actrix.core.logthrottle import LogThrottle
from actrix.core.metrics import MetricsRegistry
from actrix.core.realms import RealmCache
from actrix.core.revocations import RevocationList
from actrix.core.tls import ServerTLS
from actrix.root import ActrixService
from actrix.workers import WorkerRole

if TYPE_CHECKING:
    from actrix.core.revocation import Revoker
    from actrix.ks.client import KeyServerClient


@attrs.define
class Wiring:
    """What the service builders share while the daemon is assembled."""

    settings: Settings
    reactor: Any
    root: ActrixService
    site: SiteRoot
    metrics: MetricsRegistry
    realms: RealmCache
    throttle: LogThrottle
    tls: ServerTLS | None = None
    verifier: NonceVerifier | None = None
    ks_clients: dict[KsClientConfig, KeyServerClient] = attrs.Factory(dict)
    key_provider: KeyProvider | None = None
    identity_issuer: IdentityIssuer | None = None
    credential_validator: CredentialValidator | None = None
    health_checks: dict[str, Any] = attrs.Factory(dict)
    health_details: dict[str, Any] = attrs.Factory(dict)
    revocations: RevocationList | None = None
    # The services revocation ends things in and the admin API shows and steers
    # (None when off), set by the builders that make them, and the Revoker
    # built from them: what the admin API calls.
    realm_db: Any = None
    directory: Any = None
    signaling: Any = None
    turn: Any = None
    rooms: Any = None
    revoker: Revoker | None = None
    worker: WorkerRole | None = None


class StartupError(Exception):
    """The daemon cannot be built from this configuration (one-line message)."""
