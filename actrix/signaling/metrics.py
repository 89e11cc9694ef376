"""Signaling counters: plain ints bumped on the hot paths, exported by ``collect()``.

Labels carry flow names, reasons and realm ids only, never actor ids.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


class SignalingMetrics:
    """Counters of the signaling endpoint and service."""

    def __init__(self) -> None:
        self.connections_total = 0
        self.connections_refused: Counter[str] = Counter()  # rate | concurrency
        self.messages_in: Counter[str] = Counter()  # by flow / payload
        self.messages_out: Counter[str] = Counter()
        self.relays: Counter[str] = Counter()  # forwarded | no_target | send_failed
        self.rejections: Counter[str] = Counter()  # error replies and drops by reason
        self.registrations = 0
        self.open_connections: Callable[[], int] = lambda: 0
        self.online_by_realm: Callable[[], dict[int, int]] = dict

    def collect(self) -> Iterator[Metric]:
        """Prometheus metric families (``actrix_signaling_*``)."""
        gauge = GaugeMetricFamily(
            "actrix_signaling_connections", "WebSocket sessions open now"
        )
        gauge.add_metric([], self.open_connections())
        yield gauge
        yield _counter(
            "actrix_signaling_connections_accepted",
            "WebSocket upgrades admitted",
            self.connections_total,
        )
        yield _labelled(
            "actrix_signaling_connections_refused",
            "Upgrades refused with HTTP 429",
            "reason",
            self.connections_refused,
        )
        actors = GaugeMetricFamily(
            "actrix_signaling_actors",
            "Registered actors online, by realm",
            labels=["realm"],
        )
        for realm, count in sorted(self.online_by_realm().items()):
            actors.add_metric([str(realm)], count)
        yield actors
        yield _counter(
            "actrix_signaling_registrations",
            "Successful registrations",
            self.registrations,
        )
        yield _labelled(
            "actrix_signaling_messages_in",
            "Envelopes received, by flow",
            "flow",
            self.messages_in,
        )
        yield _labelled(
            "actrix_signaling_messages_out",
            "Envelopes sent, by flow",
            "flow",
            self.messages_out,
        )
        yield _labelled(
            "actrix_signaling_relays", "Relay outcomes", "outcome", self.relays
        )
        yield _labelled(
            "actrix_signaling_rejections",
            "Messages refused or dropped, by reason",
            "reason",
            self.rejections,
        )


def _counter(name: str, doc: str, value: int) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def _labelled(
    name: str, doc: str, label: str, values: Counter[str]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family
