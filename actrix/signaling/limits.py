"""Connection limits of the signaling endpoint (signaling.md §1.2).

:class:`ConnectionLimits` holds the per-IP connection rate and concurrency that
are checked before the WebSocket upgrade; the per-connection message limit is
the edge's :class:`~actrix.core.websocket.TokenBucket`. Both read time from the
caller (no clock of their own).
"""

from __future__ import annotations

import math

from actrix.core.config import ConnectionRateLimit
from actrix.core.websocket import TokenBucket


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
