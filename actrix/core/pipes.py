"""Both ends of the pipes to the daemon's long-lived child processes.

The daemon keeps children for work that must not run on the reactor's
interpreter lock or in its process (token sealing, :mod:`actrix.core.sealer`;
protoc, :mod:`actrix.signaling.protoc_pool`). :class:`ChildProcess` is the
daemon's end: whether the child is alive, killing it, and a Deferred for its
end. :func:`read_exact` is the child's end: so many bytes from its stdin, or
None at EOF.
"""

from __future__ import annotations

import contextlib
import signal
from typing import BinaryIO

from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol


class ChildProcess(ProcessProtocol):
    """The daemon's end of one child; subclasses call :meth:`ended` when it ends."""

    def __init__(self) -> None:
        self.alive = True
        self._ended: list[Deferred[None]] = []

    def kill(self) -> None:
        """SIGKILL the child if it still runs."""
        if self.alive and self.transport is not None:
            with contextlib.suppress(error.ProcessExitedAlready):
                self.transport.signalProcess(signal.SIGKILL)

    def when_ended(self) -> Deferred[None]:
        """Fires once the child has ended (at once if it has)."""
        d: Deferred[None] = Deferred()
        if self.alive:
            self._ended.append(d)
        else:
            d.callback(None)
        return d

    def ended(self) -> None:
        """The child is gone: fire every :meth:`when_ended` (from processEnded)."""
        self.alive = False
        ended, self._ended = self._ended, []
        for d in ended:
            d.callback(None)


def read_exact(stream: BinaryIO, size: int) -> bytes | None:
    """Exactly ``size`` bytes from ``stream``, or None at EOF before that."""
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data
