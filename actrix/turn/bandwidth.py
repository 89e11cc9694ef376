"""Relay metering: bandwidth caps per user and realm, and per-allocation counts.

``turn.user_bandwidth`` caps the relayed payload bytes per second of one
principal (static user, REST name or actr actor) over all its allocations,
both directions together; ``turn.realm_bandwidth`` caps a realm (the actr
realm of an actr credential, otherwise the whole STUN realm). Each cap is a
token bucket of ``rate`` bytes per second holding at most one second's worth.
A datagram the buckets cannot pay for is dropped (and counted by the data
path), as an overloaded link would drop it.

An allocation holds a :class:`Meter` when a cap applies or
``turn.allocation_log`` wants its packet and byte counts; otherwise None, so
by default the relay hot path pays one ``is None`` test per datagram. Buckets
are reference-counted by the allocations that hold them and forgotten with
the last one.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime


class TokenBucket:
    """``rate`` bytes per second, at most ``rate`` banked."""

    __slots__ = ("holders", "key", "rate", "stamp", "tokens")

    def __init__(self, key: str, rate: float, now: float) -> None:
        self.key = key
        self.rate = rate
        self.tokens = rate
        self.stamp = now
        self.holders = 0

    def refill(self, now: float) -> float:
        """Add the tokens earned since the last call; the balance."""
        elapsed = now - self.stamp
        if elapsed > 0:
            self.stamp = now
            tokens = self.tokens + elapsed * self.rate
            self.tokens = tokens if tokens < self.rate else self.rate
        return self.tokens


class Meter:
    """Counts one allocation's relayed payload and pays it from its buckets."""

    __slots__ = (
        "_seconds",
        "buckets",
        "bytes_in",
        "bytes_out",
        "packets_in",
        "packets_out",
    )

    def __init__(
        self, seconds: Callable[[], float], buckets: tuple[TokenBucket, ...]
    ) -> None:
        self._seconds = seconds
        self.buckets = buckets
        self.packets_out = self.bytes_out = 0  # client -> peer
        self.packets_in = self.bytes_in = 0  # peer -> client

    def to_peer(self, size: int) -> bool:
        """Count a datagram to a peer; False (not counted) when over a cap."""
        if self.buckets and not self._admit(size):
            return False
        self.packets_out += 1
        self.bytes_out += size
        return True

    def to_client(self, size: int) -> bool:
        """Count a datagram to the client; False (not counted) when over a cap."""
        if self.buckets and not self._admit(size):
            return False
        self.packets_in += 1
        self.bytes_in += size
        return True

    def _admit(self, size: int) -> bool:
        """Pay ``size`` bytes from every bucket, or from none and refuse."""
        now = self._seconds()
        for bucket in self.buckets:
            if bucket.refill(now) < size:
                return False
        for bucket in self.buckets:
            bucket.tokens -= size
        return True


class Bandwidth:
    """Hands out shared buckets by principal and realm."""

    def __init__(self, clock: IReactorTime, user_rate: int, realm_rate: int) -> None:
        self._clock = clock
        self._user_rate = user_rate
        self._realm_rate = realm_rate
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def enabled(self) -> bool:
        """Whether any cap is configured."""
        return bool(self._user_rate or self._realm_rate)

    def acquire(
        self, principal: str, realm: str, account: bool = False
    ) -> Meter | None:
        """The meter of a new allocation of ``principal`` in ``realm``.

        None when no cap applies and ``account`` (count the traffic) is off.
        """
        buckets = []
        if self._user_rate:
            buckets.append(self._bucket(f"user\0{principal}", self._user_rate))
        if self._realm_rate:
            buckets.append(self._bucket(f"realm\0{realm}", self._realm_rate))
        if not buckets and not account:
            return None
        return Meter(self._clock.seconds, tuple(buckets))

    def release(self, meter: Meter | None) -> None:
        """An allocation holding ``meter`` is gone."""
        if meter is None:
            return
        for bucket in meter.buckets:
            bucket.holders -= 1
            if bucket.holders <= 0:
                self._buckets.pop(bucket.key, None)

    def _bucket(self, key: str, rate: int) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(key, float(rate), self._clock.seconds())
            self._buckets[key] = bucket
        bucket.holders += 1
        return bucket

    def __len__(self) -> int:
        return len(self._buckets)
