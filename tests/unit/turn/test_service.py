"""TurnService: allocations, permissions, channels, errors and lifetimes."""

from __future__ import annotations

from typing import Any

from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from actrix.core.logging import LEVELS
from actrix.stun import codec
from actrix.turn.auth import rest_credentials
from tests.unit.turn.helpers import (
    CLIENT,
    PEER,
    Harness,
    error_code,
    relayed_address,
    turn_config,
)


class AllocateTests(SynchronousTestCase):
    def test_unauthenticated_allocate_gets_401_with_realm_and_nonce(self) -> None:
        """An Allocate without MESSAGE-INTEGRITY is challenged."""
        client = Harness().client()
        reply = client.send(
            codec.METHOD_ALLOCATE,
            [(codec.REQUESTED_TRANSPORT, codec.encode_requested_transport())],
            auth=False,
        )
        assert reply is not None
        self.assertEqual(error_code(reply), 401)
        self.assertEqual(reply.attrs[codec.REALM], b"actor-rtc.local")
        self.assertIn(codec.NONCE, reply.attrs)
        self.assertNotIn(codec.MESSAGE_INTEGRITY, reply.attrs)

    def test_allocate_succeeds_with_advertised_relay(self) -> None:
        """A static user's Allocate returns the advertised relay, lifetime and MI."""
        harness = Harness()
        client = harness.client()
        reply = client.allocate()
        self.assertIsNone(error_code(reply))
        ip, port = relayed_address(reply)
        self.assertEqual(ip, "198.51.100.1")
        self.assertTrue(50000 <= port <= 50009)
        self.assertEqual(codec.decode_u32(reply.attrs[codec.LIFETIME]), 600)
        self.assertEqual(
            codec.decode_xor_address(
                reply.attrs[codec.XOR_MAPPED_ADDRESS], reply.transaction_id
            ),
            CLIENT,
        )
        self.assertTrue(codec.check_integrity(reply, client.key))
        self.assertEqual(reply.attrs[codec.SOFTWARE], b"actrix-test")
        self.assertEqual(harness.metrics.allocations_total, 1)
        self.assertEqual(harness.metrics.active_allocations(), 1)

    def test_lifetime_is_clamped(self) -> None:
        """Requested lifetimes are raised to the default and cut at the maximum."""
        harness = Harness()
        reply = harness.client().allocate((codec.LIFETIME, codec.encode_u32(99999)))
        self.assertEqual(codec.decode_u32(reply.attrs[codec.LIFETIME]), 3600)

    def test_stale_nonce_gets_438(self) -> None:
        """A nonce past its lifetime is answered with 438 and a new nonce."""
        harness = Harness()
        client = harness.client()
        client.allocate()
        old = client.nonce
        harness.clock.advance(3601)
        reply = client.refresh()
        self.assertEqual(error_code(reply), 438)
        self.assertNotEqual(reply.attrs[codec.NONCE], old)

    def test_nonce_from_another_client_is_stale(self) -> None:
        """A nonce is bound to the client IP it was issued to."""
        harness = Harness()
        first = harness.client()
        first.allocate()
        second = harness.client(("192.0.2.99", 1234))
        second.nonce = first.nonce
        self.assertEqual(error_code(second.allocate()), 438)

    def test_wrong_password_gets_401(self) -> None:
        """Bad MESSAGE-INTEGRITY is answered 401 and counted."""
        harness = Harness()
        reply = harness.client(password="nope").allocate()
        self.assertEqual(error_code(reply), 401)
        self.assertEqual(harness.metrics.auth_failures["bad_integrity"], 1)

    def test_auth_failure_warnings_are_throttled_per_ip(self) -> None:
        """Repeated bad credentials are all counted but logged once a minute."""
        events = _capture_events(self)
        harness = Harness()
        client = harness.client(password="nope")
        for _ in range(20):
            self.assertEqual(error_code(client.allocate()), 401)
        self.assertEqual(harness.metrics.auth_failures["bad_integrity"], 20)
        self.assertEqual(len(_warnings(events)), 1)
        harness.clock.advance(60)
        client.nonce = None  # the old nonce may have expired meanwhile
        self.assertEqual(error_code(client.allocate()), 401)
        warnings = _warnings(events)
        self.assertEqual(len(warnings), 2)
        self.assertEqual(warnings[-1]["reason"], "bad_integrity")
        self.assertEqual(warnings[-1]["suppressed"], 19)

    def test_unknown_user_and_wrong_realm_get_401(self) -> None:
        """Unknown users (not REST, not base122) and foreign realms are refused."""
        harness = Harness()
        self.assertEqual(error_code(harness.client(username="mallory").allocate()), 401)
        client = harness.client(("192.0.2.11", 1))
        client.nonce = client._fetch_nonce()
        data = codec.encode(
            codec.message_type(codec.METHOD_ALLOCATE, codec.CLASS_REQUEST),
            client.txid(),
            [
                (codec.REQUESTED_TRANSPORT, codec.encode_requested_transport()),
                (codec.USERNAME, b"alice"),
                (codec.REALM, b"other.realm"),
                (codec.NONCE, client.nonce),
            ],
            key=codec.long_term_key("alice", "other.realm", "alice-password"),
        )
        reply = client.deliver(data)
        assert reply is not None
        self.assertEqual(error_code(reply), 401)
        self.assertEqual(harness.metrics.auth_failures["realm"], 1)

    def test_missing_username_gets_400(self) -> None:
        """MESSAGE-INTEGRITY without USERNAME/REALM/NONCE is a bad request."""
        client = Harness().client()
        data = codec.encode(
            codec.message_type(codec.METHOD_ALLOCATE, codec.CLASS_REQUEST),
            client.txid(),
            [(codec.REQUESTED_TRANSPORT, codec.encode_requested_transport())],
            key=client.key,
        )
        reply = client.deliver(data)
        assert reply is not None
        self.assertEqual(error_code(reply), 400)

    def test_missing_or_wrong_transport(self) -> None:
        """No REQUESTED-TRANSPORT is 400; TCP relaying is 442."""
        client = Harness().client()
        reply = client.send(codec.METHOD_ALLOCATE, [])
        assert reply is not None
        self.assertEqual(error_code(reply), 400)
        reply = client.send(
            codec.METHOD_ALLOCATE,
            [(codec.REQUESTED_TRANSPORT, codec.encode_requested_transport(6))],
        )
        assert reply is not None
        self.assertEqual(error_code(reply), 442)
        self.assertTrue(codec.check_integrity(reply, client.key))

    def test_malformed_attribute_gets_400(self) -> None:
        """A REQUESTED-TRANSPORT of the wrong size is a bad request."""
        client = Harness().client()
        reply = client.send(
            codec.METHOD_ALLOCATE, [(codec.REQUESTED_TRANSPORT, b"\x11")]
        )
        assert reply is not None
        self.assertEqual(error_code(reply), 400)

    def test_unknown_required_attribute_and_dont_fragment_get_420(self) -> None:
        """Unknown comprehension-required attributes and DONT-FRAGMENT get 420."""
        client = Harness().client()
        reply = client.allocate((0x7001, b"x"))
        self.assertEqual(error_code(reply), 420)
        self.assertEqual(
            codec.decode_unknown_attributes(reply.attrs[codec.UNKNOWN_ATTRIBUTES]),
            [0x7001],
        )
        reply = client.allocate((codec.DONT_FRAGMENT, b""))
        self.assertEqual(error_code(reply), 420)

    def test_second_allocate_is_437_but_retransmission_succeeds(self) -> None:
        """Same 5-tuple: a new Allocate gets 437, a retransmission the same relay."""
        client = Harness().client()
        txid = client.txid()
        attrs = [(codec.REQUESTED_TRANSPORT, codec.encode_requested_transport())]
        first = client.send(codec.METHOD_ALLOCATE, attrs, txid=txid)
        again = client.send(codec.METHOD_ALLOCATE, attrs, txid=txid)
        assert first is not None and again is not None
        self.assertEqual(relayed_address(first), relayed_address(again))
        self.assertEqual(error_code(client.allocate()), 437)

    def test_refresh_and_permission_without_allocation_get_437(self) -> None:
        """Requests needing an allocation get 437 when there is none."""
        client = Harness().client()
        self.assertEqual(error_code(client.refresh()), 437)
        self.assertEqual(error_code(client.permit(PEER)), 437)

    def test_refresh_with_other_username_gets_441(self) -> None:
        """Only the allocation's own user may refresh it."""
        harness = Harness()
        harness.client().allocate()
        user, password = rest_credentials("rest-secret", "bob", 1_800_000_000)
        intruder = harness.client(username=user, password=password)
        self.assertEqual(error_code(intruder.refresh()), 441)

    def test_relay_port_in_use_is_skipped(self) -> None:
        """A taken relay port is skipped; an exhausted range gives 508."""
        harness = Harness(turn_config(relay_port_range=(50000, 50001)))
        harness.relays.busy.add(50000)
        first = harness.client(("192.0.2.1", 1)).allocate()
        self.assertEqual(relayed_address(first)[1], 50001)
        self.assertEqual(error_code(harness.client(("192.0.2.2", 1)).allocate()), 508)

    def test_even_port_reservation(self) -> None:
        """EVEN-PORT with R gives an even port and a token for the next odd one."""
        harness = Harness(turn_config(relay_port_range=(50000, 50009)))
        first = harness.client(("192.0.2.1", 1)).allocate(
            (codec.EVEN_PORT, codec.encode_even_port(True))
        )
        port = relayed_address(first)[1]
        self.assertEqual(port % 2, 0)
        token = first.attrs[codec.RESERVATION_TOKEN]
        second = harness.client(("192.0.2.1", 2)).allocate(
            (codec.RESERVATION_TOKEN, token)
        )
        self.assertEqual(relayed_address(second)[1], port + 1)
        third = harness.client(("192.0.2.1", 3)).allocate(
            (codec.RESERVATION_TOKEN, token)
        )
        self.assertEqual(error_code(third), 508)

    def test_reservation_expires(self) -> None:
        """An unclaimed reservation frees its port after 30 s."""
        harness = Harness()
        first = harness.client().allocate(
            (codec.EVEN_PORT, codec.encode_even_port(True))
        )
        port = relayed_address(first)[1]
        self.assertIn(port + 1, harness.relays.open)
        harness.clock.advance(31)
        self.assertNotIn(port + 1, harness.relays.open)


