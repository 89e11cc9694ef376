"""UDP and TCP/TLS protocols: Binding, framing, ChannelData and bad input."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport, StringTransport
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from actrix.stun import codec
from actrix.stun.protocol import (
    BindingResponder,
    StunTcpProtocol,
    StunUdpProtocol,
)
from actrix.turn.metrics import TurnMetrics
from actrix.turn.protocol import TurnUdpProtocol
from actrix.turn.tcp import STALL_TIMEOUT, TurnStreamFactory, TurnStreamProtocol
from tests.unit.stun.helpers import AbortableTransport, LogEvents
from tests.unit.turn.helpers import PEER, REALM, Harness, error_code, turn_config

CLIENT = ("192.0.2.10", 40000)
TXID = b"0123456789ab"


def binding(attrs: list[tuple[int, bytes]] | None = None, fp: bool = False) -> bytes:
    return codec.encode(codec.BINDING_REQUEST, TXID, attrs or [], fingerprint=fp)


class BindingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.metrics = TurnMetrics()
        self.transport = FakeDatagramTransport()
        self.proto = StunUdpProtocol(
            BindingResponder("actrix", self.metrics), self.metrics
        )
        self.proto.makeConnection(self.transport)

    def reply(self) -> codec.Message:
        data, addr = self.transport.written[-1]
        self.assertEqual(addr, CLIENT)
        return codec.decode(data)

    def test_binding_success_has_both_addresses(self) -> None:
        """The answer carries XOR-MAPPED-ADDRESS, MAPPED-ADDRESS and SOFTWARE."""
        self.proto.datagramReceived(binding(), CLIENT)
        reply = self.reply()
        self.assertEqual(reply.msg_type, codec.BINDING_SUCCESS)
        self.assertEqual(reply.transaction_id, TXID)
        self.assertEqual(
            codec.decode_xor_address(reply.attrs[codec.XOR_MAPPED_ADDRESS], TXID),
            CLIENT,
        )
        self.assertEqual(
            codec.decode_address(reply.attrs[codec.MAPPED_ADDRESS]), CLIENT
        )
        self.assertEqual(reply.attrs[codec.SOFTWARE], b"actrix")
        self.assertFalse(reply.fingerprint)
        self.assertEqual(self.metrics.bindings, 1)

    def test_fingerprint_echoed_and_software_omissible(self) -> None:
        """FINGERPRINT only when the request had one; empty SOFTWARE is omitted."""
        proto = StunUdpProtocol(BindingResponder("", self.metrics), self.metrics)
        proto.makeConnection(self.transport)
        proto.datagramReceived(binding(fp=True), CLIENT)
        reply = self.reply()
        self.assertTrue(reply.fingerprint)
        self.assertNotIn(codec.SOFTWARE, reply.attrs)

    def test_unknown_required_attribute_gets_420(self) -> None:
        """A Binding with an unknown comprehension-required attribute gets 420."""
        self.proto.datagramReceived(binding([(0x0031, b"??")]), CLIENT)
        reply = self.reply()
        self.assertEqual(reply.msg_type, codec.BINDING_ERROR)
        self.assertEqual(error_code(reply), 420)
        self.assertEqual(
            codec.decode_unknown_attributes(reply.attrs[codec.UNKNOWN_ATTRIBUTES]),
            [0x0031],
        )

    def test_zero_change_request_is_tolerated(self) -> None:
        """coturn's stunclient sends CHANGE-REQUEST with no flags: still answered."""
        self.proto.datagramReceived(binding([(codec.CHANGE_REQUEST, bytes(4))]), CLIENT)
        self.assertEqual(self.reply().msg_type, codec.BINDING_SUCCESS)

    def test_bad_input_is_dropped(self) -> None:
        """Junk, truncated messages, wrong cookies and bad fingerprints are dropped."""
        good = binding(fp=True)
        wrong_cookie = good[:4] + b"\x00\x00\x00\x00" + good[8:]
        bad_fp = good[:-1] + bytes([good[-1] ^ 1])
        for data in (b"", b"\x00", good[:-4], wrong_cookie, bad_fp, b"\xff" * 40):
            self.proto.datagramReceived(data, CLIENT)
        self.assertEqual(self.transport.written, [])
        self.assertEqual(self.metrics.malformed, 6)
        self.proto.datagramReceived(good, CLIENT)
        self.assertEqual(len(self.transport.written), 1)

    def test_indications_and_other_methods_are_ignored(self) -> None:
        """A STUN-only server answers Binding requests only."""
        self.proto.datagramReceived(
            codec.encode(codec.message_type(1, codec.CLASS_INDICATION), TXID, []),
            CLIENT,
        )
        self.proto.datagramReceived(
            codec.encode(codec.message_type(3, codec.CLASS_REQUEST), TXID, []), CLIENT
        )
        self.assertEqual(self.transport.written, [])


class TurnUdpTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.harness = Harness()
        self.transport = FakeDatagramTransport()
        responder = BindingResponder("actrix", self.harness.metrics)
        self.proto = TurnUdpProtocol(self.harness.service, responder)
        self.proto.makeConnection(self.transport)

    def request(self, method: int, attrs: list[tuple[int, bytes]], nonce: bytes) -> Any:
        key = codec.long_term_key("alice", REALM, "alice-password")
        data = codec.encode(
            codec.message_type(method, codec.CLASS_REQUEST),
            TXID,
            [
                *attrs,
                (codec.USERNAME, b"alice"),
                (codec.REALM, REALM.encode()),
                (codec.NONCE, nonce),
            ],
            key=key,
        )
        self.proto.datagramReceived(data, CLIENT)
        return codec.decode(self.transport.written[-1][0])

    def test_allocate_bind_and_relay_over_udp(self) -> None:
        """Binding, Allocate, ChannelBind and ChannelData through the UDP protocol."""
        self.proto.datagramReceived(binding(), CLIENT)
        self.assertEqual(
            codec.decode(self.transport.written[-1][0]).msg_type, codec.BINDING_SUCCESS
        )
        transport = [(codec.REQUESTED_TRANSPORT, codec.encode_requested_transport())]
        self.proto.datagramReceived(
            codec.encode(codec.message_type(3, 0), TXID, transport), CLIENT
        )
        nonce = codec.decode(self.transport.written[-1][0]).attrs[codec.NONCE]
        reply = self.request(codec.METHOD_ALLOCATE, transport, nonce)
        port = codec.decode_xor_address(reply.attrs[codec.XOR_RELAYED_ADDRESS], TXID)[1]
        reply = self.request(
            codec.METHOD_CHANNEL_BIND,
            [
                (codec.CHANNEL_NUMBER, codec.encode_channel_number(0x4010)),
                (codec.XOR_PEER_ADDRESS, codec.encode_xor_address(*PEER, TXID)),
            ],
            nonce,
        )
        self.assertIsNone(error_code(reply))
        self.proto.datagramReceived(codec.encode_channel_data(0x4010, b"abc"), CLIENT)
        self.assertEqual(self.harness.relays.written(port), [(b"abc", PEER)])
        # Unbound channel, reserved first byte, short frame, unknown client: dropped.
        for data, addr in (
            (codec.encode_channel_data(0x4011, b"x"), CLIENT),
            (b"\x90\x00\x00\x00", CLIENT),
            (b"\x40\x10\x00\x09abc", CLIENT),
            (b"\x40\x10", CLIENT),
            (codec.encode_channel_data(0x4010, b"x"), ("192.0.2.99", 1)),
        ):
            self.proto.datagramReceived(data, addr)
        self.assertEqual(len(self.harness.relays.written(port)), 1)
        self.harness.relays.peer_sends(port, b"back", PEER)
        self.assertEqual(self.transport.written[-1], (b"\x40\x10\x00\x04back", CLIENT))


