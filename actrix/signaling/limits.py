"""Rate limits of the signaling endpoint (signaling.md §1.2, §1.3).

:class:`TokenBucket` is the per-connection message limit; :class:`ConnectionLimits`
holds the per-IP connection rate and concurrency that are checked before the
WebSocket upgrade. Both read time from the caller (no clock of their own).
"""

from __future__ import annotations

import math

from actrix.core.config import ConnectionRateLimit


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; starts full."""

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._last = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
            self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def full(self, now: float) -> bool:
        """Whether the bucket has refilled completely by ``now``."""
        return self._tokens + max(0.0, now - self._last) * self._rate >= self._burst


class _PerIp:
    __slots__ = ("bucket", "open")

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self.open = 0


class ConnectionLimits:
    """Per-IP connection rate (token bucket) and concurrency (§1.2)."""

    def __init__(self, config: ConnectionRateLimit) -> None:
        self._enabled = config.enabled
        # ceil(per_minute / 60) per second, at least 1 (as the original).
        self._rate = float(max(1, math.ceil(config.per_minute / 60)))
        self._burst = float(config.burst_size)
        self._max_open = config.max_concurrent_per_ip
        self._ips: dict[str, _PerIp] = {}

    def admit(self, ip: str, now: float) -> str | None:
        """Count a new connection from ``ip``; the refusal reason if over a limit.

        An admitted connection must later be given back with :meth:`release`.
        """
        state = self._ips.get(ip)
        if state is None:
            state = self._ips[ip] = _PerIp(TokenBucket(self._rate, self._burst, now))
        if self._enabled:
            if state.open >= self._max_open:
                return "concurrency"
            if not state.bucket.take(now):
                return "rate"
        state.open += 1
        return None

    def release(self, ip: str) -> None:
        """A connection admitted for ``ip`` has ended."""
        state = self._ips.get(ip)
        if state is not None and state.open > 0:
            state.open -= 1

    def open_connections(self, ip: str) -> int:
        state = self._ips.get(ip)
        return 0 if state is None else state.open

    def prune(self, now: float) -> None:
        """Forget IPs with no open connection and a refilled bucket."""
        idle = [
            ip
            for ip, state in self._ips.items()
            if state.open == 0 and state.bucket.full(now)
        ]
        for ip in idle:
            del self._ips[ip]

    def __len__(self) -> int:
        return len(self._ips)
