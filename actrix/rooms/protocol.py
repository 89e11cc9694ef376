"""The two room WebSocket endpoints: ``/rooms/ws`` (JSON) and ``/rooms/bin`` (binary).

Both sit on the shared edge (:mod:`actrix.core.websocket`): connection caps
before the upgrade (429/503), frame caps (1009), TCP_NODELAY, backpressure, a
per-connection token bucket (RATE_LIMITED at most once a second, close 1008
after 1 000 drops a minute) and one timer for pings and idle timeouts. Each
connection decodes with its own codec, calls :class:`RoomService`, and is the
service's :class:`~actrix.rooms.service.PeerSink` for its own wire.
"""

from __future__ import annotations

from typing import Any, Final

from autobahn.twisted.websocket import WebSocketServerFactory
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from actrix.core.logthrottle import LogThrottle
from actrix.core.settings import RoomsConfig
from actrix.core.websocket import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    EdgeLimits,
    EdgeProtocol,
    MessageRate,
    edge_options,
)
from actrix.rooms.members import Peer
from actrix.rooms.metrics import RoomMetrics
from actrix.rooms.model import INTERNAL_ERROR, RATE_LIMITED, RoomError
from actrix.rooms.service import RoomService

_log = Logger()

IDLE_REASON: Final = "idle timeout"


class RoomEdge:
    """What both room endpoints share: caps, live connections, the ping/idle tick."""

    def __init__(
        self, service: RoomService, config: RoomsConfig, clock: IReactorTime
    ) -> None:
        self.service = service
        self.config = config
        self.clock = clock
        self.limits = EdgeLimits(config.max_connections, config.max_connections_per_ip)
        self.connections: set[RoomConnection] = set()
        self.throttle = LogThrottle(clock)
        self.metrics = RoomMetrics()
        self.metrics.live = self._live
        self._last_ping = clock.seconds()
        # The last fan-out frame (key, UTF-8 JSON): members told of one event
        # share it.
        self.memo: tuple[tuple[Any, ...], bytes] | None = None

    def _live(self) -> tuple[int, int, int]:
        rooms = list(self.service.rooms())
        return (len(self.connections), len(rooms), sum(len(r.members) for r in rooms))

    def ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    def tick(self) -> None:
        """Ping every ``ping_interval``; close connections idle past their timeout."""
        now = self.clock.seconds()
        ping = self.config.ping_interval > 0 and (
            now - self._last_ping >= self.config.ping_interval
        )
        if ping:
            self._last_ping = now
        for connection in list(self.connections):
            timeout = connection.idle_timeout
            if timeout > 0 and now - connection.last_inbound >= timeout:
                self.metrics.closed["idle"] += 1
                connection.idle_out()
            elif ping and connection.state == connection.STATE_OPEN:
                connection.sendPing()

    def close_all(self) -> None:
        for connection in list(self.connections):
            connection.close_session(CLOSE_GOING_AWAY, "server shutdown")

    def warn(self, ip: str, key: str, text: str, **fields: Any) -> None:
        """One client-misuse line per IP and reason per minute."""
        suppressed = self.throttle.admit(ip, key)
        if suppressed is not None:
            _log.warn(
                text + " ({suppressed} similar suppressed)",
                ip=ip,
                suppressed=suppressed,
                **fields,
            )


