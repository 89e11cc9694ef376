"""Coturn-style operations: REST secret rotation, bandwidth caps, traffic lines."""

from __future__ import annotations

from typing import Any

from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.config import Secret
from actrix.stun import codec
from actrix.turn.auth import rest_credentials
from actrix.turn.bandwidth import Bandwidth
from tests.unit.turn.helpers import (
    PEER,
    Harness,
    error_code,
    relayed_address,
    turn_config,
)
from tests.unit.turn.test_service import _capture_events


def _rest_harness(*secrets: str) -> Harness:
    return Harness(
        turn_config(
            static_auth_secret=Secret(secrets[0]),
            static_auth_secrets=tuple(Secret(s) for s in secrets),
        )
    )


class RestRotationTests(SynchronousTestCase):
    def _allocate(self, harness: Harness, secret: str, address: Any) -> int | None:
        now = int(harness.clock.seconds())
        username, password = rest_credentials(secret, "bob", now + 600)
        return error_code(harness.client(address, username, password).allocate())

    def test_every_listed_secret_is_accepted(self) -> None:
        """Credentials minted with the new or the old secret both allocate."""
        harness = _rest_harness("new-secret", "old-secret")
        self.assertIsNone(self._allocate(harness, "new-secret", ("192.0.2.1", 1)))
        self.assertIsNone(self._allocate(harness, "old-secret", ("192.0.2.1", 2)))
        self.assertEqual(harness.metrics.rest_secret_matches, {0: 1, 1: 1})

    def test_unlisted_secret_is_refused(self) -> None:
        """A secret no longer listed gives 401 bad_integrity."""
        harness = _rest_harness("new-secret", "old-secret")
        self.assertEqual(self._allocate(harness, "retired", ("192.0.2.1", 1)), 401)
        self.assertEqual(harness.metrics.auth_failures["bad_integrity"], 1)

    def test_old_secret_keeps_its_allocation_going(self) -> None:
        """Requests after the Allocate under the old secret keep verifying."""
        harness = _rest_harness("new-secret", "old-secret")
        now = int(harness.clock.seconds())
        username, password = rest_credentials("old-secret", "bob", now + 600)
        client = harness.client(("192.0.2.1", 1), username, password)
        self.assertIsNone(error_code(client.allocate()))
        self.assertIsNone(error_code(client.permit(PEER)))
        self.assertIsNone(error_code(client.refresh(0)))