class LifetimeTests(SynchronousTestCase):
    def test_refresh_zero_deletes_and_frees_the_port(self) -> None:
        """Refresh with LIFETIME 0 deletes at once and closes the relay socket."""
        harness = Harness()
        client = harness.client()
        port = relayed_address(client.allocate())[1]
        reply = client.refresh(0)
        self.assertIsNone(error_code(reply))
        self.assertEqual(codec.decode_u32(reply.attrs[codec.LIFETIME]), 0)
        self.assertEqual(harness.relays.closed, [port])
        self.assertEqual(harness.service.allocations, {})
        self.assertEqual(error_code(client.refresh()), 437)

    def test_allocation_expires_with_the_clock(self) -> None:
        """Without a refresh the allocation goes after its lifetime."""
        harness = Harness()
        client = harness.client()
        client.allocate()
        harness.clock.advance(599)
        self.assertEqual(len(harness.service.allocations), 1)
        harness.clock.advance(2)
        self.assertEqual(harness.service.allocations, {})
        self.assertEqual(len(harness.relays.closed), 1)

    def test_refresh_extends_lifetime(self) -> None:
        """A refresh restarts the lifetime."""
        harness = Harness()
        client = harness.client()
        client.allocate()
        harness.clock.advance(500)
        client.refresh(600)
        harness.clock.advance(500)
        self.assertEqual(len(harness.service.allocations), 1)

    def test_stop_service_closes_every_relay(self) -> None:
        """Shutdown closes every relay socket, reservations included."""
        harness = Harness()
        harness.client(("192.0.2.1", 2)).allocate(
            (codec.EVEN_PORT, codec.encode_even_port(True))
        )
        harness.client(("192.0.2.1", 1)).allocate()
        self.assertEqual(len(harness.relays.open), 3)
        self.successResultOf(harness.service.stopService())
        self.assertEqual(harness.relays.open, {})
        self.assertEqual(harness.service.allocations, {})


