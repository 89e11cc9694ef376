"""Tests for actrix.core.bus: the message codec and the in-process bus."""

from __future__ import annotations

import contextlib
import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.bus import (
    BATCH,
    DELIVER,
    KICK,
    MAX_BATCH_MESSAGES,
    NEGOTIATE,
    BadMessage,
    BusMessage,
    LocalBus,
    deliver_bytes,
    encode_batch,
    split_batch,
)

messages = st.builds(
    BusMessage,
    kind=st.sampled_from([DELIVER, NEGOTIATE, KICK]),
    key=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)),
    session=st.integers(0, 2**40),
    payload=st.binary(max_size=512),
    origin=st.text(max_size=40),
    flag=st.booleans(),
    flow=st.sampled_from(["", "ice_candidate", "session_description"]),
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
        data = bytearray(BusMessage(DELIVER, (1, 2), 3).encode())
        data[1] = 9  # the kind's code
        with self.assertRaises(BadMessage):
            BusMessage.decode(bytes(data))

    def test_cut_or_foreign_bytes_are_refused(self) -> None:
        """Every prefix of a message, and the old JSON layout, is a BadMessage."""
        data = BusMessage(DELIVER, (1, 2), 3, b"", "node-a", flow="x").encode()
        for end in range(len(data)):
            with self.assertRaises(BadMessage):
                BusMessage.decode(data[:end])
        with self.assertRaises(BadMessage):
            BusMessage.decode(
                b'{"k":"deliver","a":[1,2],"s":3,"p":"","o":"","f":false}'
            )

    def test_values_outside_the_layout_do_not_encode(self) -> None:
        """A key or origin the layout cannot hold fails at the sender."""
        with self.assertRaises(struct.error):
            BusMessage(DELIVER, (2**32, 1), 3).encode()
        with self.assertRaises(ValueError):
            BusMessage(DELIVER, (1, 1), 3, origin="x" * 256).encode()


class LocalBusTests(SynchronousTestCase):
    def test_only_this_node_is_reachable(self) -> None:
        """A local bus hands messages for its own node to the handler, no others."""
        bus = LocalBus("here")
        heard: list[BusMessage] = []
        reads: list[int] = []
        bus.listen(heard.append, lambda: reads.append(len(heard)))
        message = BusMessage(KICK, (1, 2), 3)
        self.assertFalse(bus.shared)
        self.assertTrue(
            self.successResultOf(Deferred.fromCoroutine(bus.send("here", message)))
        )
        self.assertFalse(
            self.successResultOf(Deferred.fromCoroutine(bus.send("there", message)))
        )
        self.assertEqual(heard, [message])
        self.assertEqual(reads, [1])  # the receiver flushes after each message


class BatchTests(SynchronousTestCase):
    @given(st.lists(messages, min_size=1, max_size=20))
    def test_round_trip(self, batch: list[BusMessage]) -> None:
        """A batch splits into its messages; one message travels as it is."""
        encoded = [m.encode() for m in batch]
        data = encode_batch(encoded)
        if len(batch) == 1:
            self.assertEqual(data, encoded[0])
        self.assertEqual([BusMessage.decode(p) for p in split_batch(data)], batch)

    @given(st.binary(max_size=200))
    def test_any_bytes_split_or_raise_bad_message(self, data: bytes) -> None:
        """Splitting arbitrary bytes after the batch byte raises only BadMessage."""
        with contextlib.suppress(BadMessage):
            split_batch(bytes((BATCH,)) + data)

    def test_cut_batches_and_too_many_messages_are_refused(self) -> None:
        """Every cut of a batch fails; more than MAX_BATCH_MESSAGES fails."""
        one = BusMessage(KICK, (1, 2), 3).encode()
        data = encode_batch([one, one])
        for end in range(2, len(data)):
            if end in (1 + 4 + len(one),):
                continue  # a whole first message: a shorter, valid batch
            with self.assertRaises(BadMessage):
                split_batch(data[:end])
        with self.assertRaises(BadMessage):
            split_batch(encode_batch([b""] * (MAX_BATCH_MESSAGES + 1)))

    def test_deliver_bytes_reads_every_message_and_skips_bad_ones(self) -> None:
        """deliver_bytes hands each readable message over and counts them all."""
        heard: list[BusMessage] = []
        good = BusMessage(KICK, (1, 2), 3)
        count = deliver_bytes(heard.append, encode_batch([good.encode(), b"junk"]))
        self.assertEqual((count, heard), (2, [good]))
        self.assertEqual(deliver_bytes(heard.append, bytes((BATCH, 0))), 0)
