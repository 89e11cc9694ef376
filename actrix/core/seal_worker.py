"""The token-sealing child process: ECIES-encrypts plaintexts for the daemon.

The daemon (:mod:`actrix.core.sealer`) starts ``python -m actrix.core.seal_worker``
once and pipes it jobs; the child encrypts with :func:`actrix.core.tokens.ecies_encrypt`
(eciespy, the same call the daemon would make) on its own core, so issuing
identities does not hold the reactor's interpreter lock. It exits at EOF of
its stdin, or on a frame it does not understand.

Frames in both directions: a 4-byte big-endian length, then the body.
A request body is ``job id (4 bytes) ‖ key length (1 byte) ‖ public key ‖
plaintext``; an answer body is ``job id (4 bytes) ‖ status (1 byte: 0 sealed,
1 failed) ‖ token or error text``. Jobs are answered in the order they came.
"""

from __future__ import annotations

import signal
import struct
import sys
from collections.abc import Callable
from typing import BinaryIO, Final

from actrix.core.pipes import read_exact

HEADER: Final = struct.Struct(">I")
JOB: Final = struct.Struct(">IB")  # job id, then key length / status
SEALED: Final = 0
FAILED: Final = 1
MAX_KEY: Final = 65  # an uncompressed secp256k1 point
MAX_PLAINTEXT: Final = 64 * 1024  # claims JSON is ~200 bytes
MAX_FRAME: Final = JOB.size + MAX_KEY + MAX_PLAINTEXT

Seal = Callable[[bytes, bytes], bytes]


def encode_request(job: int, public_key: bytes, plaintext: bytes) -> bytes:
    """One request frame."""
    body = JOB.pack(job, len(public_key)) + public_key + plaintext
    return HEADER.pack(len(body)) + body


def encode_answer(job: int, status: int, payload: bytes) -> bytes:
    """One answer frame."""
    return HEADER.pack(JOB.size + len(payload)) + JOB.pack(job, status) + payload


def split_frames(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete frame bodies at the front of ``buffer``, and what remains."""
    bodies = []
    pos = 0
    size = len(buffer)
    while size - pos >= HEADER.size:
        (length,) = HEADER.unpack_from(buffer, pos)
        end = pos + HEADER.size + length
        if end > size:
            break
        bodies.append(buffer[pos + HEADER.size : end])
        pos = end
    return bodies, buffer[pos:]


def serve(stdin: BinaryIO, stdout: BinaryIO, seal: Seal) -> None:
    """Answer requests until EOF or a malformed frame."""
    while True:
        header = read_exact(stdin, HEADER.size)
        if header is None:
            return
        (size,) = HEADER.unpack(header)
        if not JOB.size <= size <= MAX_FRAME:
            return
        body = read_exact(stdin, size)
        if body is None:
            return
        job, key_length = JOB.unpack_from(body)
        if key_length > MAX_KEY or JOB.size + key_length > size:
            return
        public_key = body[JOB.size : JOB.size + key_length]
        plaintext = body[JOB.size + key_length :]
        try:
            answer = encode_answer(job, SEALED, seal(public_key, plaintext))
        except Exception as e:  # a bad key: the daemon answers that request 500
            answer = encode_answer(job, FAILED, f"{type(e).__name__}: {e}".encode())
        stdout.write(answer)
        stdout.flush()


def main() -> int:
    # The daemon ends this process by closing its stdin (also when the daemon
    # dies); a Ctrl-C or a service manager's SIGTERM to the whole group must
    # not end it first, while the daemon may still send it work.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from actrix.core.tokens import ecies_encrypt

    serve(sys.stdin.buffer, sys.stdout.buffer, ecies_encrypt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
