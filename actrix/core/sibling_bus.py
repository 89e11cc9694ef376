"""``SiblingBus``: workers of one supervisor deliver to each other directly.

Under ``workers = N`` every worker is a node of the shared directory, and with
two workers about half the relays go from one worker to the other. Through
Redis each of them is a PUBLISH, redis-server's own work and a pub/sub
delivery: ~190 µs of CPU summed over the processes of this box
(``bench/cluster.py``), five times a relay within one worker. Between two
processes of one box a stream socket does the same job for a few µs.

Every worker listens on an abstract Unix socket named after its supervisor
and its node id (``\\0actrix-bus-{supervisor pid}-{node id}``). Sending to a
node, a worker looks for a link to it; without one it connects to that name
once: a sibling accepts, and any other node (on another box, or a worker that
died) is refused at once and remembered as a stranger, whose messages go on
through the wrapped bus (Redis). Messages sent while a link opens wait for it,
so one sender's messages to one node keep their order.

Abstract names vanish with their socket, so a worker killed with -9 leaves
nothing behind; they carry no file permissions, so both ends check their peer
(``SO_PEERCRED``): the same uid, and a child of the same supervisor. Frames are
Twisted's 32-bit length prefix, bounded by :data:`MAX_MESSAGE`; what one
reactor turn sends to a sibling leaves in one write at the turn's end
(:class:`~actrix.core.turnwrite.TurnWriter`); a sibling that stops reading is
dropped once :data:`BACKLOG_LIMIT` bytes wait for it.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any, Final

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    UNIXClientEndpoint,
    UNIXServerEndpoint,
    connectProtocol,
)
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver
from twisted.python.failure import Failure

from actrix.core.bus import Bus, BusMessage, Handler, ReadDone, deliver_bytes
from actrix.core.logthrottle import LogThrottle
from actrix.core.turnwrite import SendPressure, TurnWriter, batched, send_parts

log = Logger()

# The largest signaling message (max_message_size is at most 16 MiB) and the
# little a relay adds to it.
MAX_MESSAGE: Final = 16 * 1024 * 1024 + 64 * 1024
BACKLOG_LIMIT: Final = 32 * 1024 * 1024
CONNECT_TIMEOUT: Final = 5.0
MAX_STRANGERS: Final = 4096
_PEERCRED: Final = struct.Struct("3i")
_LENGTH: Final = struct.Struct(Int32StringReceiver.structFormat)


def address(supervisor: int, node: str) -> str:
    """The abstract socket name of ``node``'s bus under ``supervisor``."""
    return f"\0actrix-bus-{supervisor}-{node}"


def parent_of(pid: int) -> int | None:
    """The parent pid of a process (Linux /proc), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # pid (comm) state ppid ...: comm may hold spaces and parentheses.
    fields = stat.rsplit(b")", 1)[-1].split()
    try:
        return int(fields[1])
    except (IndexError, ValueError):
        return None


def peer_is_sibling(transport: Any, supervisor: int) -> bool:
    """The Unix socket's peer runs as our uid and is a child of ``supervisor``."""
    try:
        sock = transport.getHandle()
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except (AttributeError, OSError):
        return False
    pid, uid, _ = _PEERCRED.unpack(creds)
    return uid == os.getuid() and parent_of(pid) == supervisor


class _Link(Int32StringReceiver):
    """One direction of a pair of workers: the connecting side writes."""

    MAX_LENGTH = MAX_MESSAGE

    def __init__(self, bus: SiblingBus, node: str | None) -> None:
        self.bus = bus
        self.node = node  # the peer, on the connecting side
        self._pressure = SendPressure()

    @property
    def _socket(self) -> Any:
        """The Unix transport (``ITransport`` lacks abort and producers)."""
        return self.transport

    def connectionMade(self) -> None:
        if not peer_is_sibling(self.transport, self.bus.supervisor):
            self.bus.refused_peer(self.node)
            self._socket.abortConnection()
            return
        self._socket.registerProducer(self._pressure, True)
        self.bus.linked(self.node, self)

    def write(self, data: bytes) -> bool:
        """Queue one message; False (link dropped) if the peer stopped reading."""
        if self._pressure.over(len(data), BACKLOG_LIMIT):
            log.warn(
                "bus link to {node} dropped: {size} bytes unread",
                node=self.node,
                size=self._pressure.unsent,
            )
            self._socket.abortConnection()
            return False
        # One frame (Twisted's 32-bit length prefix), sent with the turn's
        # other messages to this sibling in one write.
        self.bus.writer.add(self, _LENGTH.pack(len(data)) + data)
        return True

    def write_out(self, parts: list[bytes]) -> None:
        """Send a turn's frames (the bus's :class:`TurnWriter` calls this)."""
        if batched(self.transport):
            send_parts(self.transport, parts)
        elif self.transport is not None:
            self.transport.writeSequence(parts)

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        self.bus.read_done()

    def stringReceived(self, string: bytes) -> None:
        self.bus.received(string)

    def lengthLimitExceeded(self, length: int) -> None:
        log.warn("bus link: a {length}-byte message is over the limit", length=length)
        self._socket.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.bus.writer.drop(self)
        self.bus.unlinked(self.node, self)


class _Accept(Factory):
    def __init__(self, bus: SiblingBus) -> None:
        self.bus = bus

    def buildProtocol(self, addr: Any) -> _Link:
        return _Link(self.bus, None)


