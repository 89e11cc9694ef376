"""Snowflake serial numbers for ActrIds (ais.md §3).

54 bits: 41 bits of milliseconds since 2023-01-01T00:00:00Z, 5 bits of worker
id, 8 bits of sequence. Within one millisecond the sequence counts up; when it
runs out, or the clock goes backwards, the generator borrows the next
millisecond, so serials never repeat within a process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import Final

EPOCH_MS: Final = 1672531200000
TIMESTAMP_BITS: Final = 41
WORKER_BITS: Final = 5
SEQUENCE_BITS: Final = 8
MAX_SEQUENCE: Final = (1 << SEQUENCE_BITS) - 1
_U64: Final = (1 << 64) - 1


def compose(timestamp_ms: int, worker: int, sequence: int) -> int:
    """The serial for (milliseconds since the epoch, worker id, sequence)."""
    return (
        ((timestamp_ms & ((1 << TIMESTAMP_BITS) - 1)) << (WORKER_BITS + SEQUENCE_BITS))
        | ((worker & ((1 << WORKER_BITS) - 1)) << SEQUENCE_BITS)
        | (sequence & MAX_SEQUENCE)
    )


def decompose(serial: int) -> tuple[int, int, int]:
    """(timestamp_ms, worker, sequence) of a serial."""
    return (
        serial >> (WORKER_BITS + SEQUENCE_BITS),
        (serial >> SEQUENCE_BITS) & ((1 << WORKER_BITS) - 1),
        serial & MAX_SEQUENCE,
    )


def worker_id(environ: Mapping[str, str] | None = None, pid: int | None = None) -> int:
    """``h & 31`` of a wrapping ``h*31 + byte`` hash of hostname ‖ pid."""
    environ = os.environ if environ is None else environ
    host = environ.get("HOSTNAME") or environ.get("COMPUTERNAME") or "unknown"
    pid = os.getpid() if pid is None else pid
    h = 0
    for byte in (host + str(pid)).encode("utf-8"):
        h = (h * 31 + byte) & _U64
    return h & ((1 << WORKER_BITS) - 1)


class SerialGenerator:
    """Thread-safe snowflake generator; ``now_ms`` gives Unix milliseconds."""

    def __init__(self, now_ms: Callable[[], int], worker: int | None = None) -> None:
        self._now_ms = now_ms
        self.worker = worker_id() if worker is None else worker
        self._lock = threading.Lock()
        self._last = -1
        self._sequence = 0

    def next(self) -> int:
        """A new serial, unique within this generator."""
        with self._lock:
            now = self._now_ms() - EPOCH_MS
            if now > self._last:
                self._last = now
                self._sequence = 0
            else:
                # Same millisecond, or the clock went backwards: keep counting
                # on the last timestamp, borrowing the next one when exhausted.
                self._sequence += 1
                if self._sequence > MAX_SEQUENCE:
                    self._last += 1
                    self._sequence = 0
            return compose(self._last, self.worker, self._sequence)
