"""Tests for actrix.tap's wiring of shared objects (built once, handed in)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from actrix.assembly import Wiring
from actrix.assembly.identity import ks_client as _ks_client
from actrix.core.config import KsClientConfig
from actrix.core.http import SiteRoot
from actrix.core.logthrottle import LogThrottle
from actrix.core.metrics import MetricsRegistry
from actrix.ks.client import KeyServerClient
from actrix.root import ActrixService
from tests.daemon import make_settings


class KsClientWiringTests(SynchronousTestCase):
    """tap.py builds one KS client per dependencies.ks table."""

    def setUp(self) -> None:
        clock = Clock()
        self.root = ActrixService(clock)
        self.wiring = Wiring(
            settings=make_settings(Path("/nonexistent")),
            reactor=clock,
            root=self.root,
            site=SiteRoot(),
            metrics=MetricsRegistry(),
            realms=cast(Any, None),
            throttle=LogThrottle(clock),
        )

    def _clients(self) -> list[Any]:
        return [s for s in self.root.background if isinstance(s, KeyServerClient)]

    def test_same_table_shares_one_client(self) -> None:
        """Two services naming one table get one client, started with the daemon."""
        config = KsClientConfig("http://ks.test:8080", 5.0)
        first = _ks_client(self.wiring, config)
        second = _ks_client(self.wiring, KsClientConfig("http://ks.test:8080", 5.0))
        self.assertIs(first, second)
        self.assertEqual(self._clients(), [first])

    def test_other_settings_same_host(self) -> None:
        """Another table for the same host gets its own, distinctly named client."""
        first = _ks_client(self.wiring, KsClientConfig("http://ks.test:8080", 5.0))
        second = _ks_client(self.wiring, KsClientConfig("http://ks.test:8080", 9.0))
        self.assertIsNot(first, second)
        self.assertNotEqual(first.name, second.name)
        self.assertEqual(len(self._clients()), 2)
