"""HTTP(S) clients for node-to-node calls (KS and AIS clients): treq on a pool.

TLS verifies the server certificate: against ``ca_cert`` when given (else the
platform's roots), for the name ``tls_domain`` when given (else the URL's host),
presenting ``client_cert``/``client_key`` for mutual TLS when both are given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from treq.client import HTTPClient
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from actrix.core.config import KsClientConfig

MAX_PERSISTENT_PER_HOST = 16


@attrs.frozen
class PooledHttp:
    """A treq client and the connection pool to close at shutdown."""

    client: Any  # treq HTTPClient or treq.testing.StubTreq
    pool: HTTPConnectionPool | None = None

    def close(self) -> Deferred[None]:
        """Close idle persistent connections."""
        if self.pool is None:
            d: Deferred[None] = Deferred()
            d.callback(None)
            return d
        closed: Deferred[None] = self.pool.closeCachedConnections()
        return closed


@implementer(IPolicyForHTTPS)
class VerifyingPolicy:
    """Certificate verification with an optional private CA, name and client cert."""

    def __init__(
        self,
        ca_cert: Path | None = None,
        tls_domain: str | None = None,
        client_cert: Path | None = None,
        client_key: Path | None = None,
    ) -> None:
        self._trust: Any = (
            ssl.Certificate.loadPEM(ca_cert.read_bytes())
            if ca_cert is not None
            else ssl.platformTrust()
        )
        self._domain = tls_domain
        self._client: ssl.PrivateCertificate | None = None
        if client_cert is not None and client_key is not None:
            self._client = ssl.PrivateCertificate.loadPEM(
                client_cert.read_bytes() + b"\n" + client_key.read_bytes()
            )

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        name = self._domain or hostname.decode("ascii")
        if self._client is not None:
            return ssl.optionsForClientTLS(
                name, trustRoot=self._trust, clientCertificate=self._client
            )
        return ssl.optionsForClientTLS(name, trustRoot=self._trust)


def build_http_client(reactor: Any, config: KsClientConfig | None = None) -> PooledHttp:
    """A pooled treq client; TLS settings from a ``dependencies.ks`` table."""
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = MAX_PERSISTENT_PER_HOST
    pool.retryAutomatically = False
    policy = VerifyingPolicy(
        ca_cert=config.ca_cert if config else None,
        tls_domain=config.tls_domain if config else None,
        client_cert=config.client_cert if config else None,
        client_key=config.client_key if config else None,
    )
    agent = Agent(reactor, contextFactory=policy, pool=pool)
    return PooledHttp(HTTPClient(agent), pool)
