"""Stateless nonces and the per-source-IP allocation rate limit.

Nonces (RFC 5389 §10.2) carry their own expiry and an HMAC over it and the
client's IP, so nothing is stored per client: a nonce is valid for
``turn.nonce_lifetime`` seconds from the client it was given to. The rate
limiter is a token bucket per source IP with a bounded table.

:class:`LogThrottle` bounds the warn lines a remote client can cause (refused
requests, rejected credentials): one line per source IP and reason per
interval, the next line reporting how many were suppressed. Its table is
bounded too; when it is full of recent entries, new IPs share one overflow
entry per reason, so the log volume stays bounded whatever the number of IPs.
"""

from __future__ import annotations

import hmac
import os
from typing import Final

from twisted.internet.interfaces import IReactorTime

MAX_BUCKETS: Final = 65536
LOG_INTERVAL: Final = 60.0
MAX_LOG_KEYS: Final = 4096


class NonceIssuer:
    """Issues and checks ``<expiry hex><mac>`` nonces bound to a client IP."""

    def __init__(
        self, clock: IReactorTime, lifetime: float, secret: bytes | None = None
    ) -> None:
        self._clock = clock
        self._lifetime = lifetime
        self._secret = secret or os.urandom(16)

    def issue(self, ip: str) -> bytes:
        """A fresh nonce for ``ip``."""
        expiry = int(self._clock.seconds() + self._lifetime)
        head = f"{expiry:08x}"
        return (head + self._mac(head, ip)).encode("ascii")

    def valid(self, nonce: bytes, ip: str) -> bool:
        """Whether ``nonce`` was issued by us to ``ip`` and has not expired."""
        if len(nonce) != 24:
            return False
        try:
            text = nonce.decode("ascii")
            expiry = int(text[:8], 16)
        except (UnicodeDecodeError, ValueError):
            return False
        if expiry < self._clock.seconds():
            return False
        return hmac.compare_digest(text[8:], self._mac(text[:8], ip))

    def _mac(self, head: str, ip: str) -> str:
        data = f"{head}|{ip}".encode()
        return hmac.digest(self._secret, data, "sha256")[:8].hex()


class RateLimiter:
    """A token bucket per key: ``rate`` per second, ``burst`` at most."""

    def __init__(self, clock: IReactorTime, rate: float, burst: int) -> None:
        self._clock = clock
        self._rate = rate
        self._burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> bool:
        """Take one token for ``key``; False when its bucket is empty."""
        now = self._clock.seconds()
        tokens, last = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        if len(self._buckets) >= MAX_BUCKETS and key not in self._buckets:
            self.prune()
        self._buckets[key] = (tokens - 1.0, now)
        return True

    def prune(self) -> None:
        """Forget buckets that have refilled (they equal a fresh bucket)."""
        now = self._clock.seconds()
        full = [
            key
            for key, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * self._rate >= self._burst
        ]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= MAX_BUCKETS:
            self._buckets.clear()

    def __len__(self) -> int:
        return len(self._buckets)


class _LogEntry:
    __slots__ = ("logged_at", "suppressed")

    def __init__(self, logged_at: float) -> None:
        self.logged_at = logged_at
        self.suppressed = 0


class LogThrottle:
    """At most one log line per ``(ip, reason)`` per ``interval`` seconds."""

    def __init__(
        self,
        clock: IReactorTime,
        interval: float = LOG_INTERVAL,
        max_keys: int = MAX_LOG_KEYS,
    ) -> None:
        self._clock = clock
        self._interval = interval
        self._max_keys = max_keys
        self._entries: dict[tuple[str, str], _LogEntry] = {}
        self._overflow: dict[str, _LogEntry] = {}  # by reason; never pruned
        self._next_prune = 0.0

    def admit(self, ip: str, reason: str) -> int | None:
        """None to drop this line; else how many were dropped since the last one.

        Once the table is full of entries younger than ``interval``, a new
        ``ip`` shares one overflow entry per ``reason`` instead.
        """
        now = self._clock.seconds()
        key = (ip, reason)
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) < self._max_keys or self._prune(now):
                self._entries[key] = _LogEntry(now)
                return 0
            entry = self._overflow.get(reason)
            if entry is None:
                self._overflow[reason] = _LogEntry(now)
                return 0
        if now - entry.logged_at < self._interval:
            entry.suppressed += 1
            return None
        suppressed = entry.suppressed
        entry.logged_at = now
        entry.suppressed = 0
        return suppressed

    def _prune(self, now: float) -> bool:
        """Forget entries older than ``interval``; whether any room was made.

        Their suppressed counts are not logged (the metrics still have them).
        A scan that frees nothing is not repeated before the oldest entry
        can have aged out, so a full table costs one dict lookup per call.
        """
        if now < self._next_prune:
            return False
        horizon = now - self._interval
        stale = [k for k, e in self._entries.items() if e.logged_at <= horizon]
        for k in stale:
            del self._entries[k]
        if len(self._entries) < self._max_keys:
            return True
        oldest = min(e.logged_at for e in self._entries.values())
        self._next_prune = oldest + self._interval
        return False

    def __len__(self) -> int:
        return len(self._entries) + len(self._overflow)
