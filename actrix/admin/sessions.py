"""Console sessions and the failed-login limiter, both bounded and in memory.

A session is what a browser holds after logging in with an admin token: a
random cookie value (only its SHA-256 is kept here), the token it came from
(checked against the store on every request, so a revoked token ends its
sessions at once), a CSRF token and an absolute expiry. At most
``max_sessions`` live at once; the oldest goes first. A daemon restart ends
every session (the operator logs in again).

:class:`LoginLimiter` counts failed logins (and failed bearer tokens) per
source IP in a fixed window; past ``max_failures`` the IP gets 429 until the
window ends. It remembers at most ``MAX_TRACKED`` addresses (the oldest
forgotten first), so a spray from many addresses costs bounded memory.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from typing import Final

import attrs
from twisted.internet.interfaces import IReactorTime

MAX_TRACKED: Final = 10_000


@attrs.frozen(repr=False)
class Session:
    """One console login (the cookie value itself is never kept)."""

    token_id: int
    name: str
    read_only: bool
    csrf: str
    expires_at: float

    def __repr__(self) -> str:
        return f"Session({self.name!r}, expires_at={self.expires_at})"

    def csrf_ok(self, header: bytes | None) -> bool:
        """The request's ``X-CSRF-Token`` matches (constant-time)."""
        if header is None:
            return False
        return hmac.compare_digest(header, self.csrf.encode("ascii"))


def _digest(cookie: str) -> bytes:
    return hashlib.sha256(cookie.encode("utf-8", "surrogateescape")).digest()


class Sessions:
    """Live console sessions by the SHA-256 of their cookie."""

    def __init__(self, clock: IReactorTime, ttl: float, max_sessions: int) -> None:
        self._clock = clock
        self._ttl = ttl
        self._max = max_sessions
        self._live: OrderedDict[bytes, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._live)

    def open(self, token_id: int, name: str, read_only: bool) -> tuple[str, Session]:
        """A new session: ``(cookie value, session)``."""
        self._drop_expired()
        while len(self._live) >= self._max:
            self._live.popitem(last=False)
        cookie = secrets.token_urlsafe(32)
        session = Session(
            token_id,
            name,
            read_only,
            secrets.token_urlsafe(32),
            self._clock.seconds() + self._ttl,
        )
        self._live[_digest(cookie)] = session
        return cookie, session

    def get(self, cookie: str) -> Session | None:
        """The live session of a cookie value, or None (unknown or expired)."""
        key = _digest(cookie)
        session = self._live.get(key)
        if session is None:
            return None
        if session.expires_at <= self._clock.seconds():
            del self._live[key]
            return None
        return session

    def close(self, cookie: str) -> None:
        self._live.pop(_digest(cookie), None)

    def close_token(self, token_id: int) -> None:
        """End every session opened with this token."""
        for key in [k for k, s in self._live.items() if s.token_id == token_id]:
            del self._live[key]

    def _drop_expired(self) -> None:
        now = self._clock.seconds()
        for key in [k for k, s in self._live.items() if s.expires_at <= now]:
            del self._live[key]


class LoginLimiter:
    """Failed logins per IP in a fixed window (see the module docstring)."""

    def __init__(self, clock: IReactorTime, max_failures: int, window: float) -> None:
        self._clock = clock
        self._max = max_failures
        self._window = window
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after(self, ip: str) -> int | None:
        """Seconds until ``ip`` may try again, or None if it may try now."""
        entry = self._failures.get(ip)
        if entry is None:
            return None
        start, count = entry
        left = start + self._window - self._clock.seconds()
        if left <= 0:
            del self._failures[ip]
            return None
        return max(1, int(left + 0.999)) if count >= self._max else None

    def failed(self, ip: str) -> None:
        """Count one failure of ``ip``."""
        now = self._clock.seconds()
        entry = self._failures.pop(ip, None)
        if entry is None or entry[0] + self._window <= now:
            entry = (now, 0)
        self._failures[ip] = (entry[0], entry[1] + 1)
        while len(self._failures) > MAX_TRACKED:
            self._failures.popitem(last=False)

    def succeeded(self, ip: str) -> None:
        """A good login clears the address's count."""
        self._failures.pop(ip, None)
