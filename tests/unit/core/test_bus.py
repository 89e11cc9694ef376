"""Tests for actrix.core.bus: the message codec and the in-process bus."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.bus import DELIVER, KICK, NEGOTIATE, BadMessage, BusMessage, LocalBus

messages = st.builds(
    BusMessage,
    kind=st.sampled_from([DELIVER, NEGOTIATE, KICK]),
    key=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)),
    session=st.integers(0, 2**40),
    payload=st.binary(max_size=512),
    origin=st.text(max_size=40),
    flag=st.booleans(),
)


class BusMessageTests(SynchronousTestCase):
    @given(messages)
    def test_round_trip(self, message: BusMessage) -> None:
        """Every message decodes to itself."""
        self.assertEqual(BusMessage.decode(message.encode()), message)

    @given(st.binary(max_size=200))
    def test_any_bytes_decode_or_raise_bad_message(self, data: bytes) -> None:
        """Decoding arbitrary bytes raises nothing but BadMessage."""
        with contextlib.suppress(BadMessage):
            BusMessage.decode(data)

    def test_unknown_kind_is_refused(self) -> None:
        """A well-formed message of an unknown kind is a BadMessage."""
        data = BusMessage(DELIVER, (1, 2), 3).encode().replace(b"deliver", b"explode")
        with self.assertRaises(BadMessage):
            BusMessage.decode(data)


class LocalBusTests(SynchronousTestCase):
    def test_only_this_node_is_reachable(self) -> None:
        """A local bus hands messages for its own node to the handler, no others."""
        bus = LocalBus("here")
        heard: list[BusMessage] = []
        bus.listen(heard.append)
        message = BusMessage(KICK, (1, 2), 3)
        self.assertFalse(bus.shared)
        self.assertTrue(
            self.successResultOf(Deferred.fromCoroutine(bus.send("here", message)))
        )
        self.assertFalse(
            self.successResultOf(Deferred.fromCoroutine(bus.send("there", message)))
        )
        self.assertEqual(heard, [message])
