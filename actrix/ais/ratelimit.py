"""Per-IP token buckets for the AIS routes (ais.md §6).

The original's limiter trusted ``X-Forwarded-For`` and friends, so any client
could pick its own bucket; ours keys on the TCP peer address only. The table is
bounded: when it reaches ``max_entries`` the buckets that have refilled
completely (indistinguishable from new ones) are dropped, then the oldest until
a quarter of the table is free.
"""

from __future__ import annotations

from typing import Final

from twisted.internet.interfaces import IReactorTime

MAX_ENTRIES: Final = 65536


class IpRateLimiter:
    """``rate`` credits per second per IP, at most ``burst`` banked."""

    def __init__(
        self,
        clock: IReactorTime,
        rate: float,
        burst: int,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.clock = clock
        self._rate = rate
        self._burst = float(burst)
        self._max_entries = max_entries
        self._buckets: dict[str, tuple[float, float]] = {}  # ip -> (credits, at)

    def allow(self, ip: str) -> bool:
        """Take one credit for ``ip``; False if none is left."""
        now = self.clock.seconds()
        credits, at = self._buckets.get(ip, (self._burst, now))
        credits = min(self._burst, credits + (now - at) * self._rate)
        if credits < 1.0:
            self._buckets[ip] = (credits, now)
            return False
        if ip not in self._buckets and len(self._buckets) >= self._max_entries:
            self._prune(now)
        self._buckets[ip] = (credits - 1.0, now)
        return True

    def retry_after(self, ip: str) -> int:
        """Whole seconds until ``ip`` has a credit again."""
        credits, _ = self._buckets.get(ip, (self._burst, 0.0))
        return max(1, int((1.0 - credits) / self._rate + 0.999))

    def _prune(self, now: float) -> None:
        full = [
            ip
            for ip, (credits, at) in self._buckets.items()
            if credits + (now - at) * self._rate >= self._burst
        ]
        for ip in full:
            del self._buckets[ip]
        # Evict down to a low-water mark, not just one entry: otherwise, with a
        # table of still-draining buckets, every new address would pay for a
        # full scan (a cheap CPU attack from many source addresses).
        low_water = self._max_entries * 3 // 4
        while len(self._buckets) > low_water:
            del self._buckets[next(iter(self._buckets))]

    def __len__(self) -> int:
        return len(self._buckets)
