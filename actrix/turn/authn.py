"""Authentication of TURN requests: long-term credentials (RFC 5389 §10.2, 8489 §9.2).

:class:`RequestAuth` checks one request before the allocator sees it, in RFC
8489 §9.2.4's order: 401 with REALM, NONCE and PASSWORD-ALGORITHMS when
neither MESSAGE-INTEGRITY nor MESSAGE-INTEGRITY-SHA256 is present; 400
without USERNAME (or USERHASH)/REALM/NONCE; 400 when the algorithm
negotiation was tampered with (the bid-down check below); 438 for a nonce
that is stale or was issued to another address; the per-IP Allocate rate;
then the credential from :class:`~actrix.turn.auth.TurnAuth` and the
integrity check with the key of the chosen algorithm
(MESSAGE-INTEGRITY-SHA256 when present, else MESSAGE-INTEGRITY).

Every nonce we issue carries the RFC 8489 cookie with the "password
algorithms" feature, so: a request with neither PASSWORD-ALGORITHM nor
PASSWORD-ALGORITHMS is an RFC 5389 client and uses MD5 (refused with 400 if
MD5 is not configured); otherwise both must be present, PASSWORD-ALGORITHMS
must equal what we sent, and PASSWORD-ALGORITHM must be one of them, else
400 (``bid_down``). Data (ChannelData, Send) is never authenticated.

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
from actrix.stun.credentials import (
    check_integrity_sha256,
    decode_password_algorithm,
    encode_password_algorithms,
)
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


class Grant:
    """An authenticated request: its credential and the key it was signed with."""

    __slots__ = ("credential", "key")

    def __init__(self, credential: Credential, key: bytes) -> None:
        self.credential = credential
        self.key = key


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
        *,
        algorithms: tuple[int, ...] = (codec.ALGORITHM_SHA256, codec.ALGORITHM_MD5),
        userhash: bool = True,
    ) -> None:
        self._clock = clock
        self._algorithms = frozenset(algorithms)
        self._algorithms_value = encode_password_algorithms(algorithms)
        self._userhash = userhash
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
    ) -> Grant | None:
        """The request's credential and key, or None once the request has been
        answered (or parked until its username is validated).

        ``allocated``: whether the client already holds an allocation (an
        Allocate retransmission is then not rate limited).
        """
        attrs = message.attrs
        if message.integrity_offset < 0 and message.integrity256_offset < 0:
            self._responses.challenge(message, link, 401)
            return None
        username_raw = attrs.get(codec.USERNAME)
        hashed = attrs.get(codec.USERHASH) if self._userhash else None
        realm_raw = attrs.get(codec.REALM)
        nonce = attrs.get(codec.NONCE)
        if (
            (username_raw is None and hashed is None)
            or realm_raw is None
            or nonce is None
        ):
            self._responses.error(message, link, 400)
            return None
        algorithm = self._algorithm(message, link)
        if algorithm is None:
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
            realm = codec.decode_text(realm_raw, REALM_LIMIT)
            if username_raw is not None:
                username = codec.decode_text(username_raw, USERNAME_LIMIT)
            else:
                known = self.auth.username_for_hash(hashed or b"")
                if known is None:
                    self.failed(message, link, "unknown_userhash", 401)
                    return None
                username = known
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
        key = credential.key_for(algorithm)
        if not _integrity_ok(message, key):
            # REST secret rotation: the same username under the older secrets.
            for other in self.auth.rest_alternatives(credential):
                key = other.key_for(algorithm)
                if _integrity_ok(message, key):
                    credential = other
                    break
            else:
                self.failed(message, link, "bad_integrity", 401)
                return None
        if credential.secret_index >= 0:
            self._metrics.rest_secret_matches[credential.secret_index] += 1
        if self._clock.seconds() > credential.expires_at:
            self.failed(message, link, "expired", 401)
            return None
        if username_raw is not None:
            if self._userhash and message.method == codec.METHOD_ALLOCATE:
                self.auth.learn_username(username)
        else:
            self._metrics.userhash_requests += 1
        self._metrics.authenticated[
            (
                "sha256" if algorithm == codec.ALGORITHM_SHA256 else "md5",
                "sha256" if message.integrity256_offset >= 0 else "sha1",
            )
        ] += 1
        return Grant(credential, key)

    def _algorithm(self, message: Message, link: ClientLink) -> int | None:
        """The PASSWORD-ALGORITHM to use, or None once a 400 has been sent.

        RFC 8489 §9.2.4: our nonces always carry the cookie with the
        password-algorithms feature, so the negotiation is checked here.
        """
        attrs = message.attrs
        chosen = attrs.get(codec.PASSWORD_ALGORITHM)
        offered = attrs.get(codec.PASSWORD_ALGORITHMS)
        if chosen is None and offered is None:
            if codec.ALGORITHM_MD5 in self._algorithms:
                return codec.ALGORITHM_MD5
            self.failed(message, link, "md5_disabled", 400)
            return None
        if chosen is None or offered != self._algorithms_value:
            self.failed(message, link, "bid_down", 400)
            return None
        try:
            algorithm = decode_password_algorithm(chosen)
        except codec.DecodeError:
            self.failed(message, link, "bid_down", 400)
            return None
        if algorithm not in self._algorithms:
            self.failed(message, link, "bid_down", 400)
            return None
        return algorithm

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


def _integrity_ok(message: Message, key: bytes) -> bool:
    """MESSAGE-INTEGRITY-SHA256 when present (RFC 8489 §9.2.4), else MI."""
    if message.integrity256_offset >= 0:
        return check_integrity_sha256(message, key)
    return codec.check_integrity(message, key)
