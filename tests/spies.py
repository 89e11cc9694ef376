"""Small observers tests attach to real objects: socket writes, log events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase


def count_socket_writes(transport: Any) -> dict[str, int]:
    """Count, on a Twisted socket transport, the sends (``writeSomeData``) and
    the registrations with the poller (``startWriting``) from now on."""
    calls = {"send": 0, "poll": 0}
    send, poll = transport.writeSomeData, transport.startWriting

    def counted_send(data: bytes) -> Any:
        calls["send"] += 1
        return send(data)

    def counted_poll() -> None:
        calls["poll"] += 1
        poll()

    transport.writeSomeData = counted_send
    transport.startWriting = counted_poll
    return calls


def log_events(
    test: SynchronousTestCase, keep: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """The global log's events ``keep`` accepts, while ``test`` runs."""
    events: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if keep(event):
            events.append(event)

    observer: Any = observe  # an ILogObserver
    globalLogPublisher.addObserver(observer)
    test.addCleanup(globalLogPublisher.removeObserver, observer)
    return events
