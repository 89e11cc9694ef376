"""RFC 8656 allocations: dual-stack, ADDRESS-ERROR-CODE, families, lifetimes."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from actrix.stun import codec
from tests.unit.turn.helpers import PEER, Harness, error_code, turn_config

PEER6 = ("2001:db8::5", 6000)
ADDITIONAL_V6 = (codec.ADDITIONAL_ADDRESS_FAMILY, codec.encode_address_family(2))


def _relayed(message: codec.Message) -> list[tuple[str, int]]:
    """Every XOR-RELAYED-ADDRESS of a response, in order."""
    raw = message.raw
    found = []
    offset = codec.HEADER_SIZE
    while offset < len(raw):
        kind = int.from_bytes(raw[offset : offset + 2], "big")
        size = int.from_bytes(raw[offset + 2 : offset + 4], "big")
        if kind == codec.XOR_RELAYED_ADDRESS:
            value = raw[offset + 4 : offset + 4 + size]
            found.append(codec.decode_xor_address(value, message.transaction_id))
        offset += 4 + size + (-size & 3)
    return found


class DualStackTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.harness = Harness(turn_config(relay_ipv6_ip="2001:db8::10"))
        self.client = self.harness.client()

    def test_dual_allocation_has_two_relayed_addresses(self) -> None:
        """ADDITIONAL-ADDRESS-FAMILY IPv6 yields an IPv4 and an IPv6 relay."""
        reply = self.client.allocate(ADDITIONAL_V6)
        self.assertIsNone(error_code(reply))
        relayed = _relayed(reply)
        self.assertEqual([ip for ip, _ in relayed], ["198.51.100.1", "2001:db8::10"])
        self.assertNotEqual(relayed[0][1], relayed[1][1])
        self.assertEqual(len(self.harness.relays.open), 2)
        self.assertEqual(self.harness.metrics.allocations_total, 1)
        self.assertEqual(self.harness.metrics.allocation_families, {"dual": 1})

    def test_both_families_relay_through_their_own_socket(self) -> None:
        """IPv4 peers go out of the IPv4 relay, IPv6 peers out of the IPv6 one."""
        v4_port, v6_port = (
            port for _, port in _relayed(self.client.allocate(ADDITIONAL_V6))
        )
        self.assertIsNone(error_code(self.client.permit(PEER, PEER6)))
        self.assertIsNone(error_code(self.client.bind(0x4001, PEER6)))
        self.assertIsNone(error_code(self.client.bind(0x4002, PEER)))
        data = self.harness.service.data
        data.channel_data(
            codec.encode_channel_data(0x4001, b"six"), self.client.link.address
        )
        data.channel_data(
            codec.encode_channel_data(0x4002, b"four"), self.client.link.address
        )
        self.assertEqual(self.harness.relays.written(v6_port), [(b"six", PEER6)])
        self.assertEqual(self.harness.relays.written(v4_port), [(b"four", PEER)])
        before = len(self.client.link.sent)
        self.harness.relays.peer_sends(v6_port, b"back6", PEER6)
        self.assertEqual(
            self.client.link.sent[before:],
            [codec.encode_channel_data(0x4001, b"back6")],
        )

    def test_send_indication_to_ipv6_peer(self) -> None:
        """A Send indication to an IPv6 peer leaves through the IPv6 relay."""
        v6_port = _relayed(self.client.allocate(ADDITIONAL_V6))[1][1]
        self.client.permit(PEER6)
        txid = b"\x01" * 12
        indication = codec.encode(
            codec.SEND_INDICATION,
            txid,
            [
                (codec.XOR_PEER_ADDRESS, codec.encode_xor_address(*PEER6, txid)),
                (codec.DATA, b"hello"),
            ],
        )
        self.client.deliver(indication)
        self.assertEqual(self.harness.relays.written(v6_port), [(b"hello", PEER6)])

    def test_deletion_frees_both_ports(self) -> None:
        """Refresh 0 closes both relay sockets and returns both ports."""
        self.client.allocate(ADDITIONAL_V6)
        self.assertIsNone(error_code(self.client.refresh(0)))
        self.assertEqual(self.harness.relays.open, {})
        self.assertEqual(len(self.harness.relays.closed), 2)

    def test_refresh_family_must_be_held(self) -> None:
        """REQUESTED-ADDRESS-FAMILY in Refresh: either family of a dual is fine."""
        self.client.allocate(ADDITIONAL_V6)
        reply = self.client.send(
            codec.METHOD_REFRESH,
            [(codec.REQUESTED_ADDRESS_FAMILY, codec.encode_address_family(2))],
        )
        assert reply is not None
        self.assertIsNone(error_code(reply))

    def test_retransmission_repeats_both_addresses(self) -> None:
        """A retransmitted dual Allocate gets the same two addresses back."""
        txid = self.client.txid()
        attrs = [
            (codec.REQUESTED_TRANSPORT, codec.encode_requested_transport()),
            ADDITIONAL_V6,
        ]
        first = self.client.send(codec.METHOD_ALLOCATE, attrs, txid=txid)
        again = self.client.send(codec.METHOD_ALLOCATE, attrs, txid=txid)
        assert first is not None and again is not None
        self.assertEqual(_relayed(first), _relayed(again))


class AddressErrorTests(SynchronousTestCase):
    def test_no_ipv6_relay_gives_address_error_440(self) -> None:
        """Without an IPv6 relay address the IPv4 half succeeds with 440 for IPv6."""
        harness = Harness()
        reply = harness.client().allocate(ADDITIONAL_V6)
        self.assertIsNone(error_code(reply))
        self.assertEqual(len(_relayed(reply)), 1)
        self.assertEqual(
            codec.decode_address_error_code(reply.attrs[codec.ADDRESS_ERROR_CODE]),
            (codec.FAMILY_IPV6, 440),
        )
        self.assertEqual(harness.metrics.address_errors, {440: 1})
        self.assertEqual(harness.metrics.allocation_families, {"ipv4": 1})

    def test_no_ipv6_port_gives_address_error_508(self) -> None:
        """With the port range used up by the IPv4 half, IPv6 gets 508."""
        harness = Harness(
            turn_config(relay_ipv6_ip="2001:db8::10", relay_port_range=(50000, 50000))
        )
        reply = harness.client().allocate(ADDITIONAL_V6)
        self.assertIsNone(error_code(reply))
        self.assertEqual(
            codec.decode_address_error_code(reply.attrs[codec.ADDRESS_ERROR_CODE]),
            (codec.FAMILY_IPV6, 508),
        )

    def test_bad_combinations_are_400(self) -> None:
        """IPv4 as additional family, or beside REQUESTED-ADDRESS-FAMILY, is 400."""
        harness = Harness(turn_config(relay_ipv6_ip="2001:db8::10"))
        cases = [
            [(codec.ADDITIONAL_ADDRESS_FAMILY, codec.encode_address_family(1))],
            [
                ADDITIONAL_V6,
                (codec.REQUESTED_ADDRESS_FAMILY, codec.encode_address_family(1)),
            ],
        ]
        for n, extra in enumerate(cases):
            reply = harness.client(("192.0.2.1", n + 1)).allocate(*extra)
            self.assertEqual(error_code(reply), 400)
        self.assertEqual(harness.relays.open, {})

    def test_unknown_requested_family_is_440(self) -> None:
        """A REQUESTED-ADDRESS-FAMILY other than IPv4/IPv6 is 440."""
        harness = Harness()
        reply = harness.client().allocate(
            (codec.REQUESTED_ADDRESS_FAMILY, codec.encode_address_family(3))
        )
        self.assertEqual(error_code(reply), 440)

    def test_peer_family_mismatch_is_443(self) -> None:
        """An IPv4-only allocation refuses an IPv6 peer with 443."""
        harness = Harness()
        client = harness.client()
        client.allocate()
        self.assertEqual(error_code(client.permit(PEER6)), 443)

    def test_address_error_code_round_trip(self) -> None:
        """ADDRESS-ERROR-CODE carries the family and code; short values fail."""
        value = codec.encode_address_error_code(codec.FAMILY_IPV6, 440)
        self.assertEqual(value[:4], bytes((2, 0, 4, 40)))
        self.assertEqual(codec.decode_address_error_code(value), (2, 440))
        self.assertRaises(codec.DecodeError, codec.decode_address_error_code, b"\x02")


class LifetimeTests(SynchronousTestCase):
    def test_lifetimes_follow_rfc8656(self) -> None:
        """Requested lifetimes are raised to the default and capped at the maximum."""
        harness = Harness(turn_config(default_lifetime=600, max_lifetime=3600))
        cases = [(None, 600), (60, 600), (1200, 1200), (86400, 3600)]
        for n, (requested, expected) in enumerate(cases):
            client = harness.client(("192.0.2.1", n + 1))
            extra = (
                []
                if requested is None
                else [(codec.LIFETIME, codec.encode_u32(requested))]
            )
            reply = client.allocate(*extra)
            self.assertEqual(codec.decode_u32(reply.attrs[codec.LIFETIME]), expected)
            refreshed = client.refresh(requested)
            self.assertEqual(
                codec.decode_u32(refreshed.attrs[codec.LIFETIME]), expected
            )
