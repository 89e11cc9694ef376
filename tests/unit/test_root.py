"""ActrixService behaviour that needs no listeners."""

from __future__ import annotations

import gc

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

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
