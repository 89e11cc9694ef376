"""AIS counters for ``/metrics`` (``actrix_ais_*``)."""

from __future__ import annotations

from collections.abc import Iterator

import attrs
from prometheus_client.core import CounterMetricFamily, Metric


@attrs.define(eq=False)
class AisMetrics:
    """Plain counters kept by the AIS service and resource."""

    registrations: int = 0
    registration_errors: int = 0
    refreshes: int = 0
    rotations: int = 0
    rotation_errors: int = 0
    rate_limited: int = 0
    auth_failures: int = 0

    def collect(self) -> Iterator[Metric]:
        for name, doc, value in (
            ("registrations", "Identities issued", self.registrations),
            (
                "registration_errors",
                "Valid register calls that failed to issue (KS, encryption)",
                self.registration_errors,
            ),
            (
                "refreshes",
                "Credentials refreshed for an existing ActrId",
                self.refreshes,
            ),
            ("rotations", "Signing keys fetched from KS", self.rotations),
            ("rotation_errors", "Failed key fetches", self.rotation_errors),
            ("rate_limited", "Requests refused with 429", self.rate_limited),
            (
                "auth_failures",
                "Requests refused for their credential",
                self.auth_failures,
            ),
        ):
            yield CounterMetricFamily(f"actrix_ais_{name}", doc, value=value)
