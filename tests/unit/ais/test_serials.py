"""Tests for actrix.ais.serials: snowflake serial numbers (ais.md §3)."""

from __future__ import annotations

import threading

from twisted.trial.unittest import SynchronousTestCase

from actrix.ais.serials import (
    EPOCH_MS,
    SerialGenerator,
    compose,
    decompose,
    worker_id,
)


class LayoutTests(SynchronousTestCase):
    """Bit layout."""

    def test_spec_example(self) -> None:
        """Timestamp 123456789, worker 17, sequence 5 is 1011358019845."""
        self.assertEqual(compose(123456789, 17, 5), 1011358019845)
        self.assertEqual(compose(123456789, 17, 5), 0xEB79A2B105)
        self.assertEqual(decompose(1011358019845), (123456789, 17, 5))

    def test_fits_54_bits(self) -> None:
        """The largest serial leaves the high 10 bits clear."""
        self.assertLess(compose((1 << 41) - 1, 31, 255), 1 << 54)

    def test_worker_hash(self) -> None:
        """The worker id is a wrapping *31 hash of hostname ‖ pid, masked to 5 bits."""
        h = 0
        for byte in b"node-a1234":
            h = (h * 31 + byte) % (1 << 64)
        self.assertEqual(worker_id({"HOSTNAME": "node-a"}, 1234), h & 31)
        self.assertEqual(
            worker_id({"COMPUTERNAME": "node-a"}, 1234),
            worker_id({"HOSTNAME": "node-a"}, 1234),
        )
        self.assertEqual(worker_id({}, 7), worker_id({"HOSTNAME": "unknown"}, 7))


class GeneratorTests(SynchronousTestCase):
    """Sequencing rules."""

    def test_new_millisecond_resets_sequence(self) -> None:
        """The first serial of a millisecond has sequence 0 and that timestamp."""
        now = [EPOCH_MS + 1000]
        gen = SerialGenerator(lambda: now[0], worker=3)
        self.assertEqual(decompose(gen.next()), (1000, 3, 0))
        self.assertEqual(decompose(gen.next()), (1000, 3, 1))
        now[0] += 1
        self.assertEqual(decompose(gen.next()), (1001, 3, 0))

    def test_exhausted_sequence_borrows_next_millisecond(self) -> None:
        """After 256 serials in one millisecond the next one borrows ahead."""
        gen = SerialGenerator(lambda: EPOCH_MS + 50, worker=1)
        serials = [gen.next() for _ in range(257)]
        self.assertEqual(decompose(serials[255]), (50, 1, 255))
        self.assertEqual(decompose(serials[256]), (51, 1, 0))

    def test_clock_backwards(self) -> None:
        """A clock moving backwards keeps counting on the last timestamp."""
        now = [EPOCH_MS + 500]
        gen = SerialGenerator(lambda: now[0], worker=0)
        first = gen.next()
        now[0] -= 100
        second = gen.next()
        self.assertEqual(decompose(second), (500, 0, 1))
        self.assertGreater(second, first)

    def test_unique_rapid(self) -> None:
        """10 000 rapid calls on the real clock are all distinct."""
        import time

        gen = SerialGenerator(lambda: int(time.time() * 1000))
        serials = [gen.next() for _ in range(10_000)]
        self.assertEqual(len(set(serials)), 10_000)

    def test_unique_across_threads(self) -> None:
        """Four threads drawing 2 500 serials each never collide."""
        import time

        gen = SerialGenerator(lambda: int(time.time() * 1000))
        results: list[list[int]] = [[] for _ in range(4)]

        def draw(out: list[int]) -> None:
            for _ in range(2500):
                out.append(gen.next())

        threads = [threading.Thread(target=draw, args=(r,)) for r in results]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        merged = [s for r in results for s in r]
        self.assertEqual(len(set(merged)), 10_000)
