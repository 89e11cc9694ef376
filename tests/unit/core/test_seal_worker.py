"""Tests for actrix.core.seal_worker: the sealing child's framing and answers."""

from __future__ import annotations

import io

import coincurve
from twisted.trial.unittest import SynchronousTestCase

from actrix.core import seal_worker, tokens


def answers(data: bytes) -> list[tuple[int, int, bytes]]:
    bodies, rest = seal_worker.split_frames(data)
    assert rest == b""
    out = []
    for body in bodies:
        job, status = seal_worker.JOB.unpack_from(body)
        out.append((job, status, body[seal_worker.JOB.size :]))
    return out


class SealWorkerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.secret = coincurve.PrivateKey()
        self.public = self.secret.public_key.format(compressed=True)

    def serve(self, data: bytes) -> list[tuple[int, int, bytes]]:
        out = io.BytesIO()
        seal_worker.serve(io.BytesIO(data), out, tokens.ecies_encrypt)
        return answers(out.getvalue())

    def test_seals_in_order_with_job_ids(self) -> None:
        """Each answer names its job and opens with the secret key to the plaintext."""
        requests = seal_worker.encode_request(
            7, self.public, b'{"a":1}'
        ) + seal_worker.encode_request(8, self.public, b'{"b":2}')
        got = self.serve(requests)
        self.assertEqual([(job, status) for job, status, _ in got], [(7, 0), (8, 0)])
        secret = self.secret.secret
        self.assertEqual(tokens.ecies_decrypt(secret, got[0][2]), b'{"a":1}')
        self.assertEqual(tokens.ecies_decrypt(secret, got[1][2]), b'{"b":2}')

    def test_bad_key_fails_that_job_only(self) -> None:
        """An invalid public key is answered FAILED with a reason; serving goes on."""
        requests = seal_worker.encode_request(
            1, b"\x02" + b"\xff" * 32, b"x"
        ) + seal_worker.encode_request(2, self.public, b"y")
        got = self.serve(requests)
        self.assertEqual(got[0][:2], (1, seal_worker.FAILED))
        self.assertTrue(got[0][2])
        self.assertEqual(got[1][:2], (2, seal_worker.SEALED))

    def test_oversized_or_malformed_frame_ends_serving(self) -> None:
        """A frame past the bound, or a key length past the body, stops the child."""
        too_big = seal_worker.HEADER.pack(seal_worker.MAX_FRAME + 1) + b"\0" * 16
        self.assertEqual(self.serve(too_big), [])
        body = seal_worker.JOB.pack(3, 60) + b"short"
        bad_key = seal_worker.HEADER.pack(len(body)) + body
        good = seal_worker.encode_request(4, self.public, b"z")
        self.assertEqual(self.serve(bad_key + good), [])

    def test_eof_mid_frame_ends_quietly(self) -> None:
        frame = seal_worker.encode_request(5, self.public, b"abc")
        self.assertEqual(self.serve(frame[:-2]), [])

    def test_split_frames_keeps_partial_tail(self) -> None:
        one = seal_worker.encode_answer(1, 0, b"token")
        bodies, rest = seal_worker.split_frames(one + one[:3])
        self.assertEqual(len(bodies), 1)
        self.assertEqual(rest, one[:3])
