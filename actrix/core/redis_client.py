"""One connection to Redis over txredisapi, typed for the rest of actrix.

txredisapi is a Twisted-native client (replies arrive as Deferreds on our
reactor, no thread, no asyncio bridge), maintained, with reconnection, AUTH,
SELECT, unix sockets and pub/sub. The connection is lazy: commands issued
before it is up wait for it, and it reconnects by itself when Redis returns.

The client knows whether Redis answers (:attr:`RedisClient.up`, checked every
second): while it does not, :meth:`RedisClient.command` fails at once with
:class:`~actrix.core.directory.DirectoryUnavailable` instead of queueing, the
outage is logged once a minute, and the return is logged once; txredisapi
reconnects by itself, so nothing needs a restart. A connection Redis refuses
(a wrong password, a database it lacks) makes txredisapi give up for good:
the client then starts a fresh one every :data:`REFUSED_RETRY` seconds,
reading ``password_file`` again first, so fixing either side heals the node
without a restart. Every round trip is timed into
``actrix_redis_round_trip_seconds``.

One connection (pool size 1) on purpose: commands of this process then reach
Redis in the order they were issued, so a write is always seen by the read
issued after it, and Redis pipelines them on the socket anyway. Replies are
raw bytes (no charset, no number conversion): entries hold protobuf bytes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

import attrs
import txredisapi
from prometheus_client import Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.error import ConnectionDone
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from actrix.core.directory import DirectoryUnavailable
from actrix.core.settings import RedisConfig, Secret

log = Logger()

CHECK_INTERVAL: Final = 1.0
OUTAGE_LOG_INTERVAL: Final = 60.0
# After Redis refused AUTH or SELECT, try a new connection this often (each
# refusal also logs txredisapi's own line, so not more than once a minute).
REFUSED_RETRY: Final = 60.0
RTT_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)

Arg = bytes | str | int | float


@attrs.frozen
class Script:
    """A Lua script run with EVALSHA, loaded with EVAL on the first NOSCRIPT."""

    source: str

    @property
    def sha1(self) -> str:
        import hashlib

        return hashlib.sha1(self.source.encode()).hexdigest()  # noqa: S324  # Redis' id


def no_delay(transport: Any) -> None:
    """TCP_NODELAY on a Redis connection (under TLS: on the TCP beneath it).

    txredisapi leaves Nagle's algorithm on: a command written while an earlier
    one is unacknowledged would wait for that reply's ACK, so pipelined
    commands went one per round trip. A unix socket has no such option.
    """
    for candidate in (transport, getattr(transport, "transport", None)):
        set_no_delay = getattr(candidate, "setTcpNoDelay", None)
        if set_no_delay is not None:
            with contextlib.suppress(OSError):
                set_no_delay(True)
            return


class _Protocol(txredisapi.RedisProtocol):  # type: ignore[misc]  # untyped base
    def connectionMade(self) -> Any:
        no_delay(self.transport)
        return super().connectionMade()

    def connectionLost(self, reason: Failure) -> Any:
        # txredisapi keeps why a connection failed (a TLS certificate the CA
        # did not sign, a reset) to itself; the outage line says it.
        client = getattr(self.factory, "actrix_client", None)
        if client is not None:
            client.connection_lost(reason)
        return super().connectionLost(reason)


class RedisClient(Service):
    """A lazy txredisapi connection; stopping the service disconnects it."""

    def __init__(self, config: RedisConfig, reactor: Any = None) -> None:
        self.config = config
        self._reactor = reactor
        self._handler: Any = None
        # None until the first connection succeeds or fails.
        self._up: bool | None = None
        self._down_since = 0.0
        self._outage_logged = 0.0
        self._check: LoopingCall | None = None
        self._last_error = ""
        # Commands waiting for a reply: cancelled when the service stops.
        self._pending: set[Deferred[Any]] = set()
        self._password = config.password
        self._refused_since: float | None = None
        # Called after a refused connection was replaced by a new one (the
        # bus's subscriber connection gave up too and follows).
        self.renewed: list[Callable[[], None]] = []
        self.round_trip = Histogram(
            "actrix_redis_round_trip_seconds",
            "Time from sending a Redis command to its reply",
            buckets=RTT_BUCKETS,
            registry=None,
        )
        self.setName("redis")

    @property
    def where(self) -> str:
        config = self.config
        return config.host if config.unix else f"{config.host}:{config.port}"

    @property
    def up(self) -> bool:
        """Whether a connection is open (also before the first check ran)."""
        handler = self._handler
        return handler is not None and handler._factory.size > 0

    @property
    def available(self) -> bool:
        """Whether commands are worth sending: up, or still connecting at start.

        Commands sent while connecting wait for the connection; once it was
        up (or failed), a closed connection makes them fail at once.
        """
        return self.up or self._up is None

    @property
    def password(self) -> str | None:
        """The password to send (``password_file`` as last read)."""
        return None if self._password is None else self._password.value

    def _connect(self) -> Any:
        config = self.config
        password = self.password
        # No SELECT for database 0 (the default): one round trip less to ready.
        dbid = config.db or None
        if config.unix:
            handler = txredisapi.lazyUnixConnectionPool(
                config.host,
                dbid=dbid,
                poolsize=1,
                charset=None,
                password=password,
                replyTimeout=config.reply_timeout,
                convertNumbers=False,
            )
        else:
            handler = txredisapi.lazyConnectionPool(
                config.host,
                config.port,
                dbid=dbid,
                poolsize=1,
                charset=None,
                password=password,
                ssl_context_factory=tls_options(config),
                connectTimeout=config.connect_timeout,
                replyTimeout=config.reply_timeout,
                convertNumbers=False,
            )
        # A failed first connection (refused, wrong password, stopped while
        # connecting) is reported here once instead of as an unhandled error.
        # Every connection the pool makes (and remakes) sets TCP_NODELAY.
        handler._factory.protocol = _Protocol
        handler._factory.actrix_client = self
        handler._factory.deferred.addCallbacks(
            self._connected, _connect_failed, errbackArgs=(self,)
        )
        return handler

    def _connection(self) -> Any:
        """The open connection itself, or the pool handler that waits for one.

        The handler takes a connection from its queue for every command
        (an inlineCallbacks round of Deferreds); with one connection there is
        nothing to choose, so commands go straight to it while it is open.
        """
        handler = self.handler
        pool = handler._factory.pool
        if pool and pool[0].connected:
            return pool[0]
        return handler

    def _connected(self, result: object) -> None:
        if self._up is None:
            self._up = True

    def check(self) -> None:
        """Note whether Redis answers; log an outage once a minute, a return once."""
        up = self.up
        now = self._now()
        if up:
            self._last_error = ""
            if self._up is False:
                log.info(
                    "Redis at {where} reachable again after {seconds:.0f} s",
                    where=self.where,
                    seconds=now - self._down_since,
                )
            self._up = True
            return
        if self._up is not False:
            self._up = False
            self._down_since = now
            self._outage_logged = 0.0
        self._retry_if_refused(now)
        if now - self._outage_logged >= OUTAGE_LOG_INTERVAL or not self._outage_logged:
            self._outage_logged = now
            log.warn(
                "Redis at {where} unreachable for {seconds:.0f} s{error}: new"
                " registrations are refused, actors connected here are still served",
                where=self.where,
                seconds=now - self._down_since,
                error=f" ({self._last_error})" if self._last_error else "",
            )

    def _retry_if_refused(self, now: float) -> None:
        """Replace a connection txredisapi gave up on (AUTH or SELECT refused)."""
        handler = self._handler
        factory = None if handler is None else handler._factory
        if factory is None or not factory.stopped or factory.disconnectCalled:
            self._refused_since = None
            return
        if self._refused_since is None:
            self._refused_since = now
        if now - self._refused_since < REFUSED_RETRY:
            return
        self._refused_since = None
        path = self.config.password_file
        if path is not None:
            try:
                self._password = Secret(path.read_text(encoding="utf-8").rstrip("\r\n"))
            except (OSError, UnicodeDecodeError) as e:
                log.warn(
                    "redis.password_file {path} unreadable ({error}); trying the"
                    " password read before",
                    path=str(path),
                    error=getattr(e, "strerror", None) or "not UTF-8 text",
                )
        handler.disconnect().addErrback(lambda failure: None)
        self._handler = self._connect()
        for renewed in list(self.renewed):
            renewed()

    def connection_lost(self, reason: Failure) -> None:
        """A connection closed: keep why, unless it was a clean close."""
        if not reason.check(ConnectionDone):
            self._last_error = str(reason.value) or type(reason.value).__name__

    def connect_failed(self, reason: str) -> None:
        """The first connection failed (refused, timed out, wrong password)."""
        self._last_error = reason
        if self.running:
            self.check()

    def _now(self) -> float:
        return float(self._reactor.seconds()) if self._reactor else time.monotonic()

    def collect(self) -> Iterator[Metric]:
        """``actrix_redis_up`` and the round-trip histogram."""
        gauge = GaugeMetricFamily("actrix_redis_up", "1 while Redis answers")
        gauge.add_metric([], 1.0 if self.up else 0.0)
        yield gauge
        yield from self.round_trip.collect()

    @property
    def handler(self) -> Any:
        if self._handler is None:
            self._handler = self._connect()
        return self._handler

    async def command(self, *args: Arg) -> Any:
        """Run one Redis command; its reply (bytes, int, list or None).

        Raises:
            DirectoryUnavailable: Redis is known to be down, or the connection
                broke before the reply.
        """
        if not self.available:
            raise DirectoryUnavailable("Redis is unreachable")
        # A duration, not a time of day: the monotonic clock.
        started = time.perf_counter()
        d: Deferred[Any] = self._connection().execute_command(*args)
        if self._up is None and self._reactor is not None and not d.called:
            # Still connecting: queued until the connection is up, or fails.
            d.addTimeout(self.config.connect_timeout, self._reactor)
        self._pending.add(d)
        try:
            reply = await d
        except (txredisapi.ConnectionError, CancelledError, TimeoutError) as e:
            raise DirectoryUnavailable(f"Redis unreachable: {e!r}") from e
        finally:
            self._pending.discard(d)
        self.round_trip.observe(time.perf_counter() - started)
        return reply

    async def run(
        self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]
    ) -> Any:
        """Run a Lua script by its SHA1, sending its text only when Redis lacks it."""
        try:
            return await self.command("EVALSHA", script.sha1, len(keys), *keys, *args)
        except txredisapi.ResponseError as e:
            if "NOSCRIPT" not in str(e):
                raise
        return await self.command("EVAL", script.source, len(keys), *keys, *args)

    def startService(self) -> None:
        super().startService()
        log.info(
            "connecting to Redis at {where} db {db}",
            where=self.where,
            db=self.config.db,
        )
        _ = self.handler
        if self._reactor is not None:
            self._check = LoopingCall(self.check)
            self._check.clock = self._reactor
            self._check.start(CHECK_INTERVAL, now=False)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        check, self._check = self._check, None
        if check is not None and check.running:
            check.stop()
        for pending in list(self._pending):
            pending.cancel()
        handler, self._handler = self._handler, None
        if handler is None:
            return Deferred.fromCoroutine(_nothing())
        connected = handler._factory.size > 0
        d: Deferred[None] = handler.disconnect()
        if not connected:
            # Nothing to close (Redis down, or a refused password): txredisapi's
            # Deferred would wait for a connection that never comes.
            d.addErrback(lambda failure: None)
            return Deferred.fromCoroutine(_nothing())
        return d


def tls_options(config: RedisConfig) -> Any:
    """The client TLS options for ``redis.tls`` (None without TLS).

    The server's certificate must name ``redis.host`` and chain to
    ``redis.tls_ca`` (a PEM file) or, without one, to the system's CAs.
    """
    if not config.tls:
        return None
    from twisted.internet.ssl import Certificate, optionsForClientTLS, platformTrust

    trust: Any = platformTrust()
    if config.tls_ca is not None:
        trust = Certificate.loadPEM(config.tls_ca.read_bytes())
    return optionsForClientTLS(config.host, trustRoot=trust)


async def _nothing() -> None:
    return None


def _connect_failed(failure: Any, client: RedisClient) -> None:
    client.connect_failed(str(failure.value))