class RequestBoundTests(SynchronousTestCase):
    """Defect 8: requests are bounded per source and in size before decoding."""

    def setUp(self) -> None:
        self.harness = Harness(turn_config(request_rate_per_ip=5))
        self.transport = FakeDatagramTransport()
        responder = BindingResponder("", self.harness.metrics)
        self.proto = TurnUdpProtocol(self.harness.service, responder)
        self.proto.makeConnection(self.transport)

    def test_requests_per_source_are_bounded_per_second(self) -> None:
        """Past the per-IP window, Bindings are dropped; others and later ones pass."""
        for _ in range(8):
            self.proto.datagramReceived(binding(), CLIENT)
        self.assertEqual(len(self.transport.written), 5)
        self.assertEqual(self.harness.metrics.dropped_requests["rate"], 3)
        self.proto.datagramReceived(binding(), ("192.0.2.11", 1))
        self.assertEqual(len(self.transport.written), 6)
        self.harness.clock.advance(1)
        self.proto.datagramReceived(binding(), CLIENT)
        self.assertEqual(len(self.transport.written), 7)

    def test_indications_and_channel_data_are_not_counted(self) -> None:
        """Send indications and ChannelData never use up the request window."""
        send = codec.encode(codec.SEND_INDICATION, TXID, [])
        for _ in range(20):
            self.proto.datagramReceived(send, CLIENT)
            self.proto.datagramReceived(codec.encode_channel_data(0x4001, b"x"), CLIENT)
        self.assertEqual(self.harness.metrics.dropped_requests, {})
        self.proto.datagramReceived(binding(), CLIENT)
        self.assertEqual(len(self.transport.written), 1)

    def test_oversized_request_is_dropped_unread(self) -> None:
        """A request over MAX_REQUEST_UDP bytes gets no answer, however valid."""
        big = binding([(codec.SOFTWARE, bytes(codec.MAX_REQUEST_UDP))])
        self.proto.datagramReceived(big, CLIENT)
        self.assertEqual(self.transport.written, [])
        self.assertEqual(self.harness.metrics.dropped_requests["oversized"], 1)
        self.proto.datagramReceived(binding([(codec.SOFTWARE, bytes(1000))]), CLIENT)
        self.assertEqual(len(self.transport.written), 1)

    def test_attribute_flood_is_dropped(self) -> None:
        """A Binding with more than MAX_ATTRIBUTES attributes is malformed."""
        many = binding([(0x8030, b"")] * (codec.MAX_ATTRIBUTES + 1))
        self.proto.datagramReceived(many, CLIENT)
        self.assertEqual(self.transport.written, [])
        self.assertEqual(self.harness.metrics.malformed, 1)

    def test_no_limit_when_zero(self) -> None:
        """request_rate_per_ip = 0 turns the window off."""
        harness = Harness(turn_config(request_rate_per_ip=0))
        transport = FakeDatagramTransport()
        proto = TurnUdpProtocol(harness.service, BindingResponder("", harness.metrics))
        proto.makeConnection(transport)
        for _ in range(3000):
            proto.datagramReceived(binding(), CLIENT)
        self.assertEqual(len(transport.written), 3000)


class TurnTcpTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.harness = Harness()
        responder = BindingResponder("actrix", self.harness.metrics)
        self.proto = TurnStreamProtocol(
            self.harness.service, responder, "tcp", self.harness.clock
        )
        self.transport = AbortableTransport(IPv4Address("TCP", *CLIENT))
        self.proto.makeConnection(self.transport)

    def take(self) -> bytes:
        data: bytes = self.transport.value()
        self.transport.clear()
        return data

    def allocate(self) -> int:
        transport = [(codec.REQUESTED_TRANSPORT, codec.encode_requested_transport())]
        self.proto.dataReceived(codec.encode(codec.message_type(3, 0), TXID, transport))
        nonce = codec.decode(self.take()).attrs[codec.NONCE]
        attrs = [
            *transport,
            (codec.USERNAME, b"alice"),
            (codec.REALM, REALM.encode()),
            (codec.NONCE, nonce),
        ]
        key = codec.long_term_key("alice", REALM, "alice-password")
        self.proto.dataReceived(
            codec.encode(codec.message_type(3, 0), TXID, attrs, key=key)
        )
        reply = codec.decode(self.take())
        self.assertIsNone(error_code(reply))
        bind = codec.encode(
            codec.message_type(codec.METHOD_CHANNEL_BIND, 0),
            TXID,
            [
                (codec.CHANNEL_NUMBER, codec.encode_channel_number(0x4001)),
                (codec.XOR_PEER_ADDRESS, codec.encode_xor_address(*PEER, TXID)),
                *attrs[1:],
            ],
            key=key,
        )
        self.proto.dataReceived(bind)
        self.assertIsNone(error_code(codec.decode(self.take())))
        return codec.decode_xor_address(reply.attrs[codec.XOR_RELAYED_ADDRESS], TXID)[1]

    def test_frames_split_across_reads(self) -> None:
        """Two Binding requests delivered byte by byte get two answers."""
        data = binding() * 2
        for i in range(len(data)):
            self.proto.dataReceived(data[i : i + 1])
        answers = self.take()
        self.assertEqual(len(answers), 2 * len(answers) // 2)
        first = codec.decode(answers[: len(answers) // 2])
        self.assertEqual(first.msg_type, codec.BINDING_SUCCESS)

    def test_channel_data_padded_both_ways(self) -> None:
        """ChannelData over TCP is padded to 4 bytes in both directions."""
        port = self.allocate()
        self.proto.dataReceived(codec.encode_channel_data(0x4001, b"hello", pad=True))
        self.assertEqual(self.harness.relays.written(port), [(b"hello", PEER)])
        self.harness.relays.peer_sends(port, b"abcde", PEER)
        self.assertEqual(self.take(), b"\x40\x01\x00\x05abcde\x00\x00\x00")

    def test_channel_data_in_any_chunking(self) -> None:
        """Several padded frames in one read, and frames cut anywhere, all relay."""
        port = self.allocate()
        frames = [
            codec.encode_channel_data(0x4001, bytes([i]) * (i + 1), pad=True)
            for i in range(6)
        ]
        stream = b"".join(frames)
        self.proto.dataReceived(stream)
        for i in range(len(stream)):
            self.proto.dataReceived(stream[i : i + 1])
        expected = [(bytes([i]) * (i + 1), PEER) for i in range(6)]
        self.assertEqual(self.harness.relays.written(port), expected * 2)
        self.assertFalse(self.transport.disconnecting)

    def test_channel_data_after_refresh_zero_in_one_read_closes(self) -> None:
        """ChannelData, Refresh 0, ChannelData in one read: the deletion counts."""
        port = self.allocate()
        refresh = self._signed_refresh_zero()
        early = codec.encode_channel_data(0x4001, b"early", pad=True)
        late = codec.encode_channel_data(0x4001, b"late", pad=True)
        self.proto.dataReceived(early + refresh + late)
        self.assertIsNone(error_code(codec.decode(self.take())))  # Refresh 0 done
        self.assertIn(port, self.harness.relays.closed)
        self.assertEqual(self.harness.metrics.relayed_packets_out, 1)  # early only
        self.assertTrue(self.transport.disconnecting)

    def _signed_refresh_zero(self) -> bytes:
        self.proto.dataReceived(
            codec.encode(codec.message_type(codec.METHOD_REFRESH, 0), TXID, [])
        )
        nonce = codec.decode(self.take()).attrs[codec.NONCE]
        return codec.encode(
            codec.message_type(codec.METHOD_REFRESH, 0),
            TXID,
            [
                (codec.LIFETIME, codec.encode_u32(0)),
                (codec.USERNAME, b"alice"),
                (codec.REALM, REALM.encode()),
                (codec.NONCE, nonce),
            ],
            key=codec.long_term_key("alice", REALM, "alice-password"),
        )

    def test_stream_stopping_mid_frame_waits(self) -> None:
        """Half a frame is kept; nothing is answered or closed."""
        self.proto.dataReceived(binding()[:13])
        self.assertEqual(self.take(), b"")
        self.assertFalse(self.transport.disconnecting)

    def test_junk_closes_the_connection(self) -> None:
        """Bytes that are neither STUN nor ChannelData close the connection."""
        self.proto.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertTrue(self.transport.disconnecting)

    def test_junk_connections_log_once_per_source(self) -> None:
        """Defect 9: 500 junk TURN connections from one IP log one close line."""
        logged = LogEvents()
        globalLogPublisher.addObserver(logged)
        self.addCleanup(globalLogPublisher.removeObserver, logged)
        factory = TurnStreamFactory(
            self.harness.service,
            BindingResponder("", self.harness.metrics),
            "tcp",
            self.harness.clock,
        )
        for port in range(500):
            proto = factory.buildProtocol(IPv4Address("TCP", "192.0.2.9", port))
            transport = AbortableTransport(IPv4Address("TCP", "192.0.2.9", port))
            proto.makeConnection(transport)
            proto.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
            self.assertTrue(transport.disconnecting)
            proto.connectionLost()
        closes = [e for e in logged if e.get("why") is not None]
        self.assertEqual(len(closes), 1)
        self.assertEqual(closes[0]["client"], "192.0.2.9")

    def test_oversized_request_closes_but_large_send_passes(self) -> None:
        """A STUN request over MAX_REQUEST_STREAM closes; a large Send does not."""
        port = self.allocate()
        peer_attr = (codec.XOR_PEER_ADDRESS, codec.encode_xor_address(*PEER, TXID))
        send = codec.encode(
            codec.SEND_INDICATION, TXID, [peer_attr, (codec.DATA, bytes(8000))]
        )
        self.proto.dataReceived(send)
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.harness.relays.written(port)[-1], (bytes(8000), PEER))
        self.proto.dataReceived(
            binding([(codec.SOFTWARE, bytes(codec.MAX_REQUEST_STREAM))])[:100]
        )
        self.assertTrue(self.transport.disconnecting)

    def test_malformed_stun_closes_the_connection(self) -> None:
        """A frame with a wrong magic cookie closes the connection."""
        data = binding()
        self.proto.dataReceived(data[:4] + b"\x00\x00\x00\x00" + data[8:])
        self.assertTrue(self.transport.disconnecting)

    def test_full_write_buffer_drops_relayed_data(self) -> None:
        """While the write buffer is full peer data is dropped and reading pauses."""
        port = self.allocate()
        self.assertIs(self.transport.producer, self.proto)
        self.proto.pauseProducing()
        self.assertEqual(self.transport.producerState, "paused")
        self.harness.relays.peer_sends(port, b"abcd", PEER)
        self.assertEqual(self.take(), b"")
        self.proto.dataReceived(binding())
        self.assertEqual(codec.decode(self.take()).msg_type, codec.BINDING_SUCCESS)
        self.proto.resumeProducing()
        self.assertEqual(self.transport.producerState, "producing")
        self.harness.relays.peer_sends(port, b"abcd", PEER)
        self.assertEqual(self.take(), b"\x40\x01\x00\x04abcd")

    def test_closing_unregisters_the_producer(self) -> None:
        """A close lets go of the producer so a paused transport can finish closing."""
        self.proto.pauseProducing()
        self.proto.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertIsNone(self.transport.producer)
        self.assertTrue(self.transport.disconnecting)
        self.proto.dataReceived(b"GET / HTTP/1.1\r\n\r\n")

    def test_client_not_reading_is_aborted(self) -> None:
        """A transport paused for the whole grace period is aborted, relay freed."""
        logged = LogEvents()
        globalLogPublisher.addObserver(logged)
        self.addCleanup(globalLogPublisher.removeObserver, logged)
        port = self.allocate()
        self.proto.pauseProducing()
        self.harness.clock.advance(STALL_TIMEOUT - 0.1)
        self.assertEqual(self.transport.aborts, 0)
        self.assertEqual(len(self.harness.service.allocations), 1)
        self.harness.clock.advance(0.2)
        self.assertEqual(self.transport.aborts, 1)
        self.assertIsNone(self.transport.producer)
        self.assertEqual(self.harness.service.allocations, {})
        self.assertEqual(self.harness.relays.closed, [port])
        self.assertEqual(self.harness.metrics.stream_aborted, 1)
        warnings = [e for e in logged if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["client"], CLIENT[0])
        self.proto.connectionLost()
        self.harness.clock.advance(100)
        self.assertEqual(self.transport.aborts, 1)
        self.assertEqual(self.harness.metrics.stream_aborted, 1)
        self.assertEqual(len(self.harness.clock.getDelayedCalls()), 1)  # the sweep

    def test_slow_reader_is_not_aborted(self) -> None:
        """A transport that drains within the grace period each time stays open."""
        self.allocate()
        for _ in range(5):
            self.proto.pauseProducing()
            self.harness.clock.advance(STALL_TIMEOUT - 1)
            self.proto.resumeProducing()
            self.harness.clock.advance(1)
        self.assertEqual(self.transport.aborts, 0)
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.harness.metrics.stream_aborted, 0)
        self.assertEqual(len(self.harness.service.allocations), 1)

    def test_close_that_never_drains_is_aborted(self) -> None:
        """An idle close that does not complete within the grace period is aborted."""
        self.harness.clock.advance(30.1)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.transport.aborts, 0)
        self.harness.clock.advance(STALL_TIMEOUT)
        self.assertEqual(self.transport.aborts, 1)
        self.assertEqual(self.harness.metrics.stream_aborted, 1)

    def test_close_while_paused_is_aborted_from_the_pause(self) -> None:
        """Junk sent while paused closes, and the abort still counts from the pause."""
        self.proto.pauseProducing()
        self.harness.clock.advance(5)
        self.proto.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertTrue(self.transport.disconnecting)
        self.harness.clock.advance(STALL_TIMEOUT - 5 + 0.1)
        self.assertEqual(self.transport.aborts, 1)

    def test_completed_close_is_not_aborted(self) -> None:
        """A close that completes leaves no abort timer behind."""
        self.proto.pauseProducing()
        self.proto.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.proto.connectionLost()
        self.harness.clock.advance(STALL_TIMEOUT * 3)
        self.assertEqual(self.transport.aborts, 0)
        self.assertEqual(self.harness.metrics.stream_aborted, 0)
        self.assertEqual(len(self.harness.clock.getDelayedCalls()), 1)  # the sweep

    def refresh_zero(self) -> None:
        """Delete the allocation with Refresh LIFETIME 0 (fresh nonce included)."""
        transport = [(codec.REQUESTED_TRANSPORT, codec.encode_requested_transport())]
        self.proto.dataReceived(codec.encode(codec.message_type(3, 0), TXID, transport))
        nonce = codec.decode(self.take()).attrs[codec.NONCE]
        key = codec.long_term_key("alice", REALM, "alice-password")
        attrs = [
            (codec.LIFETIME, codec.encode_u32(0)),
            (codec.USERNAME, b"alice"),
            (codec.REALM, REALM.encode()),
            (codec.NONCE, nonce),
        ]
        refresh = codec.message_type(codec.METHOD_REFRESH, 0)
        self.proto.dataReceived(codec.encode(refresh, b"refresh-txid", attrs, key=key))
        self.assertIsNone(error_code(codec.decode(self.take())))
        self.assertEqual(self.harness.service.allocations, {})

    def test_silent_connection_closes_after_idle_timeout(self) -> None:
        """A connection that sends nothing is closed after 30 s, not before."""
        self.harness.clock.advance(29.9)
        self.assertFalse(self.transport.disconnecting)
        self.harness.clock.advance(0.2)
        self.assertTrue(self.transport.disconnecting)

    def test_stun_message_extends_idle_timeout(self) -> None:
        """A Binding at 20 s moves the close to 50 s; half a frame does not."""
        self.harness.clock.advance(20)
        self.proto.dataReceived(binding())
        self.proto.dataReceived(binding()[:10])
        self.harness.clock.advance(29.9)
        self.assertFalse(self.transport.disconnecting)
        self.harness.clock.advance(0.2)
        self.assertTrue(self.transport.disconnecting)

    def test_allocation_keeps_connection_open(self) -> None:
        """While its allocation lives the connection is not closed for idling."""
        self.allocate()
        for _ in range(10):
            self.harness.clock.advance(30)
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(len(self.harness.service.allocations), 1)

    def test_deleted_allocation_bounds_the_connection(self) -> None:
        """After Refresh 0 the connection closes 30 s later despite Bindings."""
        self.allocate()
        self.harness.clock.advance(100)
        self.refresh_zero()
        for _ in range(5):
            self.harness.clock.advance(5)
            self.proto.dataReceived(binding())
        self.assertFalse(self.transport.disconnecting)
        self.harness.clock.advance(5.1)
        self.assertTrue(self.transport.disconnecting)

    def test_expired_allocation_bounds_the_connection(self) -> None:
        """An allocation that expires leaves its connection 30 s more."""
        self.allocate()
        self.harness.clock.advance(self.harness.config.default_lifetime + 1)
        self.assertEqual(self.harness.service.allocations, {})
        self.assertFalse(self.transport.disconnecting)
        self.harness.clock.advance(31)
        self.assertTrue(self.transport.disconnecting)

    def test_allocating_again_lifts_the_bound(self) -> None:
        """A new allocation after Refresh 0 keeps the connection open."""
        self.allocate()
        self.refresh_zero()
        self.allocate()
        self.harness.clock.advance(300)
        self.assertFalse(self.transport.disconnecting)

    def test_connection_loss_cancels_the_idle_timer(self) -> None:
        """A closed connection leaves no idle timer behind."""
        # The service's sweep timer and this connection's idle timer.
        self.assertEqual(len(self.harness.clock.getDelayedCalls()), 2)
        self.proto.connectionLost()
        self.assertEqual(len(self.harness.clock.getDelayedCalls()), 1)

    def test_connection_loss_deletes_the_allocation(self) -> None:
        """Closing the TCP connection releases its allocation and relay."""
        port = self.allocate()
        self.proto.connectionLost()
        self.assertEqual(self.harness.service.allocations, {})
        self.assertEqual(self.harness.relays.closed, [port])


