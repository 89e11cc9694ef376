"""``RedisBus``: the :class:`~actrix.core.bus.Bus` over Redis pub/sub.

Each node subscribes to one channel, ``{key_prefix}db{N}:node:{node_id}``
(pub/sub channels ignore the database number, so it is part of the name), on a
connection of its own that reconnects and resubscribes by itself. Sending is a
PUBLISH on the shared command connection; its reply says how many nodes heard.
What one reactor turn sends to one node goes as one PUBLISH of a batch (at
most ``MAX_BATCH_BYTES``/``MAX_BATCH_MESSAGES``): under load, one Redis
command and one pub/sub delivery carry many relays instead of one each.
"""

from __future__ import annotations

import contextlib
from typing import Any

import attrs
import txredisapi
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    HostnameEndpoint,
    UNIXClientEndpoint,
    wrapClientTLS,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from actrix.core.bus import (
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    BusMessage,
    Handler,
    ReadDone,
    deliver_bytes,
    encode_batch,
)
from actrix.core.directory import DirectoryUnavailable
from actrix.core.redis_client import RedisClient, no_delay, tls_options

log = Logger()


class _Listener(txredisapi.SubscriberProtocol):  # type: ignore[misc]  # untyped base
    def connectionMade(self) -> Any:
        no_delay(self.transport)
        return super().connectionMade()

    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
        self.factory.bus.received(message)


class _ListenerFactory(txredisapi.SubscriberFactory):  # type: ignore[misc]  # untyped
    protocol = _Listener

    def __init__(self, bus: RedisBus) -> None:
        super().__init__(isLazy=True)
        self.bus = bus
        self.password = bus.client.password
        self.charset = None
        self.convertNumbers = False
        self.replyTimeout = None
        # Connection failures are logged by _not_subscribed; this one would
        # otherwise end as an unhandled error when stopped while connecting.
        self.deferred.addErrback(lambda failure: None)

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        d = protocol.whenConnected()
        d.addCallback(self._subscribe)
        d.addErrback(self._not_subscribed)
        return protocol

    def _subscribe(self, connection: Any) -> Any:
        d = connection.subscribe(self.bus.channel(self.bus.node_id))
        d.addCallback(lambda _: self.bus.subscribed())
        return d

    def _not_subscribed(self, failure: Any) -> None:
        if not self.stopped:
            log.warn("bus subscribe failed: {error}", error=str(failure.value))


@attrs.define(eq=False)
class _Outgoing:
    """Messages for one node, published together."""

    messages: list[bytes] = attrs.Factory(list)
    size: int = 0
    waiting: list[Deferred[bool]] = attrs.Factory(list)
    published: bool = False


class RedisBus(Service):
    """Publishes to other nodes' channels and listens on this node's one."""

    def __init__(self, client: RedisClient, node_id: str, reactor: Any) -> None:
        self.client = client
        self._reactor = reactor
        self._node_id = node_id
        self._handler: Handler | None = None
        self._read_done: ReadDone | None = None
        self._factory: _ListenerFactory | None = None
        self._subscribed = False
        self._waiting: list[Deferred[None]] = []
        self._outgoing: dict[str, _Outgoing] = {}
        # Cross-node deliveries (metrics): published and heard, published to
        # a channel nobody listened on, received here.
        self.sent = 0
        self.unheard = 0
        self.received_count = 0
        self.setName("redis-bus")

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def shared(self) -> bool:
        return True

    def channel(self, node: str) -> str:
        config = self.client.config
        return f"{config.key_prefix}db{config.db}:node:{node}"

    def listen(self, handler: Handler, read_done: ReadDone | None = None) -> None:
        self._handler = handler
        self._read_done = read_done

    def subscribed(self) -> None:
        """The channel subscription is active (first time, or after a reconnect)."""
        if not self._subscribed:
            log.info("bus listening on {channel}", channel=self.channel(self.node_id))
        self._subscribed = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    async def ready(self) -> None:
        """Wait for the first subscription, so nothing sent here is lost."""
        if self._subscribed:
            return
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        await d

    def received(self, data: Any) -> None:
        self.received_count += deliver_bytes(self._handler, data)
        if self._read_done is not None:
            self._read_done()

    async def send(self, node: str, message: BusMessage) -> bool:
        data = message.encode()
        batch = self._outgoing.get(node)
        if batch is not None and (
            batch.size + len(data) > MAX_BATCH_BYTES
            or len(batch.messages) >= MAX_BATCH_MESSAGES
        ):
            self._publish(node, batch)
            batch = None
        if batch is None:
            batch = self._outgoing[node] = _Outgoing()
            self._reactor.callLater(0, self._publish, node, batch)
        batch.messages.append(data)
        batch.size += len(data)
        heard: Deferred[bool] = Deferred()
        batch.waiting.append(heard)
        return await heard

    def _publish(self, node: str, batch: _Outgoing) -> None:
        """PUBLISH a batch (once: the turn's end, or when it is full)."""
        if batch.published:
            return
        batch.published = True
        if self._outgoing.get(node) is batch:
            del self._outgoing[node]
        command = self.client.command(
            "PUBLISH", self.channel(node), encode_batch(batch.messages)
        )
        d = Deferred.fromCoroutine(command)
        d.addCallbacks(
            self._published,
            self._not_published,
            callbackArgs=(batch,),
            errbackArgs=(batch,),
        )

    def _published(self, heard: Any, batch: _Outgoing) -> None:
        count = len(batch.messages)
        if heard:
            self.sent += count
        else:
            self.unheard += count
        for waiting in batch.waiting:
            waiting.callback(bool(heard))

    def _not_published(self, failure: Failure, batch: _Outgoing) -> None:
        # One exception object each: raising a shared one in every waiting
        # sender would grow its traceback with each raise.
        reason = str(failure.value) or type(failure.value).__name__
        for waiting in batch.waiting:
            waiting.errback(DirectoryUnavailable(f"Redis PUBLISH failed: {reason}"))

    def send_now(self, node: str, message: BusMessage) -> bool:
        """Never: a PUBLISH waits for its reply (who heard it)."""
        return False

    def startService(self) -> None:
        super().startService()
        self.client.renewed.append(self._renew)
        self._listen()

    def _renew(self) -> None:
        """The command connection was refused and replaced: so was this one."""
        factory = self._factory
        if factory is None or factory.size > 0 or not self.running:
            return
        self._factory = None
        factory.disconnect().addErrback(lambda failure: None)
        self._listen()

    def _listen(self) -> None:
        reactor = self._reactor
        config = self.client.config
        endpoint: Any
        if config.unix:
            endpoint = UNIXClientEndpoint(
                reactor, config.host, timeout=config.connect_timeout
            )
        else:
            endpoint = HostnameEndpoint(
                reactor, config.host, config.port, timeout=config.connect_timeout
            )
            options = tls_options(config)
            if options is not None:
                endpoint = wrapClientTLS(options, endpoint)
        self._factory = _ListenerFactory(self)
        self._factory.startConnecting(endpoint)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        with contextlib.suppress(ValueError):
            self.client.renewed.remove(self._renew)
        factory, self._factory = self._factory, None
        if factory is None:
            return Deferred.fromCoroutine(_nothing())
        connected = factory.size > 0
        d: Deferred[None] = factory.disconnect()
        if not connected:
            # Not connected (Redis down): nothing to wait for.
            d.addErrback(lambda failure: None)
            return Deferred.fromCoroutine(_nothing())
        return d


async def _nothing() -> None:
    return None
