"""Tests for actrix.core.sibling_bus: worker-to-worker links on real Unix sockets.

Two buses in this process stand for two workers; their "supervisor" is this
process's parent, which both ends' peer check then accepts (the same uid, a
child of that pid). The wrapped bus is a real :class:`LocalBus`, which hears
nothing for other nodes: a message it gets shows a fallback.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from actrix.core import sibling_bus
from actrix.core.bus import DELIVER, KICK, BusMessage, LocalBus
from actrix.core.sibling_bus import SiblingBus, address, peer_is_sibling
from tests.spies import count_socket_writes


class Heard:
    """A bus handler that wakes waiters once ``count`` messages arrived."""

    def __init__(self) -> None:
        self.messages: list[BusMessage] = []
        self._waiting: list[tuple[int, Deferred[None]]] = []

    def __call__(self, message: BusMessage) -> None:
        self.messages.append(message)
        for entry in list(self._waiting):
            if len(self.messages) >= entry[0]:
                self._waiting.remove(entry)
                entry[1].callback(None)

    async def at_least(self, count: int) -> None:
        if len(self.messages) >= count:
            return
        d: Deferred[None] = Deferred()
        self._waiting.append((count, d))
        d.addTimeout(5, reactor)
        await d


def message(n: int, size: int = 10) -> BusMessage:
    return BusMessage(
        DELIVER, (7, n), 3, bytes([n % 256]) * size, "a-node", flow="ice_candidate"
    )


class SiblingBusTests(TestCase):
    def setUp(self) -> None:
        self.reads: dict[str, int] = {}

    async def bus(
        self, node: str, supervisor: int | None = None
    ) -> tuple[SiblingBus, Heard]:
        inner = LocalBus(f"{node}-{os.getpid()}-{id(self)}")
        parent = os.getppid() if supervisor is None else supervisor
        bus = SiblingBus(inner, parent, reactor)
        heard = Heard()
        self.reads.setdefault(node, 0)

        def read_done() -> None:
            self.reads[node] += 1

        bus.listen(heard, read_done)
        bus.startService()
        self.addCleanup(bus.stopService)
        await bus.ready()
        return bus, heard

    async def test_delivers_to_a_sibling_in_order(self) -> None:
        """Messages to a sibling go over the link, in order, not by the inner bus."""
        a, _ = await self.bus("a")
        b, heard = await self.bus("b")
        sent = [message(i) for i in range(50)]
        # The first send opens the link; the others wait for it or go at once.
        self.assertFalse(a.send_now(b.node_id, sent[0]))
        results = [Deferred.fromCoroutine(a.send(b.node_id, m)) for m in sent]
        for d in results:
            self.assertTrue(await d)
        self.assertTrue(a.send_now(b.node_id, message(99)))
        await heard.at_least(51)
        # The handler woke this test inside the bus's read: let it count.
        await deferLater(reactor, 0, lambda: None)
        self.assertEqual(heard.messages, [*sent, message(99)])
        self.assertEqual((a.sent, b.received_count, a.links), (51, 51, 1))
        # The receiver heard "read done" after reads, not once per message.
        self.assertTrue(1 <= self.reads["b"] <= 51, self.reads)

    async def test_a_turns_messages_leave_in_one_write(self) -> None:
        """What one turn sends to a sibling is one socket write (the turn
        writer), without registering the link with the poller; order kept."""
        a, _ = await self.bus("a")
        b, heard = await self.bus("b")
        self.assertTrue(await a.send(b.node_id, message(0)))
        await heard.at_least(1)
        link: Any = a._links[b.node_id]
        calls = count_socket_writes(link.transport)
        batch = [message(i) for i in range(1, 301)]
        for m in batch:
            self.assertTrue(a.send_now(b.node_id, m))
        self.assertEqual(calls, {"send": 0, "poll": 0})  # nothing before the turn ends
        await heard.at_least(301)
        self.assertEqual(heard.messages[1:], batch)
        self.assertEqual(calls, {"send": 1, "poll": 0})

    async def test_a_sibling_that_stops_reading_is_dropped(self) -> None:
        """While the link's buffer is full, writes past the bound drop the link
        (False), not buffer without end."""
        self.patch(sibling_bus, "BACKLOG_LIMIT", 150)
        a, _ = await self.bus("a")
        b, heard = await self.bus("b")
        self.assertTrue(await a.send(b.node_id, message(0)))
        await heard.at_least(1)
        link: Any = a._links[b.node_id]
        link._pressure.pauseProducing()  # as the transport does when full
        self.assertTrue(a.send_now(b.node_id, message(1, size=40)))
        self.assertFalse(a.send_now(b.node_id, message(2, size=40)))
        self.assertEqual(a.dropped, 1)
        await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(a.links, 0)

    async def test_other_nodes_go_through_the_inner_bus(self) -> None:
        """A node with no sibling listening is a stranger: the inner bus gets it."""
        a, heard = await self.bus("a")
        self.assertFalse(await a.send("elsewhere-1234abcd", message(1)))
        self.assertFalse(a.send_now("elsewhere-1234abcd", message(2)))
        # To its own node the inner bus delivers in place.
        self.assertTrue(await a.send(a.node_id, message(3)))
        self.assertEqual(heard.messages, [message(3)])
        self.assertEqual((a.sent, a.links), (0, 0))

    async def test_a_stopped_sibling_becomes_a_stranger(self) -> None:
        """After a sibling stops, messages to it fall back instead of failing."""
        a, _ = await self.bus("a")
        b, heard = await self.bus("b")
        self.assertTrue(await a.send(b.node_id, message(1)))
        await heard.at_least(1)
        await b.stopService()
        await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(a.links, 0)
        self.assertFalse(await a.send(b.node_id, message(2)))
        self.assertEqual(len(heard.messages), 1)

    async def test_garbage_and_oversize_frames_drop_only_themselves(self) -> None:
        """An unreadable message is dropped; an oversize one ends its link only."""
        self.patch(sibling_bus, "MAX_MESSAGE", 4096)
        self.patch(sibling_bus._Link, "MAX_LENGTH", 4096)
        a, _ = await self.bus("a")
        b, heard = await self.bus("b")
        self.assertTrue(await a.send(b.node_id, message(1)))
        link = a._links[b.node_id]
        link.sendString(b"not a bus message")
        self.assertTrue(await a.send(b.node_id, message(2)))
        await heard.at_least(2)
        link.sendString(b"\0" * 5000)
        await deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(a.links, 0)
        self.assertTrue(await a.send(b.node_id, message(3)))  # a new link
        await heard.at_least(3)
        self.assertEqual(heard.messages, [message(1), message(2), message(3)])
        self.flushLoggedErrors()

    async def test_a_process_that_is_no_sibling_is_refused(self) -> None:
        """A process of the same user but another parent cannot inject messages."""
        b, heard = await self.bus("b")
        frame = message(1).encode()
        script = (
            "import socket,struct,sys,time\n"
            "s=socket.socket(socket.AF_UNIX)\n"
            f"s.connect({address(b.supervisor, b.node_id)!r})\n"
            "try:\n"
            f"    s.sendall(struct.pack('!I',{len(frame)})+{frame!r})\n"
            "except OSError:\n"
            "    pass  # already refused\n"
            "time.sleep(0.3)\n"
        )
        _out, err, code = await getProcessOutputAndValue(
            sys.executable, ["-c", script], env=dict(os.environ)
        )
        self.assertEqual(code, 0, err)
        self.assertEqual(heard.messages, [])
        self.assertEqual(b.received_count, 0)

    async def test_links_only_to_the_same_supervisor(self) -> None:
        """Workers of different supervisors never link (their names differ)."""
        a, _ = await self.bus("a", supervisor=os.getppid())
        b, heard = await self.bus("b", supervisor=1)
        self.assertFalse(await a.send(b.node_id, message(1)))
        self.assertEqual((a.links, heard.messages), (0, []))

    def test_peer_check(self) -> None:
        """peer_is_sibling: same uid and a child of the named supervisor."""
        left, right = socket.socketpair(socket.AF_UNIX)
        self.addCleanup(left.close)
        self.addCleanup(right.close)

        class Transport:
            def getHandle(self) -> Any:
                return left

        self.assertTrue(peer_is_sibling(Transport(), os.getppid()))
        self.assertFalse(peer_is_sibling(Transport(), os.getpid()))
        self.assertFalse(peer_is_sibling(object(), os.getppid()))
        self.assertEqual(struct.calcsize("3i"), 12)

    def test_kick_messages_round_trip_the_codec(self) -> None:
        """The bytes a link carries decode to the message (no flow, no payload)."""
        kick = BusMessage(KICK, (1, 2**64 - 1), 2**63, origin="n-w1-0a0b0c0d")
        self.assertEqual(BusMessage.decode(kick.encode()), kick)
