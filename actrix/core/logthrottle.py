"""Bounds the log lines a remote peer can cause.

Every line a client can trigger (a refused request, a rejected credential, an
undecodable frame, a junk connection) goes through :class:`LogThrottle`: one line
per source and reason per interval, the next line reporting how many were
suppressed. Its table is bounded too; when it is full of recent entries, new
sources share one overflow entry per reason, so the log volume stays bounded
whatever the number of sources. Metrics still count every event.
"""

from __future__ import annotations

from typing import Final

from twisted.internet.interfaces import IReactorTime

LOG_INTERVAL: Final = 60.0
MAX_LOG_KEYS: Final = 4096


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
