"""The life cycle shared by the STUN-only and the TURN TCP/TLS connections.

:class:`StreamConnection` is the base of ``StunTcpProtocol`` and
``TurnStreamProtocol``; the subclasses own the framing (``dataReceived``) and
this class owns everything around it:

Idle timeout (``idle_timeout``, 30 s by default): the connection is closed
once :meth:`StreamConnection._idle_deadline` has passed, by default that long
after its last well-formed STUN message (``_last_message``, which the
subclass records) or since it opened. One ``callLater`` per connection,
re-armed lazily when it fires, so the per-message cost is one clock read.

Backpressure: the connection is its transport's streaming producer. While the
transport's write buffer is full the connection is not read (and ``_paused``
tells a subclass to drop data it would relay), so a client that sends
requests but never reads cannot make the buffer grow without bound. A client
that stops reading altogether would still keep its connection forever, and a
close waits for the buffer to drain: so once the transport has stayed paused
for ``stall_timeout`` (10 s by default), or a close has not completed within
it, the connection is aborted (counted in ``stream_aborted``).

Logging: a remote client decides how often a connection is closed for junk,
idling or not reading, so each of those lines goes through the factory's
:class:`~actrix.core.logthrottle.LogThrottle`: one line per (source IP,
reason) per minute, the next one saying how many were suppressed. The
counters still see every event.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol as StreamProtocol
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from actrix.core.logthrottle import LogThrottle

log = Logger()

IDLE_TIMEOUT: Final = 30.0
STALL_TIMEOUT: Final = 10.0


class StreamCounters(Protocol):
    """The counters a stream connection increments (``TurnMetrics`` has them)."""

    malformed: int
    stream_aborted: int


@implementer(IPushProducer)
class StreamConnection(StreamProtocol):
    """Idle timeout, push-producer backpressure and stall abort of one connection.

    Subclasses set :attr:`kind` (what the log lines call the connection) and
    may override :meth:`_idle_deadline` and :meth:`_release`.
    """

    transport: Any

    kind = "stream"

    def __init__(
        self,
        clock: IReactorTime,
        counters: StreamCounters,
        idle_timeout: float = IDLE_TIMEOUT,
        stall_timeout: float = STALL_TIMEOUT,
        log_throttle: LogThrottle | None = None,
    ) -> None:
        self._clock = clock
        # Factories pass one throttle shared by all their connections.
        # (``is None``: an empty LogThrottle has a length of 0, so is falsy.)
        if log_throttle is None:
            log_throttle = LogThrottle(clock)
        self._log_throttle = log_throttle
        self._counters = counters
        self._idle_timeout = idle_timeout
        self._stall_timeout = stall_timeout
        self._buffer = b""
        self.address: tuple[str, int] = ("", 0)
        self._last_message = 0.0
        self._idle_call: IDelayedCall | None = None
        self._stall_call: IDelayedCall | None = None
        self._paused = False
        self._producing = False
        self._closing = False
        self._finished = False  # aborted or lost: no more timers

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.address = (peer.host, peer.port)
        self._last_message = self._clock.seconds()
        self._idle_call = self._clock.callLater(self._idle_timeout, self._idle_check)
        self.transport.registerProducer(self, True)
        self._producing = True

    # -- IPushProducer -----------------------------------------------------

    def pauseProducing(self) -> None:
        """The write buffer is full: stop reading (subclasses drop relayed data)."""
        self._paused = True
        self.transport.pauseProducing()
        self._arm_stall()

    def resumeProducing(self) -> None:
        """The write buffer drained."""
        self._paused = False
        self.transport.resumeProducing()
        if not self._closing:
            self._disarm_stall()

    def stopProducing(self) -> None:
        """The connection is going away."""
        self._paused = True

    # -- idle timeout --------------------------------------------------------

    def _idle_deadline(self, now: float) -> float:
        """When the connection is to be closed for idling (``now`` or earlier: now)."""
        return self._last_message + self._idle_timeout

    def _idle_check(self) -> None:
        self._idle_call = None
        now = self._clock.seconds()
        deadline = self._idle_deadline(now)
        if deadline <= now:
            suppressed = self._log_throttle.admit(self.address[0], "idle")
            if suppressed is not None:
                log.info(
                    "closing idle {kind} connection from {client}"
                    " ({suppressed} similar lines suppressed)",
                    kind=self.kind,
                    client=self.address[0],
                    suppressed=suppressed,
                )
            self._lose()
            return
        self._idle_call = self._clock.callLater(deadline - now, self._idle_check)

    def _cancel_idle(self) -> None:
        idle_call, self._idle_call = self._idle_call, None
        if idle_call is not None and idle_call.active():
            idle_call.cancel()

    # -- closing -------------------------------------------------------------

    def _close(self, why: str) -> None:
        """Bad input: count it, log it (throttled), close the connection."""
        self._counters.malformed += 1
        suppressed = self._log_throttle.admit(self.address[0], why)
        if suppressed is not None:
            log.info(
                "closing {kind} connection from {client}: {why}"
                " ({suppressed} similar lines suppressed)",
                kind=self.kind,
                client=self.address[0],
                why=why,
                suppressed=suppressed,
            )
        self._lose()

    def _lose(self) -> None:
        self._buffer = b""
        if self._producing:
            # With a producer registered a paused TCP transport never finishes
            # closing, and TLS waits for the producer to go before shutting down.
            self._producing = False
            self.transport.unregisterProducer()
        self._closing = True
        self.transport.loseConnection()
        # The close itself waits for the write buffer to drain: bound it too.
        self._arm_stall()

    def _arm_stall(self) -> None:
        if self._stall_call is None and not self._finished:
            self._stall_call = self._clock.callLater(self._stall_timeout, self._stalled)

    def _disarm_stall(self) -> None:
        stall_call, self._stall_call = self._stall_call, None
        if stall_call is not None and stall_call.active():
            stall_call.cancel()

    def _stalled(self) -> None:
        """The client has not read for ``stall_timeout``: abort the connection."""
        self._stall_call = None
        if self._finished:
            return
        self._finished = True
        self._cancel_idle()
        self._counters.stream_aborted += 1
        suppressed = self._log_throttle.admit(self.address[0], "stalled")
        if suppressed is not None:
            log.warn(
                "aborting {kind} connection from {client}: not reading for"
                " {seconds} s ({suppressed} similar lines suppressed)",
                kind=self.kind,
                client=self.address[0],
                seconds=self._stall_timeout,
                suppressed=suppressed,
            )
        self._buffer = b""
        self._paused = True
        if self._producing:
            self._producing = False
            self.transport.unregisterProducer()
        # Release now: the transport reports the loss later (and a fake or a
        # wedged one might not).
        self._release()
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._buffer = b""
        self._paused = True
        self._producing = False
        self._finished = True
        self._cancel_idle()
        self._disarm_stall()
        self._release()

    def _release(self) -> None:
        """Hook: free what the connection holds; on an abort and again on the loss."""
