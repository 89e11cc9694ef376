"""Prometheus metrics: one registry per daemon, and the ``/metrics`` resource.

Services keep plain integer counters on their own small metrics objects (an
increment on a per-packet path is one attribute add) and expose them through a
``collect()`` method yielding metric families; :meth:`MetricsRegistry.register`
adds such an object to the registry. Labels never carry actor ids or usernames.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from twisted.web.resource import Resource
from twisted.web.server import Request

from actrix.core.config import MetricsConfig
from actrix.core.http import json_response


class Collector(Protocol):
    """Anything with a prometheus-client ``collect()``."""

    def collect(self) -> Iterable[Metric]: ...


class MetricsRegistry:
    """The daemon's metrics: process and platform collectors plus the services'."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.collectors: list[Collector] = []  # the services' (admin time series)

    def register(self, collector: Collector) -> None:
        """Add a service's collector."""
        self.registry.register(collector)
        self.collectors.append(collector)

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)


class MetricsResource(Resource):
    """``GET /metrics``, optionally behind a bearer token and an IP allow-list."""

    isLeaf = True

    def __init__(self, metrics: MetricsRegistry, config: MetricsConfig) -> None:
        super().__init__()
        self._metrics = metrics
        self._token = config.token
        self._allow = [ipaddress.ip_network(n, strict=False) for n in config.allow]

    def _client_allowed(self, request: Request) -> bool:
        if not self._allow:
            return True
        peer = request.getClientAddress()
        host = getattr(peer, "host", None)
        if host is None:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self._allow)

    def render_GET(self, request: Request) -> bytes:
        if not self._client_allowed(request):
            return json_response(request, 403, {"error": "Forbidden", "code": 403})
        if self._token is not None:
            header = request.getHeader(b"authorization") or b""
            expected = b"Bearer " + self._token.encode()
            if not hmac.compare_digest(header, expected):
                request.setHeader(b"www-authenticate", b'Bearer realm="metrics"')
                return json_response(
                    request, 401, {"error": "Authentication required", "code": 401}
                )
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return self._metrics.render()
