"""One connection to Redis over txredisapi, typed for the rest of actrix.

txredisapi is a Twisted-native client (replies arrive as Deferreds on our
reactor, no thread, no asyncio bridge), maintained, with reconnection, AUTH,
SELECT, unix sockets and pub/sub. The connection is lazy: commands issued
before it is up wait for it, and it reconnects by itself when Redis returns.

One connection (pool size 1) on purpose: commands of this process then reach
Redis in the order they were issued, so a write is always seen by the read
issued after it, and Redis pipelines them on the socket anyway. Replies are
raw bytes (no charset, no number conversion): entries hold protobuf bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import txredisapi
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from actrix.core.settings import RedisConfig

log = Logger()

Arg = bytes | str | int | float


@attrs.frozen
class Script:
    """A Lua script run with EVALSHA, loaded with EVAL on the first NOSCRIPT."""

    source: str

    @property
    def sha1(self) -> str:
        import hashlib

        return hashlib.sha1(self.source.encode()).hexdigest()  # noqa: S324  # Redis' id


class RedisClient(Service):
    """A lazy txredisapi connection; stopping the service disconnects it."""

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self._handler: Any = None
        self.setName("redis")

    def _connect(self) -> Any:
        config = self.config
        password = None if config.password is None else config.password.value
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
                connectTimeout=config.connect_timeout,
                replyTimeout=config.reply_timeout,
                convertNumbers=False,
            )
        # A failed first connection (refused, wrong password, stopped while
        # connecting) is reported here once instead of as an unhandled error.
        handler._factory.deferred.addErrback(_connect_failed, self)
        return handler

    @property
    def handler(self) -> Any:
        if self._handler is None:
            self._handler = self._connect()
        return self._handler

    async def command(self, *args: Arg) -> Any:
        """Run one Redis command; its reply (bytes, int, list or None)."""
        d: Deferred[Any] = self.handler.execute_command(*args)
        return await d

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
            where=self.config.host
            if self.config.unix
            else f"{self.config.host}:{self.config.port}",
            db=self.config.db,
        )
        _ = self.handler

    def stopService(self) -> Deferred[None]:
        super().stopService()
        handler, self._handler = self._handler, None
        if handler is None:
            return Deferred.fromCoroutine(_nothing())
        d: Deferred[None] = handler.disconnect()
        return d


async def _nothing() -> None:
    return None


def _connect_failed(failure: Any, client: RedisClient) -> None:
    if client.running:
        log.warn("Redis connection failed: {error}", error=str(failure.value))