class SiblingBus(Service):
    """A worker's :class:`~actrix.core.bus.Bus`: siblings direct, others by Redis."""

    def __init__(self, inner: Bus, supervisor: int, reactor: Any) -> None:
        self.inner = inner
        self.supervisor = supervisor
        self._reactor = reactor
        self._handler: Handler | None = None
        self._read_done: ReadDone | None = None
        self._port: IListeningPort | None = None
        self._listening: Deferred[None] | None = None
        self._links: dict[str, _Link] = {}
        self._accepted: set[_Link] = set()
        self._connecting: dict[str, list[Deferred[_Link | None]]] = {}
        self._strangers: set[str] = set()
        self._log_throttle = LogThrottle(reactor)
        self.writer = TurnWriter(reactor)
        # Metrics: messages written to siblings, read from them, and those a
        # full link dropped.
        self.sent = 0
        self.received_count = 0
        self.dropped = 0
        self.setName("sibling-bus")

    @property
    def node_id(self) -> str:
        return self.inner.node_id

    @property
    def shared(self) -> bool:
        return True

    @property
    def links(self) -> int:
        return len(self._links)

    def listen(self, handler: Handler, read_done: ReadDone | None = None) -> None:
        self._handler = handler
        self._read_done = read_done
        self.inner.listen(handler, read_done)

    async def ready(self) -> None:
        if self._listening is not None:
            await self._listening
        await self.inner.ready()

    # -- sending -------------------------------------------------------------

    def send_now(self, node: str, message: BusMessage) -> bool:
        link = self._links.get(node)
        if link is not None:
            return self._write(link, message)
        if node not in self._strangers and node != self.node_id and self.running:
            # Open the link now, so the next message goes without waiting.
            self._link_to(node)
        return False

    async def send(self, node: str, message: BusMessage) -> bool:
        if node in self._strangers or node == self.node_id:
            return await self.inner.send(node, message)
        link = self._links.get(node)
        if link is None:
            link = await self._link_to(node)
            if link is None:
                return await self.inner.send(node, message)
        return self._write(link, message)

    def _write(self, link: _Link, message: BusMessage) -> bool:
        if link.write(message.encode()):
            self.sent += 1
            return True
        self.dropped += 1
        return False

    def _link_to(self, node: str) -> Deferred[_Link | None]:
        """The link to ``node``, once open; None if ``node`` is no sibling."""
        d: Deferred[_Link | None] = Deferred()
        waiting = self._connecting.get(node)
        if waiting is not None:
            waiting.append(d)
            return d
        if not self.running:
            d.callback(None)
            return d
        self._connecting[node] = [d]
        endpoint = UNIXClientEndpoint(
            self._reactor, address(self.supervisor, node), timeout=CONNECT_TIMEOUT
        )
        connecting = connectProtocol(endpoint, _Link(self, node))
        connecting.addErrback(lambda failure: self._no_link(node))
        return d

    def linked(self, node: str | None, link: _Link) -> None:
        """A link is open: to ``node``, or (None) from a sibling."""
        if node is None:
            self._accepted.add(link)
            return
        self._links[node] = link
        self._strangers.discard(node)
        for d in self._connecting.pop(node, []):
            d.callback(link)

    def _no_link(self, node: str) -> None:
        if len(self._strangers) >= MAX_STRANGERS:
            self._strangers.clear()
        self._strangers.add(node)
        for d in self._connecting.pop(node, []):
            d.callback(None)

    def refused_peer(self, node: str | None) -> None:
        """A peer that is no sibling of ours connected, or answered at a name."""
        suppressed = self._log_throttle.admit("local", "bus_peer_refused")
        if suppressed is not None:
            log.warn(
                "bus link {direction} refused: the peer is not a worker of"
                " supervisor {supervisor} ({suppressed} more not logged)",
                direction="accepted" if node is None else f"to {node}",
                supervisor=self.supervisor,
                suppressed=suppressed,
            )
        if node is not None:
            self._no_link(node)

    def unlinked(self, node: str | None, link: _Link) -> None:
        self._accepted.discard(link)
        if node is not None and self._links.get(node) is link:
            del self._links[node]

    # -- receiving -----------------------------------------------------------

    def received(self, data: bytes) -> None:
        self.received_count += deliver_bytes(self._handler, data)

    def read_done(self) -> None:
        if self._read_done is not None:
            self._read_done()

    # -- service -------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        endpoint = UNIXServerEndpoint(
            self._reactor, address(self.supervisor, self.node_id)
        )
        self._listening = Deferred.fromCoroutine(self._listen(endpoint))

    async def _listen(self, endpoint: UNIXServerEndpoint) -> None:
        try:
            self._port = await endpoint.listen(_Accept(self))
        except Exception as e:
            # Siblings then reach this worker through Redis, as other nodes do.
            log.warn("bus links to sibling workers unavailable: {error}", error=str(e))
            return
        log.info("bus links to sibling workers listening")

    def stopService(self) -> Deferred[None]:
        super().stopService()
        waiting = [d for ds in self._connecting.values() for d in ds]
        self._connecting.clear()
        for d in waiting:
            d.callback(None)
        for link in [*self._links.values(), *self._accepted]:
            link._socket.loseConnection()
        self._links.clear()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self._listening is not None:
            await self._listening
        port, self._port = self._port, None
        stopped = None if port is None else port.stopListening()
        if stopped is not None:
            await stopped
