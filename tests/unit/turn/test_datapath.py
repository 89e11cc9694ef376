"""The data path's packed Data indication."""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from actrix.stun import codec
from actrix.turn.datapath import data_indication


class DataIndicationTests(SynchronousTestCase):
    def test_packed_data_indication_matches_the_encoder(self) -> None:
        """The IPv4 fast path gives codec.encode's bytes; IPv6 still works."""
        for peer in (("203.0.113.5", 5000), ("2001:db8::5", 7)):
            for size in range(9):
                data = bytes(range(size))
                random.seed(size)
                frame = data_indication(peer, data)
                random.seed(size)
                txid = random.randbytes(12)
                expected = codec.encode(
                    codec.DATA_INDICATION,
                    txid,
                    [
                        (codec.XOR_PEER_ADDRESS, codec.encode_xor_address(*peer, txid)),
                        (codec.DATA, data),
                    ],
                )
                self.assertEqual(frame, expected)