class StunTcpTests(SynchronousTestCase):
    def test_stun_only_tcp(self) -> None:
        """The STUN-only TCP protocol answers Binding and closes on ChannelData."""
        metrics = TurnMetrics()
        proto = StunTcpProtocol(BindingResponder("", metrics), metrics, Clock())
        transport = StringTransport(peerAddress=IPv4Address("TCP", *CLIENT))
        proto.makeConnection(transport)
        proto.dataReceived(binding())
        self.assertEqual(
            codec.decode(transport.value()).msg_type, codec.BINDING_SUCCESS
        )
        proto.dataReceived(codec.encode_channel_data(0x4001, b"x", pad=True))
        self.assertTrue(transport.disconnecting)

    def test_stun_only_tcp_closes_on_junk_at_once(self) -> None:
        """Text that is not STUN closes a STUN-only connection without waiting."""
        metrics = TurnMetrics()
        proto = StunTcpProtocol(BindingResponder("", metrics), metrics, Clock())
        transport = StringTransport(peerAddress=IPv4Address("TCP", *CLIENT))
        proto.makeConnection(transport)
        proto.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(metrics.malformed, 1)

    def test_stun_only_tcp_idle_timeout(self) -> None:
        """A STUN-only connection closes 30 s after its last Binding."""
        metrics = TurnMetrics()
        clock = Clock()
        proto = StunTcpProtocol(BindingResponder("", metrics), metrics, clock)
        transport = StringTransport(peerAddress=IPv4Address("TCP", *CLIENT))
        proto.makeConnection(transport)
        clock.advance(25)
        proto.dataReceived(binding())
        clock.advance(29)
        self.assertFalse(transport.disconnecting)
        clock.advance(1.1)
        self.assertTrue(transport.disconnecting)
        proto.connectionLost()
        self.assertEqual(clock.getDelayedCalls(), [])
