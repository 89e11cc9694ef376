"""Test doubles shared by the stream-connection tests (STUN-only and TURN)."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver
from zope.interface import implementer


@implementer(ILogObserver)
class LogEvents(list[Any]):
    """A log observer keeping every event."""

    def __call__(self, event: Any) -> None:
        self.append(event)


class AbortableTransport(StringTransport):
    """A StringTransport (producer registration included) that counts aborts."""

    def __init__(self, peerAddress: IPv4Address) -> None:
        super().__init__(peerAddress=peerAddress)
        self.aborts = 0

    def abortConnection(self) -> None:
        self.aborts += 1
        super().abortConnection()
