"""Stateless nonces, the per-source-IP allocation rate and request window.

Nonces (RFC 5389 §10.2) carry their own expiry and an HMAC over it and the
client's IP, so nothing is stored per client: a nonce is valid for
``turn.nonce_lifetime`` seconds from the client it was given to. They start
with RFC 8489's nonce cookie when one is configured, and the MAC covers it:
a nonce whose cookie was stripped or altered on the way (a bid-down) is not
one of ours. The rate
limiter is a token bucket per source IP with a bounded table.

:class:`RequestWindow` bounds the STUN requests (Binding, Allocate, ...) one
source IP may have handled per second on the shared UDP port
(``turn.request_rate_per_ip``). It runs before any decoding, for every
datagram that is not ChannelData, so it is the cheapest check that works:
one clock read and one dict lookup, a counter per IP cleared every second.
A flood of requests from a few sources is then dropped for ~1 µs a datagram
instead of being answered for ~8 µs, the server keeps draining its socket,
and relayed data on the same port is not lost behind it (defect 8).

The warn lines a remote client can cause go through
:class:`actrix.core.logthrottle.LogThrottle`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Final

from twisted.internet.interfaces import IReactorTime

MAX_BUCKETS: Final = 65536
NONCE_SIZE: Final = (
    24  # 8 hex digits of expiry + 16 hex digits of MAC, after the cookie
)
MAX_VERIFIED_NONCES: Final = 16384


class NonceIssuer:
    """Issues and checks ``<cookie><expiry hex><mac>`` nonces bound to a client IP.

    The MAC is keyed BLAKE2b truncated to 64 bits (``hashlib.blake2b`` with a
    key is a MAC by design, and one call costs a fraction of an HMAC-SHA256).
    Nonces that verified recently are remembered (bounded) with their IP, so
    a client's next requests with the same nonce cost one dict lookup.
    """

    def __init__(
        self,
        clock: IReactorTime,
        lifetime: float,
        secret: bytes | None = None,
        cookie: bytes = b"",
    ) -> None:
        self._clock = clock
        self._lifetime = lifetime
        self._secret = secret or os.urandom(16)
        self._cookie = cookie.decode("ascii")
        self._size = len(cookie) + NONCE_SIZE
        self._verified: dict[bytes, tuple[str, int]] = {}  # nonce -> (ip, expiry)

    def issue(self, ip: str) -> bytes:
        """A fresh nonce for ``ip``."""
        expiry = int(self._clock.seconds() + self._lifetime)
        head = f"{self._cookie}{expiry:08x}"
        return (head + self._mac(head, ip)).encode("ascii")

    def valid(self, nonce: bytes, ip: str) -> bool:
        """Whether ``nonce`` was issued by us to ``ip`` and has not expired."""
        known = self._verified.get(nonce)
        if known is not None:
            return known[0] == ip and known[1] >= self._clock.seconds()
        if len(nonce) != self._size:
            return False
        split = self._size - 16
        try:
            text = nonce.decode("ascii")
            expiry = int(text[split - 8 : split], 16)
        except (UnicodeDecodeError, ValueError):
            return False
        if expiry < self._clock.seconds():
            return False
        if not hmac.compare_digest(text[split:], self._mac(text[:split], ip)):
            return False
        if len(self._verified) >= MAX_VERIFIED_NONCES:
            self._verified.clear()
        self._verified[nonce] = (ip, expiry)
        return True

    def _mac(self, head: str, ip: str) -> str:
        data = f"{head}|{ip}".encode()
        return hashlib.blake2b(data, digest_size=8, key=self._secret).hexdigest()


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


WINDOW: Final = 1.0


class RequestWindow:
    """At most ``limit`` requests per source IP per one-second window.

    The table holds the sources seen in the current window and is cleared
    when the next one starts; once it holds ``max_sources`` entries, further
    new sources share one overflow counter (so a spoofed-source flood costs
    bounded memory, and is limited as a whole).
    """

    __slots__ = ("_clock", "_counts", "_limit", "_max_sources", "_window_end")

    def __init__(
        self, clock: IReactorTime, limit: int, max_sources: int = MAX_BUCKETS
    ) -> None:
        self._clock = clock
        self._limit = limit
        self._max_sources = max_sources
        self._counts: dict[str, int] = {}
        self._window_end = 0.0

    def allow(self, ip: str) -> bool:
        """Count one request from ``ip``; False once its window is used up."""
        counts = self._counts
        now = self._clock.seconds()
        if now >= self._window_end:
            counts.clear()
            self._window_end = now + WINDOW
        seen = counts.get(ip)
        if seen is None:
            if len(counts) >= self._max_sources:
                ip = ""  # the overflow counter
                seen = counts.get(ip, 0)
            else:
                seen = 0
        if seen >= self._limit:
            return False
        counts[ip] = seen + 1
        return True

    def __len__(self) -> int:
        return len(self._counts)