class RoomConnection(EdgeProtocol):
    """What the JSON and binary room connections have in common."""

    __slots__ = ("_admitted", "_rate", "idle_timeout", "room_peer")

    factory: RoomFactory

    def __init__(self) -> None:
        self.room_peer: Peer | None = None
        self._admitted = False
        self.idle_timeout = 0.0
        super().__init__()

    @property
    def edge(self) -> RoomEdge:
        return self.factory.edge

    def onConnect(self, request: ConnectionRequest) -> None:
        edge = self.edge
        refused = edge.limits.admit(self._ip)
        if refused is not None:
            edge.metrics.connections_refused[str(refused)] += 1
            edge.warn(
                self._ip,
                f"cap{refused}",
                "room connection from {ip} refused: {status}",
                status=refused,
            )
            raise ConnectionDeny(
                refused,
                "Too Many Requests" if refused == 429 else "Service Unavailable",
            )
        self._admitted = True
        now = edge.clock.seconds()
        self.last_inbound = now
        self._rate = MessageRate(
            edge.config.message_rate, edge.config.message_burst, now
        )
        edge.connections.add(self)

    def onPing(self, payload: bytes) -> None:
        self._active()
        super().onPing(payload)

    def onPong(self, payload: bytes) -> None:
        self._active()

    def _active(self) -> None:
        """Pings and pongs count as activity (rooms.md §1), as data frames do."""
        now = self.edge.clock.seconds()
        self.last_inbound = now
        if self.room_peer is not None:
            self.room_peer.last_activity = now

    def admit_message(self, now: float) -> bool:
        """Count activity and apply the message rate; False drops the frame."""
        self.last_inbound = now
        peer = self.room_peer
        if peer is not None:
            peer.last_activity = now
        verdict = self._rate.take(now)
        if verdict == "ok":
            self.edge.metrics.messages_in += 1
            return True
        if verdict == "close":
            self.edge.metrics.closed["flood"] += 1
            self.edge.warn(
                self._ip, "flood", "room connection from {ip} flooding; closing"
            )
            self.close_session(CLOSE_POLICY, "message rate")
        elif verdict == "notify":
            self.send_error(
                RoomError(RATE_LIMITED, "too many messages", "message_rate"), None
            )
        return False

    def send_error(self, error: RoomError, context: Any) -> None:
        raise NotImplementedError

    def refused(self, error: RoomError, context: Any) -> None:
        """Answer a refused request; log it once per IP and reason a minute."""
        self.edge.metrics.refusals[error.code] += 1
        self.edge.warn(
            self._ip,
            f"{error.code}:{error.details or error.message[:40]}",
            "room request from {ip} refused: {code} {details}",
            code=error.code,
            details=error.details or error.message,
        )
        self.send_error(error, context)

    def internal_error(self, context: Any) -> None:
        _log.failure("while handling a room message from {ip}", ip=self._ip)
        self.send_error(RoomError(INTERNAL_ERROR, "internal error"), context)

    def idle_out(self) -> None:
        """No inbound frame for the idle timeout: leave the room, close 1001."""
        if self.room_peer is not None:
            self.edge.service.close_peer(self.room_peer)
            self.room_peer = None
        self.close_session(CLOSE_GOING_AWAY, IDLE_REASON)

    def edge_closed(self) -> None:
        edge = self.factory.edge
        if self.room_peer is not None:
            edge.service.close_peer(self.room_peer)
            self.room_peer = None
        if self._admitted:
            self._admitted = False
            edge.limits.release(self._ip)
            edge.connections.discard(self)

    def edge_slow_reader(self, unsent: int) -> None:
        self.edge.metrics.closed["slow_reader"] += 1
        self.edge.warn(
            self._ip,
            "slow_reader",
            "{ip} left {size} bytes unread; dropping its connection",
            size=unsent,
        )


class RoomFactory(WebSocketServerFactory):
    """One room endpoint's Autobahn factory."""

    def __init__(
        self,
        edge: RoomEdge,
        protocol: type[RoomConnection],
        max_message_size: int,
        reactor: Any = None,
    ) -> None:
        super().__init__(reactor=reactor)
        self.protocol = protocol
        self.edge = edge
        self.send_backlog_limit = max(4 * 1024 * 1024, 4 * max_message_size)
        edge_options(self, max_message_size)


class RoomSessions(Service):
    """Closes every room connection (1001) on shutdown; waits at most 5 s."""

    def __init__(self, edge: RoomEdge) -> None:
        self._edge = edge

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        edge = self._edge
        edge.service.end_all()
        edge.close_all()
        for _ in range(50):
            if not edge.connections:
                return
            await deferLater(edge.clock, 0.1, lambda: None)
        for connection in list(edge.connections):
            connection.abort()