class DebugLogTests(SynchronousTestCase):
    def test_allocation_debug_lines_follow_the_log_level(self) -> None:
        """Allocation lines are emitted at debug level only, re-read every sweep."""
        self.addCleanup(LEVELS.clearLogLevels)
        events = _capture_events(self)
        harness = Harness()
        harness.client(("192.0.2.1", 1)).allocate()
        self.assertEqual(_debug_lines(events), [])
        LEVELS.setLogLevelForNamespace("actrix.turn", LogLevel.debug)
        harness.clock.advance(1)  # the sweep re-reads the level
        client = harness.client(("192.0.2.1", 2))
        client.allocate()
        client.refresh(0)
        lines = _debug_lines(events)
        self.assertEqual(len(lines), 2)
        self.assertIn("error 401 to 0x003", lines[0])
        self.assertIn("(user:alice)", lines[1])
        # The deletion writes no debug line (turn.allocation_log is its line).
        closed = [e for e in events if "allocation closed" in formatEvent(e)]
        self.assertEqual(closed, [])


class PermissionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.harness = Harness()
        self.client = self.harness.client()
        self.port = relayed_address(self.client.allocate())[1]

    def test_peer_data_needs_a_permission(self) -> None:
        """Peer datagrams are dropped until a permission exists, then arrive as Data."""
        relays = self.harness.relays
        relays.peer_sends(self.port, b"early", PEER)
        sent = len(self.client.link.sent)
        self.assertEqual(self.harness.metrics.dropped_no_permission, 1)
        self.assertIsNone(error_code(self.client.permit(PEER)))
        relays.peer_sends(self.port, b"hello", PEER)
        data = codec.decode(self.client.link.sent[-1])
        self.assertEqual(len(self.client.link.sent), sent + 2)
        self.assertEqual(data.msg_type, codec.DATA_INDICATION)
        self.assertEqual(data.attrs[codec.DATA], b"hello")
        self.assertEqual(
            codec.decode_xor_address(
                data.attrs[codec.XOR_PEER_ADDRESS], data.transaction_id
            ),
            PEER,
        )

    def test_permission_expires_after_300_seconds(self) -> None:
        """Permissions last 300 s unless refreshed."""
        self.client.permit(PEER)
        self.client.refresh()
        self.harness.clock.advance(301)
        before = len(self.client.link.sent)
        self.harness.relays.peer_sends(self.port, b"late", PEER)
        self.assertEqual(len(self.client.link.sent), before)

    def test_send_indication_relays_with_permission(self) -> None:
        """Send indications reach the peer only with a permission."""
        txid = self.client.txid()
        send = codec.encode(
            codec.SEND_INDICATION,
            txid,
            [
                (codec.XOR_PEER_ADDRESS, codec.encode_xor_address(*PEER, txid)),
                (codec.DATA, b"payload"),
            ],
        )
        self.client.deliver(send)
        self.assertEqual(self.harness.relays.written(self.port), [])
        self.client.permit(PEER)
        self.client.deliver(send)
        self.assertEqual(self.harness.relays.written(self.port), [(b"payload", PEER)])
        self.assertEqual(self.harness.metrics.relayed_bytes_out, 7)

    def test_several_peers_in_one_request(self) -> None:
        """One CreatePermission may name several peers."""
        other = ("203.0.113.77", 1)
        self.client.permit(PEER, other)
        self.harness.relays.peer_sends(self.port, b"x", other)
        self.assertEqual(
            codec.decode(self.client.link.sent[-1]).attrs[codec.DATA], b"x"
        )

    def test_ipv6_peer_on_ipv4_allocation_gets_443(self) -> None:
        """A peer of the other family is a 443."""
        self.assertEqual(error_code(self.client.permit(("2001:db8::1", 1))), 443)


class ChannelTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.harness = Harness()
        self.client = self.harness.client()
        self.port = relayed_address(self.client.allocate())[1]

    def test_channel_data_both_ways(self) -> None:
        """After ChannelBind, ChannelData reaches the peer and replies come back."""
        self.assertIsNone(error_code(self.client.bind(0x4001, PEER)))
        self.harness.service.data.channel_data(
            codec.encode_channel_data(0x4001, b"ping"), CLIENT
        )
        self.assertEqual(self.harness.relays.written(self.port), [(b"ping", PEER)])
        self.harness.relays.peer_sends(self.port, b"pong", PEER)
        self.assertEqual(self.client.link.sent[-1], b"\x40\x01\x00\x04pong")
        self.assertEqual(self.harness.metrics.relayed_packets_in, 1)

    def test_channel_range_is_checked(self) -> None:
        """Channel numbers outside 0x4000-0x7FFF are refused with 400."""
        self.assertEqual(error_code(self.client.bind(0x3FFF, PEER)), 400)
        self.assertEqual(error_code(self.client.bind(0x8000, PEER)), 400)
        self.assertIsNone(error_code(self.client.bind(0x4000, PEER)))

    def test_rebinding_rules(self) -> None:
        """A channel keeps its peer and a peer its channel; the same pair refreshes."""
        other = ("203.0.113.6", 7)
        self.client.bind(0x4001, PEER)
        self.assertEqual(error_code(self.client.bind(0x4001, other)), 400)
        self.assertEqual(error_code(self.client.bind(0x4002, PEER)), 400)
        self.assertIsNone(error_code(self.client.bind(0x4001, PEER)))

    def test_channel_expires_after_600_seconds(self) -> None:
        """An unrefreshed channel goes after 600 s and its number can be reused."""
        self.client.bind(0x4001, PEER)
        self.client.refresh(3600)
        self.harness.clock.advance(601)
        allocation = self.harness.service.allocations[CLIENT]
        self.assertEqual(allocation.channels, {})
        self.assertIsNone(error_code(self.client.bind(0x4001, ("203.0.113.6", 7))))

    def test_unbound_channel_data_is_dropped(self) -> None:
        """ChannelData on an unbound channel goes nowhere."""
        self.harness.service.data.channel_data(
            codec.encode_channel_data(0x4009, b"x"), CLIENT
        )
        self.harness.service.data.channel_data(b"\x40", CLIENT)
        self.assertEqual(self.harness.relays.written(self.port), [])


