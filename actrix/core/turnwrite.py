"""One ``send`` per socket per reactor turn (:class:`TurnWriter`).

``transport.write`` on a Twisted TCP (or Unix) socket registers the socket
with the poller (``epoll_ctl``); the reactor writes it when the poller next
reports it writable, among that turn's reads, then unregisters it: two system
calls and a dispatch per socket written, on every relayed message. A
:class:`TurnWriter` keeps what is written to its sockets during one reactor
turn and sends it when the turn ends (``callLater(0)`` runs before the next
poll), straight to the socket when the transport's own buffer is empty; what
the socket does not take goes to the transport's buffer as before, where
backpressure (producers) and errors work as they always did.

The WebSocket edge (:mod:`actrix.core.websocket`) and the links between
sibling workers (:mod:`actrix.core.sibling_bus`) write through one each;
TURN over TCP sends each relayed batch at once with :func:`write_now`.
:class:`SendPressure` is how the edge and the links learn that a peer stopped
reading (and bound what they write to it meanwhile).
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.tcp import Connection
from twisted.logger import Logger
from zope.interface import implementer

_log = Logger()

# Bytes one connection may have pending in a turn before it is written at once.
TURN_BYTES: Final = 256 * 1024


@implementer(IPushProducer)
class SendPressure:
    """Told by a transport when its write buffer fills up and drains.

    Registered as the transport's streaming producer by a connection that
    must not buffer without bound for a peer that stopped reading (the
    WebSocket edge, a sibling link): ``unsent`` counts the bytes written
    while the buffer was full.
    """

    __slots__ = ("full", "unsent")

    def __init__(self) -> None:
        self.full = False
        self.unsent = 0

    def over(self, size: int, limit: int) -> bool:
        """Count ``size`` bytes written now; True once, while full, more than
        ``limit`` have been written since the buffer filled."""
        if not self.full:
            return False
        self.unsent += size
        return self.unsent > limit

    def pauseProducing(self) -> None:
        self.full = True

    def resumeProducing(self) -> None:
        self.full = False
        self.unsent = 0

    def stopProducing(self) -> None:
        self.full = False


class Writes(Protocol):
    """What a :class:`TurnWriter` writes for: one connection."""

    def write_out(self, parts: list[bytes]) -> None:
        """Send ``parts`` now (in this order)."""


class _Queue:
    __slots__ = ("parts", "size")

    def __init__(self, data: bytes) -> None:
        self.parts = [data]
        self.size = len(data)


class TurnWriter:
    """What its connections write in one reactor turn, sent at the turn's end.

    A connection whose pending bytes pass ``limit`` is written at once.
    """

    __slots__ = ("_call", "_clock", "_limit", "_pending")

    def __init__(self, clock: IReactorTime, limit: int = TURN_BYTES) -> None:
        self._clock = clock
        self._limit = limit
        self._pending: dict[Writes, _Queue] = {}
        self._call: IDelayedCall | None = None

    def add(self, connection: Writes, data: bytes) -> None:
        queue = self._pending.get(connection)
        if queue is None:
            self._pending[connection] = _Queue(data)
            if self._call is None:
                self._call = self._clock.callLater(0, self.flush)
            return
        queue.parts.append(data)
        queue.size += len(data)
        if queue.size > self._limit:
            self.flush_one(connection)

    def flush(self) -> None:
        """Send everything pending (the turn's end).

        One connection's failure is logged and does not keep the others'
        bytes back.
        """
        self._call = None
        pending, self._pending = self._pending, {}
        for connection, queue in pending.items():
            try:
                connection.write_out(queue.parts)
            except Exception:
                _log.failure("while writing to {connection}", connection=connection)

    def flush_one(self, connection: Writes) -> None:
        """Send what is pending for ``connection`` now."""
        queue = self._pending.pop(connection, None)
        if queue is not None:
            connection.write_out(queue.parts)

    def drop(self, connection: Writes) -> None:
        """Forget ``connection``'s pending bytes (it is gone or aborted)."""
        self._pending.pop(connection, None)


def batched(transport: Any) -> bool:
    """Whether ``transport`` is a Twisted socket a :class:`TurnWriter` can send on
    (TCP or Unix stream; not TLS, not an in-memory test transport)."""
    return isinstance(transport, Connection)


def _idle(transport: Any) -> bool:
    """Whether ``transport`` is a plain, connected socket with nothing buffered.

    Reads attributes of Twisted's ``tcp.Connection`` that are not public API
    (``_tempDataLen``, ``dataBuffer``, ``offset``, ``_aborting``);
    ``tests/integration/test_edge_writes.py`` and
    ``tests/integration/test_turn_stream_write.py`` fail if a Twisted release
    changes them.
    """
    return bool(
        isinstance(transport, Connection)
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and not transport._aborting
        and not transport._tempDataLen
        and transport.offset == len(transport.dataBuffer)
    )


def write_now(transport: Any, data: bytes) -> None:
    """``transport.write(data)``, sent at once when nothing is queued before it.

    On a plain TCP or Unix connection whose buffer is empty (the usual case:
    the peer reads) the bytes go to the socket now, without the poller round
    of ``transport.write``; whatever the kernel does not take is queued as
    before, so the byte order is kept and backpressure and errors still come
    from Twisted. TLS connections, wrapped and in-memory transports always
    go through ``write``.
    """
    if _idle(transport):
        sent = transport.writeSomeData(data)
        if type(sent) is not int:  # the connection is lost: let write see it
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


def send_parts(transport: Any, parts: list[bytes]) -> None:
    """:func:`write_now` of ``parts`` joined (a :class:`TurnWriter`'s flush)."""
    write_now(transport, parts[0] if len(parts) == 1 else b"".join(parts))
