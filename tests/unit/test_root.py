"""ActrixService behaviour that needs no listeners."""

from __future__ import annotations

import gc

from twisted.application.service import Service
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.credentials import CryptoThreads
from actrix.root import ActrixService


class SettleHeapTests(SynchronousTestCase):
    def test_startup_objects_leave_the_collector(self) -> None:
        """settle_heap freezes what exists, so full collections skip it."""
        self.addCleanup(gc.unfreeze)
        root = ActrixService(Clock())
        kept = [[i] for i in range(1000)]
        root.settle_heap()
        self.assertGreater(gc.get_freeze_count(), len(kept))
        self.assertLess(len(gc.get_objects()), len(kept))


class StopTwiceTests(SynchronousTestCase):
    def test_a_second_stop_waits_for_the_first(self) -> None:
        """Stopping the daemon twice (a second SIGTERM, a test's cleanup after its
        own stop) stops each service once and both calls fire."""
        stops: list[str] = []

        class Counted(Service):
            def stopService(self) -> None:
                stops.append("stopped")
                super().stopService()

        root = ActrixService(Clock())
        Counted().setServiceParent(root.background)
        CryptoThreads(Clock(), threads=1).setServiceParent(root.background)
        root.startService()
        first = root.stopService()
        second = root.stopService()
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertEqual(stops, ["stopped"])

    def test_crypto_pool_stops_once(self) -> None:
        """The crypto pool's own stop is idempotent too."""
        pool = CryptoThreads(Clock(), threads=1)
        pool.startService()
        self.successResultOf(pool.stopService())
        self.successResultOf(pool.stopService())
