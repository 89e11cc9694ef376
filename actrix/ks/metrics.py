"""KS counters for ``/metrics`` (``actrix_ks_*``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import attrs
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


@attrs.define(eq=False)
class KsMetrics:
    """Plain counters kept by the KS service and resource."""

    keys_generated: int = 0
    secrets_served: int = 0
    keys_deleted: int = 0
    key_count: int = 0  # last known, refreshed by generate/cleanup/health
    requests: Counter[int] = attrs.Factory(Counter)

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "actrix_ks_keys_generated", "Key pairs generated", value=self.keys_generated
        )
        yield CounterMetricFamily(
            "actrix_ks_secrets_served",
            "Secret keys handed out",
            value=self.secrets_served,
        )
        yield CounterMetricFamily(
            "actrix_ks_keys_deleted", "Expired keys deleted", value=self.keys_deleted
        )
        yield GaugeMetricFamily(
            "actrix_ks_keys", "Stored key pairs (last known)", value=self.key_count
        )
        requests = CounterMetricFamily(
            "actrix_ks_requests", "KS HTTP requests by status", labels=["status"]
        )
        for status, count in sorted(self.requests.items()):
            requests.add_metric([str(status)], count)
        yield requests
