"""Authentication of TURN requests: RFC 5389 §10.2.2 long-term credentials.

:class:`RequestAuth` checks one request before the allocator sees it: 401
with REALM and NONCE when MESSAGE-INTEGRITY is missing, 400 without
USERNAME/REALM/NONCE, 438 for a nonce that is stale or was issued to another
address, the per-IP Allocate rate, then the credential from
:class:`~actrix.turn.auth.TurnAuth` and the MESSAGE-INTEGRITY check with its
key. Data (ChannelData, Send) is never authenticated.

The first use of an actr username needs a token validation, which is
asynchronous: the request waits (bounded: :data:`MAX_PENDING_USERNAMES`
usernames, :data:`MAX_WAITERS` requests each, a per-IP validation rate) and
is handed back to the service when the validation completes. A request whose
TCP/TLS connection went away meanwhile is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from actrix.core.logthrottle import LogThrottle
from actrix.stun import codec
from actrix.stun.codec import Message
from actrix.turn.allocation import ClientLink
from actrix.turn.auth import AuthFailure, Credential, TurnAuth
from actrix.turn.limits import NonceIssuer
from actrix.turn.metrics import TurnMetrics
from actrix.turn.quotas import Quotas
from actrix.turn.responses import Responses

log = Logger()

MAX_PENDING_USERNAMES: Final = 1024
MAX_WAITERS: Final = 16
USERNAME_LIMIT: Final = 513  # bytes (RFC 5389 §15.3)
REALM_LIMIT: Final = 763  # bytes (RFC 5389 §15.7)

Handler = Callable[[Message, ClientLink], None]


class RequestAuth:
    """Authenticates TURN requests; answers the failures itself."""

    def __init__(
        self,
        clock: IReactorTime,
        auth: TurnAuth,
        nonces: NonceIssuer,
        quotas: Quotas,
        responses: Responses,
        metrics: TurnMetrics,
        log_throttle: LogThrottle,
    ) -> None:
        self._clock = clock
        self.auth = auth
        self._nonces = nonces
        self._quotas = quotas
        self._responses = responses
        self._metrics = metrics
        self._log_throttle = log_throttle
        self._pending: dict[str, list[tuple[Message, ClientLink]]] = {}
        # Where a request goes once its username has been validated; None
        # while the service is stopped (the request is then dropped).
        self.resume: Handler | None = None

    def authenticate(
        self, message: Message, link: ClientLink, allocated: bool
    ) -> Credential | None:
        """The request's credential, or None once the request has been answered
        (or parked until its username is validated).

        ``allocated``: whether the client already holds an allocation (an
        Allocate retransmission is then not rate limited).
        """
        attrs = message.attrs
        if message.integrity_offset < 0:
            self._responses.challenge(message, link, 401)
            return None
        username_raw = attrs.get(codec.USERNAME)
        realm_raw = attrs.get(codec.REALM)
        nonce = attrs.get(codec.NONCE)
        if username_raw is None or realm_raw is None or nonce is None:
            self._responses.error(message, link, 400)
            return None
        if not self._nonces.valid(nonce, link.address[0]):
            self._responses.challenge(message, link, 438)
            return None
        if (
            message.method == codec.METHOD_ALLOCATE
            and not allocated
            and not self._quotas.allocate_rate_allows(message, link)
        ):
            return None
        try:
            username = codec.decode_text(username_raw, USERNAME_LIMIT)
            realm = codec.decode_text(realm_raw, REALM_LIMIT)
        except codec.DecodeError:
            self.failed(message, link, "bad_username", 401)
            return None
        try:
            credential = self.auth.lookup(username, realm)
        except AuthFailure as failure:
            self.failed(message, link, failure.reason, failure.code)
            return None
        if credential is None:
            self._resolve_later(username, realm, message, link)
            return None
        if not codec.check_integrity(message, credential.key):
            self.failed(message, link, "bad_integrity", 401)
            return None
        if self._clock.seconds() > credential.expires_at:
            self.failed(message, link, "expired", 401)
            return None
        return credential

    def failed(
        self, message: Message, link: ClientLink, reason: str, code: int
    ) -> None:
        """Count, log (throttled per IP and reason) and answer a rejected credential."""
        self._metrics.auth_failures[reason] += 1
        ip = link.address[0]
        suppressed = self._log_throttle.admit(ip, reason)
        if suppressed is not None:
            log.warn(
                "TURN credentials rejected from {client}: {reason}"
                " ({suppressed} similar lines suppressed)",
                client=ip,
                reason=reason,
                suppressed=suppressed,
            )
        if code == 401:
            self._responses.challenge(message, link, 401)
        else:
            self._responses.error(message, link, code)

    def forget_link(self, link: ClientLink) -> None:
        """Drop the parked requests of a connection that went away."""
        if self._pending:
            for waiters in self._pending.values():
                waiters[:] = [w for w in waiters if w[1] is not link]

    def clear(self) -> None:
        """Drop every parked request (shutdown)."""
        self._pending.clear()

    def _resolve_later(
        self, username: str, realm: str, message: Message, link: ClientLink
    ) -> None:
        waiters = self._pending.get(username)
        if waiters is not None:
            if len(waiters) < MAX_WAITERS:
                waiters.append((message, link))
            return
        if len(self._pending) >= MAX_PENDING_USERNAMES:
            self._responses.error(message, link, 500)
            return
        if not self._quotas.validation_rate_allows(message, link):
            return
        self._pending[username] = [(message, link)]
        d = Deferred.fromCoroutine(self.auth.resolve(username, realm))
        d.addCallback(self._resolved, username)
        d.addErrback(self._not_resolved, username)

    def _resolved(self, _: Credential, username: str) -> None:
        for message, link in self._pending.pop(username, []):
            resume = self.resume
            if resume is not None:
                resume(message, link)

    def _not_resolved(self, failure: Any, username: str) -> None:
        waiters = self._pending.pop(username, [])
        if failure.check(AuthFailure):
            reason, code = failure.value.reason, failure.value.code
        else:
            log.failure("while validating a TURN credential", failure)
            reason, code = "internal", 500
        for message, link in waiters:
            self.failed(message, link, reason, code)