class DenyAndQuotaTests(SynchronousTestCase):
    def test_private_peer_gets_403_and_is_logged_once(self) -> None:
        """A peer in a denied range is refused with 403, counted and logged once."""
        events = _capture_events(self)
        harness = Harness()
        client = harness.client()
        client.allocate()
        self.assertEqual(error_code(client.permit(("10.1.2.3", 80))), 403)
        self.assertEqual(error_code(client.bind(0x4001, ("127.0.0.1", 80))), 403)
        self.assertEqual(harness.metrics.denied_peers["private"], 1)
        self.assertEqual(harness.metrics.denied_peers["loopback"], 1)
        denials = [e for e in events if e.get("rule") == "private"]
        self.assertEqual(len(denials), 1)

    def test_send_to_denied_peer_is_dropped_and_logged_once(self) -> None:
        """Send indications to a denied peer never leave and log once per peer."""
        events = _capture_events(self)
        harness = Harness()
        client = harness.client()
        port = relayed_address(client.allocate())[1]
        for _ in range(3):
            txid = client.txid()
            client.deliver(
                codec.encode(
                    codec.SEND_INDICATION,
                    txid,
                    [
                        (
                            codec.XOR_PEER_ADDRESS,
                            codec.encode_xor_address("169.254.1.1", 9, txid),
                        ),
                        (codec.DATA, b"x"),
                    ],
                )
            )
        self.assertEqual(harness.relays.written(port), [])
        self.assertEqual(harness.metrics.denied_peers["link-local"], 3)
        self.assertEqual(len([e for e in events if e.get("rule") == "link-local"]), 1)

    def test_allow_list_lets_loopback_through(self) -> None:
        """``turn.peer_allow`` overrides the deny-list."""
        harness = Harness(turn_config(peer_allow=("127.0.0.1/32",)))
        client = harness.client()
        client.allocate()
        self.assertIsNone(error_code(client.permit(("127.0.0.1", 80))))
        self.assertEqual(error_code(client.permit(("127.0.0.2", 80))), 403)

    def test_per_user_quota(self) -> None:
        """A user past max_allocations_per_user gets 486."""
        harness = Harness(turn_config(max_allocations_per_user=2))
        for port in (1, 2):
            self.assertIsNone(
                error_code(harness.client(("192.0.2.1", port)).allocate())
            )
        self.assertEqual(error_code(harness.client(("192.0.2.1", 3)).allocate()), 486)
        harness.client(("192.0.2.1", 1)).refresh(0)
        self.assertIsNone(error_code(harness.client(("192.0.2.1", 4)).allocate()))

    def test_total_quota(self) -> None:
        """The server-wide allocation limit gives 486."""
        harness = Harness(turn_config(max_allocations_total=1))
        harness.client(("192.0.2.1", 1)).allocate()
        user, password = rest_credentials("rest-secret", "bob", 1_800_000_000)
        other = harness.client(("192.0.2.2", 1), username=user, password=password)
        self.assertEqual(error_code(other.allocate()), 486)

    def test_rate_limit_per_source_ip(self) -> None:
        """Allocations beyond the per-IP burst get 486 until tokens refill."""
        harness = Harness(
            turn_config(allocation_rate_per_ip=1.0, allocation_burst_per_ip=2)
        )
        codes = [
            error_code(harness.client(("192.0.2.1", port)).allocate())
            for port in (1, 2, 3)
        ]
        self.assertEqual(codes, [None, None, 486])
        self.assertIsNone(error_code(harness.client(("192.0.2.9", 1)).allocate()))
        harness.clock.advance(1.5)
        self.assertIsNone(error_code(harness.client(("192.0.2.1", 4)).allocate()))

    def test_rate_limit_warnings_are_throttled_per_ip(self) -> None:
        """Refusals log once per IP per minute; the next line counts the rest."""
        events = _capture_events(self)
        harness = Harness(
            turn_config(allocation_rate_per_ip=0.001, allocation_burst_per_ip=1)
        )
        harness.client(("192.0.2.1", 1)).allocate()
        codes = [
            error_code(harness.client(("192.0.2.1", port)).allocate())
            for port in range(2, 12)
        ]
        self.assertEqual(codes, [486] * 10)
        self.assertEqual(error_code(harness.client(("192.0.2.2", 1)).allocate()), None)
        self.assertEqual(error_code(harness.client(("192.0.2.2", 2)).allocate()), 486)
        self.assertEqual(harness.metrics.rejected[486], 11)
        self.assertEqual(
            [(e["client"], e["suppressed"]) for e in _warnings(events)],
            [("192.0.2.1", 0), ("192.0.2.2", 0)],
        )
        harness.clock.advance(60)
        self.assertEqual(error_code(harness.client(("192.0.2.1", 99)).allocate()), 486)
        last = _warnings(events)[-1]
        self.assertEqual((last["client"], last["suppressed"]), ("192.0.2.1", 9))
        self.assertIn("9 similar lines suppressed", formatEvent(last))


