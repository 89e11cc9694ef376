"""The signaling WebSocket (Autobahn): limits, framing, and the hand-off to the service.

Before the upgrade: the per-IP connection rate and concurrency limits (HTTP 429)
and the URL identity of a reconnect, which is validated before the handshake
completes so the first message already belongs to the bound actor. After it:
one binary message is one envelope; text frames are ignored; the per-connection
token bucket answers floods with an ``envelope_error`` 429; an undecodable frame
closes this one session (1007). The edge's frame codec enforces the message
size limit (close 1009) and answers WebSocket pings. A peer that stops
reading while messages for it keep coming (relays, replies) is dropped once
its unsent backlog passes a bound, so it cannot make the daemon buffer without
limit. Lines a client can trigger (refusals, undecodable frames, slow readers)
are throttled per source IP and reason; a client that goes away is normal and
logs nothing above debug.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from actrix.core.config import SignalingConfig
from actrix.core.logthrottle import LogThrottle
from actrix.core.websocket import (
    SEND_BACKLOG_LIMIT,
    EdgeProtocol,
    TokenBucket,
    edge_options,
)
from actrix.signaling import messages
from actrix.signaling.limits import ConnectionLimits
from actrix.signaling.service import Session, SignalingService

_log = Logger()

BAD_FRAME_CODE = 1007  # RFC 6455: payload inconsistent with the message type


class SignalingProtocol(EdgeProtocol):
    """One signaling WebSocket on the shared edge (:mod:`actrix.core.websocket`).

    The edge keeps Autobahn's state in slots, reads frames with the
    ``websockets`` codec, writes at the end of the reactor turn, and
    :class:`SignalingFactory` gives each factory a subclass carrying its
    WebSocket options (:func:`~actrix.core.websocket.edge_options`).
    """

    __slots__ = ("_admitted", "_bucket", "_session")

    factory: SignalingFactory

    def __init__(self) -> None:
        self._session: Session | None = None
        self._bucket: TokenBucket | None = None
        self._admitted = False
        super().__init__()

    def onConnect(  # type: ignore[override]  # Autobahn also accepts a Deferred
        self, request: ConnectionRequest
    ) -> Deferred[None] | None:
        factory = self.factory
        now = factory.clock.seconds()
        refused = factory.limits.admit(self._ip, now)
        if refused is not None:
            factory.service.metrics.connections_refused[refused] += 1
            suppressed = factory.log_throttle.admit(self._ip, refused)
            if suppressed is not None:
                _log.info(
                    "connection from {ip} refused: {reason} limit"
                    " ({suppressed} more not logged)",
                    ip=self._ip,
                    reason=refused,
                    suppressed=suppressed,
                )
            raise ConnectionDeny(429, "Too Many Requests")
        self._admitted = True
        role = request.params.get("webrtc_role")
        self._session = session = factory.service.open_session(
            self, self._ip, role[0] if role else None
        )
        config = factory.config.message_rate
        if config.enabled:
            self._bucket = TokenBucket(config.per_second, config.burst_size, now)
        identity = messages.parse_url_identity(request.params)
        if identity is None:
            if "actor_id" in request.params:
                _log.info("malformed URL identity from {ip} ignored", ip=self._ip)
            return None
        d = Deferred.fromCoroutine(
            factory.service.bind_url_identity(session, *identity)
        )
        done: Deferred[None] = d.addCallback(lambda _: None)
        done.addErrback(_bind_failed)
        return done

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        session = self._session
        if session is None:
            return
        service = self.factory.service
        if not isBinary:
            _log.debug("text frame from {ip} ignored", ip=self._ip)
            service.metrics.rejections["text_frame"] += 1
            return
        bucket = self._bucket
        if bucket is not None:
            now = self.factory.clock.seconds()
            if not bucket.take(now):
                service.metrics.rejections["rate_limit"] += 1
                service.send(
                    session,
                    messages.rate_limited(
                        now, self.factory.config.message_rate.per_second
                    ),
                )
                return
        try:
            envelope = messages.decode_envelope(payload)
        except messages.InvalidString as e:
            # Answered before any flow sees it: nothing is created for it.
            service.metrics.rejections["invalid_utf8"] += 1
            _log.debug("{field} from {ip} is not UTF-8", field=e.field, ip=self._ip)
            now = self.factory.clock.seconds()
            service.send(session, messages.invalid_string(now, e))
            return
        except messages.DecodeError as e:
            service.metrics.rejections["decode"] += 1
            suppressed = self.factory.log_throttle.admit(self._ip, "decode")
            if suppressed is not None:
                _log.warn(
                    "undecodable frame ({size} bytes) from {ip}: {error}; closing"
                    " ({suppressed} more not logged)",
                    size=len(payload),
                    ip=self._ip,
                    error=str(e),
                    suppressed=suppressed,
                )
            service.session_closed(session)
            self.close_session(BAD_FRAME_CODE, "invalid SignalingEnvelope")
            return
        service.handle(session, envelope)

    def edge_closed(self) -> None:
        if self._session is not None:
            self.factory.service.session_closed(self._session)
            self._session = None
        if self._admitted:
            self._admitted = False
            self.factory.limits.release(self._ip)

    def edge_slow_reader(self, unsent: int) -> None:
        self.factory.service.metrics.rejections["slow_reader"] += 1
        suppressed = self.factory.log_throttle.admit(self._ip, "slow_reader")
        if suppressed is not None:
            _log.warn(
                "{ip} left {size} bytes unread; dropping its session"
                " ({suppressed} more not logged)",
                ip=self._ip,
                size=unsent,
                suppressed=suppressed,
            )

    # Connection (what the service calls): send_bytes, close_session and
    # abort come from EdgeProtocol.


def _bind_failed(failure: Failure) -> None:
    _log.failure("while checking a URL identity", failure)


class SignalingFactory(WebSocketServerFactory):
    """Builds :class:`SignalingProtocol`; holds the shared limits and the service."""

    protocol = SignalingProtocol  # type: ignore[assignment]  # Autobahn's factory attr

    def __init__(
        self,
        service: SignalingService,
        config: SignalingConfig,
        clock: IReactorTime,
        reactor: Any = None,
    ) -> None:
        super().__init__(reactor=reactor)
        self.service = service
        self.config = config
        self.clock = clock
        self.limits = ConnectionLimits(config.connection_rate)
        # Remote-triggered lines: one per (source IP, reason) per minute.
        self.log_throttle = LogThrottle(clock)
        self.send_backlog_limit = max(SEND_BACKLOG_LIMIT, 4 * config.max_message_size)
        # The message cap (close 1009) and one configured
        # protocol class per factory: options are fixed from here on.
        edge_options(self, config.max_message_size)

    def prune_limits(self) -> None:
        """Forget idle per-IP limiter state (a timer calls this)."""
        self.limits.prune(self.clock.seconds())
