"""Room counters and gauges, exported by ``collect()`` (``actrix_rooms_*``).

Labels carry error codes and reasons only, never peer or room names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


class RoomMetrics:
    """What the room endpoints count; gauges are read from the service."""

    def __init__(self) -> None:
        self.messages_in = 0
        self.refusals: Counter[str] = Counter()  # by §9 code
        self.connections_refused: Counter[str] = Counter()  # "429" | "503"
        self.closed: Counter[str] = Counter()  # idle | flood | slow_reader
        self.live: Callable[[], tuple[int, int, int]] = lambda: (0, 0, 0)

    def collect(self) -> Iterator[Metric]:
        connections, rooms, members = self.live()
        for name, text, value in (
            ("actrix_rooms_connections", "Room WebSockets open now", connections),
            ("actrix_rooms_rooms", "Live rooms", rooms),
            ("actrix_rooms_members", "Members of live rooms", members),
        ):
            gauge = GaugeMetricFamily(name, text)
            gauge.add_metric([], value)
            yield gauge
        counter = CounterMetricFamily(
            "actrix_rooms_messages_in", "Room frames admitted by the rate limit"
        )
        counter.add_metric([], self.messages_in)
        yield counter
        for name, text, label, values in (
            (
                "actrix_rooms_refusals",
                "Requests answered with an error",
                "code",
                self.refusals,
            ),
            (
                "actrix_rooms_connections_refused",
                "Upgrades refused by a connection cap",
                "status",
                self.connections_refused,
            ),
            (
                "actrix_rooms_closed",
                "Connections closed by the server",
                "reason",
                self.closed,
            ),
        ):
            family = CounterMetricFamily(name, text, labels=[label])
            for key, count in sorted(values.items()):
                family.add_metric([key], count)
            yield family