class Ipv6Tests(SynchronousTestCase):
    def test_ipv6_relay_needs_configuration(self) -> None:
        """REQUESTED-ADDRESS-FAMILY IPv6 without a v6 relay address gets 440."""
        reply = (
            Harness()
            .client()
            .allocate((codec.REQUESTED_ADDRESS_FAMILY, codec.encode_address_family(2)))
        )
        self.assertEqual(error_code(reply), 440)

    def test_ipv6_relay_allocated_when_configured(self) -> None:
        """With turn.relay_ipv6_ip the relay is IPv6 and takes IPv6 peers only."""
        harness = Harness(turn_config(relay_ipv6_ip="2001:db8::10"))
        client = harness.client()
        reply = client.allocate(
            (codec.REQUESTED_ADDRESS_FAMILY, codec.encode_address_family(2))
        )
        self.assertEqual(relayed_address(reply)[0], "2001:db8::10")
        self.assertEqual(error_code(client.permit(PEER)), 443)
        self.assertIsNone(error_code(client.permit(("2001:db8:1::5", 9))))
        self.assertEqual(error_code(client.permit(("::ffff:127.0.0.1", 9))), 403)

    def test_reserved_ipv6_port_keeps_its_family(self) -> None:
        """Claiming an IPv6 reservation gives an IPv6 relay taking IPv6 peers."""
        harness = Harness(turn_config(relay_ipv6_ip="2001:db8::10"))
        first = harness.client(("192.0.2.1", 1)).allocate(
            (codec.REQUESTED_ADDRESS_FAMILY, codec.encode_address_family(2)),
            (codec.EVEN_PORT, codec.encode_even_port(True)),
        )
        port = relayed_address(first)[1]
        client = harness.client(("192.0.2.1", 2))
        second = client.allocate(
            (codec.RESERVATION_TOKEN, first.attrs[codec.RESERVATION_TOKEN])
        )
        self.assertEqual(relayed_address(second), ("2001:db8::10", port + 1))
        self.assertEqual(error_code(client.permit(PEER)), 443)
        self.assertIsNone(error_code(client.permit(("2001:db8:1::5", 9))))

    def test_unframeable_ipv6_datagram_is_dropped(self) -> None:
        """A peer datagram too big for a Data indication is dropped, not raised."""
        harness = Harness(turn_config(relay_ipv6_ip="2001:db8::10"))
        client = harness.client()
        reply = client.allocate(
            (codec.REQUESTED_ADDRESS_FAMILY, codec.encode_address_family(2))
        )
        port = relayed_address(reply)[1]
        peer = ("2001:db8:1::5", 9)
        self.assertIsNone(error_code(client.permit(peer)))
        sent = len(client.link.sent)
        harness.relays.peer_sends(port, bytes(65527), peer)
        self.assertEqual(len(client.link.sent), sent)
        harness.relays.peer_sends(port, bytes(65504), peer)
        indication = codec.decode(client.link.sent[-1])
        self.assertEqual(len(indication.attrs[codec.DATA]), 65504)

    def test_unknown_family_gets_440(self) -> None:
        """An address family other than 1 or 2 is refused."""
        reply = (
            Harness()
            .client()
            .allocate((codec.REQUESTED_ADDRESS_FAMILY, codec.encode_address_family(9)))
        )
        self.assertEqual(error_code(reply), 440)


