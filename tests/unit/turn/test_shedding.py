"""ALTERNATE-SERVER redirects over a load threshold or while draining (RFC 8489 §10)."""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.http import HealthResource
from actrix.core.toml_table import parse_server
from actrix.stun import codec
from tests.unit.turn.helpers import Harness, error_code, turn_config


def _alternate(message: codec.Message) -> tuple[str, int]:
    return codec.decode_address(message.attrs[codec.ALTERNATE_SERVER])


class ParseServerTests(SynchronousTestCase):
    def test_forms(self) -> None:
        """ip:port, [ipv6]:port and a bare IP (port 3478) parse; others fail."""
        self.assertEqual(parse_server("203.0.113.7:3479"), ("203.0.113.7", 3479))
        self.assertEqual(parse_server("[2001:db8::1]:5000"), ("2001:db8::1", 5000))
        self.assertEqual(parse_server("2001:db8::2"), ("2001:db8::2", 3478))
        self.assertEqual(parse_server("198.51.100.1"), ("198.51.100.1", 3478))
        for bad in ("turn.example.com:3478", "1.2.3.4:0", "[::1", "1.2.3.4:x", ""):
            self.assertRaises(ValueError, parse_server, bad)


class LoadRedirectTests(SynchronousTestCase):
    def test_over_threshold_gets_300_with_an_alternate(self) -> None:
        """Beyond turn.redirect_above, Allocate is 300 + ALTERNATE-SERVER, signed."""
        harness = Harness(
            turn_config(
                redirect_above=1,
                alternate_servers=("203.0.113.7:3478", "203.0.113.8:3478"),
            )
        )
        self.assertIsNone(error_code(harness.client(("192.0.2.1", 1)).allocate()))
        seen = []
        for n in (2, 3, 4):
            client = harness.client(("192.0.2.1", n))
            reply = client.allocate()
            self.assertEqual(error_code(reply), 300)
            self.assertTrue(codec.check_integrity(reply, client.key))
            seen.append(_alternate(reply))
        self.assertEqual(
            seen,
            [("203.0.113.7", 3478), ("203.0.113.8", 3478), ("203.0.113.7", 3478)],
        )
        self.assertEqual(len(harness.service.allocations), 1)
        self.assertEqual(len(harness.relays.open), 1)
        self.assertEqual(harness.metrics.redirected["load"], 3)

    def test_family_must_match(self) -> None:
        """An IPv6 client gets an IPv6 alternate; with none of its family, no 300."""
        harness = Harness(
            turn_config(
                redirect_above=1,
                alternate_servers=("203.0.113.7:3478", "[2001:db8::7]:3478"),
            )
        )
        harness.client(("192.0.2.1", 1)).allocate()
        reply = harness.client(("2001:db8::99", 1)).allocate()
        self.assertEqual(_alternate(reply), ("2001:db8::7", 3478))
        only_v6 = Harness(
            turn_config(redirect_above=1, alternate_servers=("[2001:db8::7]:1",))
        )
        only_v6.client(("192.0.2.1", 1)).allocate()
        self.assertIsNone(error_code(only_v6.client(("192.0.2.1", 2)).allocate()))

    def test_retransmitted_allocate_is_not_redirected(self) -> None:
        """The existing allocation's retransmission is answered with its success."""
        harness = Harness(
            turn_config(redirect_above=1, alternate_servers=("203.0.113.7:3478",))
        )
        client = harness.client(("192.0.2.1", 1))
        txid = client.txid()
        attrs = [(codec.REQUESTED_TRANSPORT, codec.encode_requested_transport())]
        client.send(codec.METHOD_ALLOCATE, attrs, txid=txid)
        reply = client.send(codec.METHOD_ALLOCATE, attrs, txid=txid)
        assert reply is not None
        self.assertIsNone(error_code(reply))


class DrainTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.flag = False
        self.harness = Harness(
            turn_config(alternate_servers=("203.0.113.7:3478",)),
            drain_probe=lambda: self.flag,
        )

    def test_drain_redirects_new_and_keeps_existing(self) -> None:
        """While draining, new allocations get 300; the existing one refreshes."""
        old = self.harness.client(("192.0.2.1", 1))
        self.assertIsNone(error_code(old.allocate()))
        self.flag = True
        self.harness.clock.advance(1)  # the sweep polls the flag
        self.assertTrue(self.harness.service.health()["draining"])
        self.assertEqual(self.harness.metrics.draining(), True)
        reply = self.harness.client(("192.0.2.1", 2)).allocate()
        self.assertEqual(error_code(reply), 300)
        self.assertEqual(self.harness.metrics.redirected["draining"], 1)
        self.assertIsNone(error_code(old.refresh(600)))
        self.flag = False
        self.harness.clock.advance(1)
        self.assertIsNone(error_code(self.harness.client(("192.0.2.1", 3)).allocate()))

    def test_drain_without_alternate_is_508(self) -> None:
        """A draining node with no alternate of the client's family answers 508."""
        harness = Harness(turn_config(), drain_probe=lambda: True)
        reply = harness.client(("192.0.2.1", 2)).allocate()
        self.assertEqual(error_code(reply), 508)
        self.assertEqual(harness.service.allocations, {})
        self.assertEqual(harness.metrics.redirected["refused_draining"], 1)

    def test_probe_failure_keeps_the_state(self) -> None:
        """An unreadable flag is logged and the previous state kept."""

        def broken() -> bool:
            raise PermissionError("denied")

        harness = Harness(turn_config(), drain_probe=broken)
        harness.clock.advance(1)
        self.assertFalse(harness.service.health()["draining"])
        self.assertEqual(len(self.flushLoggedErrors(PermissionError)), 2)

    def test_health_reports_draining(self) -> None:
        """/health's status is draining and the turn object says so."""
        self.flag = True
        self.harness.clock.advance(1)
        resource = HealthResource(
            self.harness.clock,
            "node",
            ("turn",),
            {},
            {"turn": self.harness.service.health},
        )
        http: Any = StubTreq(resource)
        response = self.successResultOf(http.get("http://node/health"))
        body = json.loads(self.successResultOf(response.content()))
        self.assertEqual(body["status"], "draining")
        self.assertEqual(body["draining"], ["turn"])
        self.assertTrue(body["turn"]["draining"])
        self.assertEqual(body["turn"]["allocations"], 0)