class BandwidthTests(SynchronousTestCase):
    def _relaying(self, **changes: Any) -> tuple[Harness, Any, int]:
        harness = Harness(turn_config(**changes))
        client = harness.client()
        relay_port = relayed_address(client.allocate())[1]
        self.assertIsNone(error_code(client.bind(0x4001, PEER)))
        return harness, client, relay_port

    def test_user_cap_drops_the_excess_both_ways(self) -> None:
        """Over turn.user_bandwidth bytes in a second, datagrams are dropped."""
        harness, client, port = self._relaying(user_bandwidth=1000)
        for _ in range(15):
            harness.service.data.channel_data(
                codec.encode_channel_data(0x4001, b"x" * 100), client.link.address
            )
        self.assertEqual(len(harness.relays.written(port)), 10)
        self.assertEqual(harness.metrics.bandwidth_dropped_out, 5)
        harness.relays.peer_sends(port, b"y" * 100, PEER)
        self.assertEqual(harness.metrics.bandwidth_dropped_in, 1)
        harness.clock.advance(0.5)  # 500 bytes earned
        before = len(client.link.sent)
        for _ in range(6):
            harness.relays.peer_sends(port, b"y" * 100, PEER)
        self.assertEqual(len(client.link.sent) - before, 5)
        self.assertEqual(harness.metrics.bandwidth_dropped_in, 2)

    def test_cap_is_shared_by_a_users_allocations(self) -> None:
        """Two allocations of one user pay from one bucket."""
        harness = Harness(turn_config(user_bandwidth=300))
        ports = []
        for n in (1, 2):
            client = harness.client(("192.0.2.1", n))
            ports.append(relayed_address(client.allocate())[1])
            client.permit(PEER)
        for port in ports:
            for _ in range(2):
                harness.relays.peer_sends(port, b"z" * 100, PEER)
        self.assertEqual(harness.metrics.relayed_packets_in, 3)
        self.assertEqual(harness.metrics.bandwidth_dropped_in, 1)

    def test_realm_cap(self) -> None:
        """turn.realm_bandwidth caps all users of the realm together."""
        harness = Harness(turn_config(realm_bandwidth=250))
        alice = harness.client(("192.0.2.1", 1))
        now = int(harness.clock.seconds())
        name, password = rest_credentials("rest-secret", "bob", now + 600)
        bob = harness.client(("192.0.2.1", 2), name, password)
        ports = []
        for client in (alice, bob):
            ports.append(relayed_address(client.allocate())[1])
            client.permit(PEER)
        for port in ports:
            for _ in range(2):
                harness.relays.peer_sends(port, b"z" * 100, PEER)
        self.assertEqual(harness.metrics.relayed_packets_in, 2)

    def test_no_cap_means_no_meter(self) -> None:
        """Without caps or the traffic line an allocation has no meter (one test)."""
        harness, client, _ = self._relaying()
        allocation = harness.service.allocations[client.link.address]
        self.assertIsNone(allocation.meter)
        harness, client, _ = self._relaying(allocation_log=True)
        self.assertIsNotNone(harness.service.allocations[client.link.address].meter)

    def test_buckets_are_forgotten_with_the_last_allocation(self) -> None:
        """Buckets do not outlive the allocations holding them."""
        bandwidth = Bandwidth(Harness().clock, 100, 1000)
        first = bandwidth.acquire("user:a", "stun:r")
        second = bandwidth.acquire("user:a", "stun:r")
        self.assertEqual(len(bandwidth), 2)
        bandwidth.release(first)
        self.assertEqual(len(bandwidth), 2)
        bandwidth.release(second)
        self.assertEqual(len(bandwidth), 0)
        self.assertIsNone(Bandwidth(Harness().clock, 0, 0).acquire("u", "r"))


class TrafficLogTests(SynchronousTestCase):
    def test_deletion_logs_one_accounting_line(self) -> None:
        """The line names principal, client, relay, duration and traffic both ways."""
        events = _capture_events(self)
        harness = Harness(turn_config(allocation_log=True))
        client = harness.client()
        relay = relayed_address(client.allocate())
        client.bind(0x4001, PEER)
        for _ in range(3):
            harness.service.data.channel_data(
                codec.encode_channel_data(0x4001, b"x" * 10), client.link.address
            )
        harness.relays.peer_sends(relay[1], b"y" * 7, PEER)
        harness.clock.advance(42)
        client.refresh(0)
        lines = [e for e in events if "allocation closed" in formatEvent(e)]
        self.assertEqual(len(lines), 1)
        event = lines[0]
        self.assertEqual(event["principal"], "user:alice")
        self.assertEqual(event["client"], "192.0.2.10:40000")
        self.assertEqual(event["relay"], f"198.51.100.1:{relay[1]}")
        self.assertEqual(event["duration"], 42.0)
        self.assertEqual((event["packets_out"], event["bytes_out"]), (3, 30))
        self.assertEqual((event["packets_in"], event["bytes_in"]), (1, 7))
        self.assertNotIn("alice-password", formatEvent(event))
        self.assertEqual(harness.metrics.allocations_closed["refresh_0"], 1)

    def test_expiry_is_counted_and_log_is_off_by_default(self) -> None:
        """By default (allocation_log off) nothing is logged; reasons are counted."""
        events = _capture_events(self)
        harness = Harness()
        harness.client().allocate()
        harness.clock.advance(4000)
        self.assertEqual(harness.service.allocations, {})
        self.assertEqual(harness.metrics.allocations_closed["expired"], 1)
        self.assertFalse([e for e in events if "allocation closed" in formatEvent(e)])