class RestCredentialTests(SynchronousTestCase):
    def test_rest_credentials_work_until_expiry(self) -> None:
        """coturn REST usernames are accepted until their timestamp passes."""
        harness = Harness()
        expiry = int(harness.clock.seconds()) + 60
        user, password = rest_credentials("rest-secret", "bob", expiry)
        client = harness.client(username=user, password=password)
        self.assertIsNone(error_code(client.allocate()))
        harness.clock.advance(61)
        client.nonce = None
        self.assertEqual(error_code(client.refresh()), 401)
        self.assertEqual(harness.metrics.auth_failures["expired"], 1)

    def test_rest_credentials_with_wrong_secret_fail(self) -> None:
        """A REST password made with another secret does not verify."""
        harness = Harness()
        user, password = rest_credentials("other-secret", "bob", 1_800_000_000)
        reply = harness.client(username=user, password=password).allocate()
        self.assertEqual(error_code(reply), 401)


def _debug_lines(events: list[Any]) -> list[str]:
    return [
        formatEvent(event) for event in events if event["log_level"] == LogLevel.debug
    ]


def _warnings(events: list[Any]) -> list[Any]:
    return [event for event in events if event["log_level"] == LogLevel.warn]


def _capture_events(test: SynchronousTestCase) -> list[Any]:
    events = _Events()
    globalLogPublisher.addObserver(events)
    test.addCleanup(globalLogPublisher.removeObserver, events)
    return events


@implementer(ILogObserver)
class _Events(list[Any]):
    def __call__(self, event: Any) -> None:
        self.append(event)
