"""ALTERNATE-SERVER redirects over a load threshold or while draining (RFC 8489 §10)."""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.http import HealthResource
from actrix.core.settings import AlternateServer
from actrix.core.toml_table import is_domain_name, parse_server
from actrix.stun import codec
from tests.unit.turn.helpers import Harness, error_code, turn_config


def _alternate(message: codec.Message) -> tuple[str, int]:
    return codec.decode_address(message.attrs[codec.ALTERNATE_SERVER])


def _servers(*addresses: str) -> tuple[AlternateServer, ...]:
    return tuple(AlternateServer(a) for a in addresses)


class ParseServerTests(SynchronousTestCase):
    def test_forms(self) -> None:
        """ip:port, [ipv6]:port and a bare IP (port 3478) parse; others fail."""
        self.assertEqual(parse_server("203.0.113.7:3479"), ("203.0.113.7", 3479))
        self.assertEqual(parse_server("[2001:db8::1]:5000"), ("2001:db8::1", 5000))
        self.assertEqual(parse_server("2001:db8::2"), ("2001:db8::2", 3478))
        self.assertEqual(parse_server("198.51.100.1"), ("198.51.100.1", 3478))
        for bad in ("turn.example.com:3478", "1.2.3.4:0", "[::1", "1.2.3.4:x", ""):
            self.assertRaises(ValueError, parse_server, bad)

    def test_domain_names(self) -> None:
        """ALTERNATE-DOMAIN values are DNS names of A-labels, not addresses."""
        for good in ("turn-b.example.com", "xn--bcher-kva.example", "a.b.", "turn"):
            self.assertTrue(is_domain_name(good), good)
        for bad in (
            "",
            "203.0.113.7",
            "-a.example",
            "a..b",
            "bücher.example",
            "a" * 64,
        ):
            self.assertFalse(is_domain_name(bad), bad)


class LoadRedirectTests(SynchronousTestCase):
    def test_over_threshold_gets_300_with_an_alternate(self) -> None:
        """Beyond turn.redirect_above, Allocate is 300 + ALTERNATE-SERVER, signed."""
        harness = Harness(
            turn_config(
                redirect_above=1,
                alternate_servers=_servers("203.0.113.7:3478", "203.0.113.8:3478"),
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
                alternate_servers=_servers("203.0.113.7:3478", "[2001:db8::7]:3478"),
            )
        )
        harness.client(("192.0.2.1", 1)).allocate()
        reply = harness.client(("2001:db8::99", 1)).allocate()
        self.assertEqual(_alternate(reply), ("2001:db8::7", 3478))
        only_v6 = Harness(
            turn_config(redirect_above=1, alternate_servers=_servers("[2001:db8::7]:1"))
        )
        only_v6.client(("192.0.2.1", 1)).allocate()
        self.assertIsNone(error_code(only_v6.client(("192.0.2.1", 2)).allocate()))

    def test_retransmitted_allocate_is_not_redirected(self) -> None:
        """The existing allocation's retransmission is answered with its success."""
        harness = Harness(
            turn_config(
                redirect_above=1, alternate_servers=_servers("203.0.113.7:3478")
            )
        )
        client = harness.client(("192.0.2.1", 1))
        txid = client.txid()
        attrs = [(codec.REQUESTED_TRANSPORT, codec.encode_requested_transport())]
        client.send(codec.METHOD_ALLOCATE, attrs, txid=txid)
        reply = client.send(codec.METHOD_ALLOCATE, attrs, txid=txid)
        assert reply is not None
        self.assertIsNone(error_code(reply))


class AlternateDomainTests(SynchronousTestCase):
    """RFC 8489 §14.16: ALTERNATE-DOMAIN goes to TLS clients with the 300."""

    def setUp(self) -> None:
        self.harness = Harness(
            turn_config(
                redirect_above=1,
                alternate_servers=(
                    AlternateServer("203.0.113.7:3478", "turn-b.example.com", 5349),
                    AlternateServer("203.0.113.8:3478"),
                ),
            )
        )
        self.assertIsNone(error_code(self.harness.client(("192.0.2.1", 1)).allocate()))

    def _redirect(self, port: int, transport: str) -> codec.Message:
        client = self.harness.client(("192.0.2.1", port))
        client.link.transport_name = transport
        reply = client.allocate()
        self.assertEqual(error_code(reply), 300)
        self.assertTrue(codec.check_integrity(reply, client.key))
        return reply

    def test_tls_client_gets_domain_and_tls_port(self) -> None:
        """Over TLS: the alternate's tls_port and its domain, signed with the 300."""
        reply = self._redirect(2, "tls")
        self.assertEqual(_alternate(reply), ("203.0.113.7", 5349))
        self.assertEqual(reply.attrs[codec.ALTERNATE_DOMAIN], b"turn-b.example.com")
        # The next alternate has no domain: the client keeps its first name.
        reply = self._redirect(3, "tls")
        self.assertEqual(_alternate(reply), ("203.0.113.8", 3478))
        self.assertNotIn(codec.ALTERNATE_DOMAIN, reply.attrs)

    def test_udp_and_tcp_clients_get_no_domain(self) -> None:
        """Without TLS there is no certificate to check: address only."""
        for port, transport in ((2, "udp"), (3, "tcp"), (4, "udp")):
            reply = self._redirect(port, transport)
            self.assertNotIn(codec.ALTERNATE_DOMAIN, reply.attrs)
        self.assertEqual(_alternate(reply), ("203.0.113.7", 3478))


class DrainTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.flag = False
        self.harness = Harness(
            turn_config(alternate_servers=_servers("203.0.113.7:3478")),
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
