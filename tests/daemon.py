"""Helpers to build and run a real daemon from a temp config in integration tests."""

from __future__ import annotations

import secrets
import tomllib
from pathlib import Path
from typing import Any

import treq.client
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from actrix.core.config import Settings, parse_config
from actrix.core.realms import add_realm_txn, realms_path
from actrix.core.storage import connect_sync, migrate
from actrix.root import ActrixService

SHARED_KEY = "test-shared-key-" + "0123456789abcdef"

BASE_CONFIG = """
enable = {enable}
name = "actrix-test"
env = "dev"
location_tag = "test"
sqlite_path = "{sqlite_path}"
actrix_shared_key = "{shared_key}"

[bind.http]
domain_name = "localhost"
advertised_ip = "127.0.0.1"
ip = "127.0.0.1"
port = 0

[bind.ice]
domain_name = "localhost"
ip = "127.0.0.1"
port = 0

[turn]
advertised_ip = "127.0.0.1"
advertised_port = 3478
relay_port_range = "49152-65535"
realm = "actor-rtc.local"
static_auth_secret = "test-rest-secret"
peer_allow = ["127.0.0.1/32"]

[turn.users]
alice = "alice-password"

[services.ks]
tolerance_seconds = 3600

[services.ks.storage]
backend = "sqlite"
key_ttl_seconds = 3600

[services.ks.storage.sqlite]

[services.ais.server]
token_ttl_secs = 3600

[services.signaling.server]
ws_path = "/signaling"
"""


def config_text(sqlite_path: Path, enable: int = 31, extra: str = "") -> str:
    """A complete test config on loopback port 0, with ``extra`` TOML appended."""
    return (
        BASE_CONFIG.format(
            enable=enable, sqlite_path=str(sqlite_path), shared_key=SHARED_KEY
        )
        + extra
    )


def make_settings(
    directory: Path, enable: int = 31, extra: str = "", overrides: str = ""
) -> Settings:
    """Parse a test config whose SQLite files live under ``directory``.

    ``overrides`` is TOML merged over the base (tables merged key by key).
    """
    data = tomllib.loads(config_text(directory, enable, extra))
    if overrides:
        _merge(data, tomllib.loads(overrides))
    return parse_config(data)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def add_realm(directory: Path, realm_id: int, name: str = "test") -> None:
    """Create a realm in the daemon's realm database (as the CLI would)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = realms_path(directory)
    migrate(path, _realm_migrations())
    conn = connect_sync(path)
    try:
        add_realm_txn(conn.cursor(), realm_id, name, None, 0)
    finally:
        conn.close()


def _realm_migrations() -> Any:
    from actrix.core.realms import MIGRATIONS

    return MIGRATIONS


def start_daemon(test: TestCase, settings: Settings) -> ActrixService:
    """Build and start the daemon on the global reactor; stopped at cleanup."""
    from twisted.internet import reactor

    from actrix.tap import build_root_service

    root = build_root_service(settings, reactor)
    root.privilegedStartService()
    root.startService()

    def stop() -> Deferred[None]:
        d: Deferred[None] = root.stopService()
        return d

    test.addCleanup(stop)
    return root


def http_port(root: ActrixService) -> int:
    """The bound HTTP port of a started daemon."""
    return int(root.listener("http").bound_port)


def http_client(test: TestCase) -> treq.client.HTTPClient:
    """A treq client whose connections are closed when the test ends."""
    from twisted.internet import reactor
    from twisted.web.client import Agent, HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=False)
    test.addCleanup(pool.closeCachedConnections)
    return treq.client.HTTPClient(Agent(reactor, pool=pool))


async def wait_healthy(test: TestCase, root: ActrixService, seconds: float = 5) -> None:
    """Poll ``/health`` until it says ok (AIS loads its first key asynchronously)."""
    import json

    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    client = http_client(test)
    url = f"http://127.0.0.1:{http_port(root)}/health"
    body: dict[str, Any] = {}
    for _ in range(int(seconds / 0.05)):
        response = await client.get(url)
        body = json.loads(await response.content())
        if body.get("status") == "ok":
            return
        await deferLater(reactor, 0.05, lambda: None)
    test.fail(f"daemon not healthy: {body}")


def random_name() -> str:
    return "t" + secrets.token_hex(4)


class ProcessOutput(ProcessProtocol):
    """Collects a child's stdout and stderr; ``ended`` fires with its exit code.

    A child killed by a signal ends with the negated signal number.
    """

    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred[int] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        value: Any = reason.value
        code = getattr(value, "exitCode", None)
        self.ended.callback(code if code is not None else -(value.signal or 0))
