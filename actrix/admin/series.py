"""The metrics time series of the console: two fixed-size in-memory rings.

Once a second :class:`SeriesSampler` reads the services' Prometheus
collectors (the numbers ``/metrics`` shows), turns counters into per-second
rates and writes one sample per series into the 1 s ring (15 minutes); each
minute's mean goes into the 1 min ring (24 hours). Both rings are
``array('d')`` preallocated at start, slot = time step modulo ring length, so
memory never grows: 7 series x (900 + 1440) doubles, about 130 KiB.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

log = Logger()

SECOND_SLOTS: Final = 15 * 60
MINUTE_SLOTS: Final = 24 * 60

# Series name -> metric families summed (gauges: as they are; *_per_sec: rates).
# ``family{label=value}`` sums only the samples with that label value.
GAUGES: Final = {
    "connections": ("actrix_signaling_connections", "actrix_rooms_connections"),
    "actors": ("actrix_signaling_actors",),
    "rooms": ("actrix_rooms_rooms",),
    "allocations": ("actrix_turn_allocations_active",),
}
RATES: Final = {
    # Actor messages forwarded by signaling (TURN traffic is the bytes series).
    "relays_per_sec": ("actrix_signaling_relays{outcome=forwarded}",),
    "relayed_bytes_per_sec": ("actrix_turn_relayed_bytes",),
    "auth_failures_per_sec": (
        "actrix_turn_auth_failures",
        "actrix_credentials_rejected",
        "actrix_ais_auth_failures",
        "actrix_admin_login_failures",
    ),
}
SERIES: Final = (*GAUGES, *RATES)


def read_collectors(collectors: Iterable[Any]) -> dict[str, float]:
    """Sum of the samples of each family in GAUGES and RATES, by series name."""
    wanted: dict[str, list[tuple[str, tuple[str, str] | None]]] = {}
    for name, families in (*GAUGES.items(), *RATES.items()):
        for spec in families:
            family_name, _, selector = spec.partition("{")
            label = None
            if selector:
                key, _, value = selector.rstrip("}").partition("=")
                label = (key, value)
            wanted.setdefault(family_name, []).append((name, label))
    totals = dict.fromkeys(SERIES, 0.0)
    for collector in collectors:
        for family in collector.collect():
            targets = wanted.get(family.name)
            if targets is None:
                continue
            counter = family.type == "counter"
            for series, label in targets:
                for sample in family.samples:
                    if counter and not sample.name.endswith("_total"):
                        continue
                    if label is not None and sample.labels.get(label[0]) != label[1]:
                        continue
                    totals[series] += float(sample.value)
    return totals


class Ring:
    """One resolution: ``slots`` steps of ``step`` seconds for every series."""

    def __init__(self, step: int, slots: int) -> None:
        self.step = step
        self.slots = slots
        self._stamps = array("q", [-1]) * slots
        self._values = {name: array("d", [math.nan]) * slots for name in SERIES}
        self.newest = -1  # the newest step index written
        self.oldest = -1  # the first step index ever written

    def put(self, index: int, values: Mapping[str, float]) -> None:
        slot = index % self.slots
        self._stamps[slot] = index
        if self.oldest < 0:
            self.oldest = index
        for name, column in self._values.items():
            column[slot] = values.get(name, math.nan)
        self.newest = max(self.newest, index)

    def read(self, since: float) -> dict[str, Any]:
        """Steps from ``since`` (clamped to the ring) to the newest sample."""
        step = self.step
        if self.newest < 0:  # nothing sampled yet: every series empty
            return {
                "resolution": self.label,
                "step": step,
                "start": int(since) // step * step,
                "series": {name: [] for name in SERIES},
            }
        first = max(int(since) // step, self.oldest, self.newest - self.slots + 1)
        first = min(first, self.newest + 1)
        indexes = range(first, self.newest + 1)
        series: dict[str, list[float | None]] = {}
        for name, column in self._values.items():
            out: list[float | None] = []
            for index in indexes:
                slot = index % self.slots
                value = column[slot]
                if self._stamps[slot] != index or math.isnan(value):
                    out.append(None)
                else:
                    out.append(round(value, 3))
            series[name] = out
        return {
            "resolution": self.label,
            "step": step,
            "start": first * step,
            "series": series,
        }

    @property
    def label(self) -> str:
        return "1s" if self.step == 1 else "1m"


class SeriesSampler:
    """Samples ``read()`` once a second into the two rings (see module doc)."""

    def __init__(self, clock: IReactorTime, read: Callable[[], dict[str, float]]):
        self._clock = clock
        self._read = read
        self.seconds = Ring(1, SECOND_SLOTS)
        self.minutes = Ring(60, MINUTE_SLOTS)
        self._last: tuple[float, dict[str, float]] | None = None
        self._minute = -1
        self._sums = dict.fromkeys(SERIES, 0.0)
        self._counts = dict.fromkeys(SERIES, 0)
        self._loop = LoopingCall(self.sample)
        self._loop.clock = clock

    def start(self) -> None:
        self._loop.start(1.0, now=True)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def sample(self) -> None:
        """Take one sample; errors are logged, the loop goes on."""
        try:
            self._sample()
        except Exception:
            log.failure("sampling the admin time series")

    def _sample(self) -> None:
        now = self._clock.seconds()
        raw = self._read()
        values = {name: raw.get(name, 0.0) for name in GAUGES}
        previous = self._last
        for name in RATES:
            if previous is None or now <= previous[0]:
                values[name] = math.nan
            else:
                delta = raw.get(name, 0.0) - previous[1].get(name, 0.0)
                values[name] = max(delta, 0.0) / (now - previous[0])
        self._last = (now, raw)
        self.seconds.put(int(now), values)
        minute = int(now) // 60
        if minute != self._minute:
            self._close_minute()
            self._minute = minute
        for name, value in values.items():
            if not math.isnan(value):
                self._sums[name] += value
                self._counts[name] += 1
        self.minutes.put(minute, self._means())

    def _means(self) -> dict[str, float]:
        return {
            name: self._sums[name] / count
            if (count := self._counts[name])
            else math.nan
            for name in SERIES
        }

    def _close_minute(self) -> None:
        self._sums = dict.fromkeys(SERIES, 0.0)
        self._counts = dict.fromkeys(SERIES, 0)
