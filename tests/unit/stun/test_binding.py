"""BindingResponder's packed fast paths give the general encoder's exact bytes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import FakeDatagramTransport
from twisted.trial.unittest import SynchronousTestCase

from actrix.stun import codec
from actrix.stun.protocol import (
    BARE_BINDING_PREFIX,
    MAX_CACHED_IPS,
    BindingResponder,
    StunUdpProtocol,
)


class _Counters:
    def __init__(self) -> None:
        self.bindings = 0
        self.malformed = 0


def _reference(
    txid: bytes, ip: str, port: int, software: str, fingerprint: bool
) -> bytes:
    extra = [(codec.SOFTWARE, software.encode())] if software else []
    return codec.encode(
        codec.BINDING_SUCCESS,
        txid,
        [
            (codec.XOR_MAPPED_ADDRESS, codec.encode_xor_address(ip, port, txid)),
            (codec.MAPPED_ADDRESS, codec.encode_address(ip, port)),
            *extra,
        ],
        fingerprint=fingerprint,
    )


class BindingResponderTests(SynchronousTestCase):
    @given(
        txid=st.binary(min_size=12, max_size=12),
        ip=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str),
        port=st.integers(0, 65535),
        software=st.sampled_from(["", "actrix", "abcde"]),
        fingerprint=st.booleans(),
    )
    def test_answer_matches_the_general_encoder(
        self, txid: bytes, ip: str, port: int, software: str, fingerprint: bool
    ) -> None:
        """Every Binding success equals codec.encode's, IPv4 and IPv6 alike."""
        responder = BindingResponder(software, _Counters())
        request = codec.decode(
            codec.encode(codec.BINDING_REQUEST, txid, [], fingerprint=fingerprint)
        )
        for _ in range(2):  # uncached, then cached address
            answer = responder.answer(request, ip, port)
            self.assertEqual(answer, _reference(txid, ip, port, software, fingerprint))
        assert answer is not None
        codec.decode(answer)  # and the FINGERPRINT, when present, verifies

    def test_bare_request_answered_without_decoding(self) -> None:
        """A 20-byte Binding is answered from its transaction id alone."""
        counters = _Counters()
        transport = FakeDatagramTransport()
        proto = StunUdpProtocol(BindingResponder("actrix", counters), counters)
        proto.makeConnection(transport)
        request = codec.encode(codec.BINDING_REQUEST, b"0123456789ab", [])
        self.assertEqual(request[:8], BARE_BINDING_PREFIX)
        proto.datagramReceived(request, ("192.0.2.1", 3478))
        self.assertEqual(
            transport.written,
            [
                (
                    _reference(b"0123456789ab", "192.0.2.1", 3478, "actrix", False),
                    ("192.0.2.1", 3478),
                )
            ],
        )
        self.assertEqual(counters.bindings, 1)

    def test_address_cache_is_bounded(self) -> None:
        """The per-address cache is cleared when full."""
        responder = BindingResponder("", _Counters())
        request = codec.encode(codec.BINDING_REQUEST, bytes(12), [])
        for i in range(MAX_CACHED_IPS + 5):
            ip = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
            responder.answer_bare(request, ip, 1)
        self.assertLessEqual(len(responder._ipv4), MAX_CACHED_IPS)
