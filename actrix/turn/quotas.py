"""TURN quotas: allocations per user and in total, and the per-IP request rates.

:class:`Quotas` answers whether a new allocation or a new credential
validation may proceed, and refuses it (486 Allocation Quota Reached) with a
warn line throttled per (source IP, rule). It counts allocations per
principal (static user, REST name or actr actor); the allocator tells it when
an allocation is created or deleted.

Two token buckets per source IP share ``turn.allocation_rate_per_ip`` and
``turn.allocation_burst_per_ip``: one for Allocate requests, one for the first
use of an actr username (each costs a token decryption, whatever the method,
so Refresh/CreatePermission/ChannelBind with fresh usernames cannot bypass
the Allocate limit and keep the decryption pool busy).
"""

from __future__ import annotations

from collections import Counter

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from actrix.core.config import TurnConfig
from actrix.core.logthrottle import LogThrottle
from actrix.stun.codec import Message
from actrix.turn.allocation import ClientLink
from actrix.turn.limits import RateLimiter
from actrix.turn.responses import Responses

log = Logger()


class Quotas:
    """Allocation counts per principal and in total; per-IP request rates."""

    def __init__(
        self,
        config: TurnConfig,
        clock: IReactorTime,
        responses: Responses,
        log_throttle: LogThrottle,
    ) -> None:
        self._max_total = config.max_allocations_total
        self._max_per_user = config.max_allocations_per_user
        self._responses = responses
        self._log_throttle = log_throttle
        rate, burst = config.allocation_rate_per_ip, config.allocation_burst_per_ip
        self._allocate_rate = RateLimiter(clock, rate, burst)
        self._validation_rate = RateLimiter(clock, rate, burst)
        self._per_principal: Counter[str] = Counter()
        self.total = 0

    def allocate_rate_allows(self, message: Message, link: ClientLink) -> bool:
        """Take an Allocate token for the client's IP, or refuse the request."""
        ip = link.address[0]
        if self._allocate_rate.allow(ip):
            return True
        self.deny(message, link, "rate limit", ip)
        return False

    def validation_rate_allows(self, message: Message, link: ClientLink) -> bool:
        """Take a validation token for the client's IP, or refuse the request."""
        ip = link.address[0]
        if self._validation_rate.allow(ip):
            return True
        self.deny(message, link, "validation rate limit", ip)
        return False

    def allocation_allowed(
        self, message: Message, link: ClientLink, principal: str, key: bytes
    ) -> bool:
        """Whether ``principal`` may hold one more allocation (else refused)."""
        if self.total >= self._max_total:
            self.deny(message, link, "total allocations", principal, key)
            return False
        if self._per_principal[principal] >= self._max_per_user:
            self.deny(message, link, "allocations per user", principal, key)
            return False
        return True

    def allocated(self, principal: str) -> None:
        """An allocation of ``principal`` was created."""
        self.total += 1
        self._per_principal[principal] += 1

    def released(self, principal: str) -> None:
        """An allocation of ``principal`` was deleted."""
        self.total -= 1
        per_principal = self._per_principal
        per_principal[principal] -= 1
        if per_principal[principal] <= 0:
            del per_principal[principal]

    def deny(
        self,
        message: Message,
        link: ClientLink,
        rule: str,
        who: str,
        key: bytes | None = None,
    ) -> None:
        """Answer 486 and log it (at most once a minute per IP and rule)."""
        ip = link.address[0]
        suppressed = self._log_throttle.admit(ip, rule)
        if suppressed is not None:
            log.warn(
                "allocation refused for {who} from {client}: {rule}"
                " ({suppressed} similar lines suppressed)",
                who=who,
                client=ip,
                rule=rule,
                suppressed=suppressed,
            )
        self._responses.error(message, link, 486, key)
