"""Tests for actrix.core.http: the site's timeouts, disconnects and client logs."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from actrix.core.auth import NonceVerifier
from actrix.core.http import (
    KleinGuard,
    SiteLimits,
    SiteRoot,
    build_site,
    parse_decimal,
)
from actrix.core.logthrottle import LogThrottle
from actrix.ks.resource import KsResource
from actrix.ks.service import KeyService
from actrix.ks.store import KeyStore
from tests.unit.ks.fakes import MemoryNonces

NOW = 1_700_000_000
SECRET = b"test-shared-key-0123456789abcdef"
LIMITS = SiteLimits(request_timeout=30.0, idle_timeout=60.0)


class HeldDatabase:
    """A Database look-alike whose every call waits until the test answers it."""

    dialect = "sqlite"

    def __init__(self) -> None:
        self.pending: list[Deferred[Any]] = []

    async def run(self, *args: Any, **kwargs: Any) -> Any:
        d: Deferred[Any] = Deferred()
        self.pending.append(d)
        return await d


class Takeover(Resource):
    """Takes the transport over as Autobahn's WebSocketResource does."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.transports: list[Any] = []

    def render(self, request: Request) -> int:
        channel: Any = request.channel
        transport, channel.transport = channel.transport, None
        self.transports.append(transport)
        return NOT_DONE_YET


class Connection:
    """One client connection to a site over a StringTransport."""

    def __init__(self, site: Any, host: str = "198.51.100.7") -> None:
        self.transport = StringTransport(
            peerAddress=IPv4Address("TCP", host, 40000),
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
        )
        self.channel = site.buildProtocol(self.transport.getPeer())
        self.channel.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.channel.dataReceived(data)

    def leave(self) -> None:
        from twisted.internet.error import ConnectionDone

        self.transport.loseConnection()
        self.channel.connectionLost(Failure(ConnectionDone()))

    @property
    def closing(self) -> bool:
        return bool(self.transport.disconnecting)


class SiteTests(SynchronousTestCase):
    """The site on an in-memory transport, with the KS mounted."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.events = EventLoggingObserver()
        globalLogPublisher.addObserver(self.events)
        self.addCleanup(globalLogPublisher.removeObserver, self.events)
        self.db = HeldDatabase()
        self.nonces = MemoryNonces()
        service = KeyService(
            KeyStore(self.db),  # type: ignore[arg-type]  # duck-typed Database
            self.clock,
            key_ttl_seconds=3600,
            tolerance_seconds=600,
        )
        throttle = LogThrottle(self.clock)
        ks = KsResource(
            service, NonceVerifier(SECRET, self.nonces, self.clock), self.clock
        )
        self.takeover = Takeover()
        root = SiteRoot()
        root.mount("ks", KleinGuard(ks.app.resource()))
        root.mount("upgrade", self.takeover)
        self.site = build_site(root, self.clock, LIMITS, throttle)

    def _logged(self, level: LogLevel) -> list[Any]:
        return [e for e in self.events if e["log_level"] >= level]

    # -- defect 9: client disconnects and remote-triggered log lines

    def test_client_leaving_ks_health_logs_nothing(self) -> None:
        """A client that leaves /ks/health before the answer causes no log line."""
        conn = Connection(self.site)
        conn.send(b"GET /ks/health HTTP/1.1\r\nHost: ks\r\n\r\n")
        self.assertEqual(len(self.db.pending), 1)
        conn.leave()
        self.db.pending[0].callback(3)  # the query finishes after the client left
        self.assertEqual(self._logged(LogLevel.warn), [])
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(conn.transport.value(), b"")

    def test_client_leaving_while_nonce_is_checked(self) -> None:
        """A client leaving during authentication is no storage failure either."""
        from urllib.parse import quote

        from actrix.core.auth import sign_credential

        held: Deferred[bool] = Deferred()

        async def consume(nonce: str, now: int, ttl: int) -> bool:
            return await held

        self.nonces.consume = consume  # type: ignore[method-assign]  # held store
        credential = sign_credential(SECRET, "get_secret_key:1", self.clock.seconds())
        query = f"key_id=1&credential={quote(credential.to_header(), safe='')}"
        conn = Connection(self.site)
        conn.send(
            b"GET /ks/secret/1?" + query.encode() + b" HTTP/1.1\r\nHost: ks\r\n\r\n"
        )
        conn.leave()
        held.callback(True)
        self.db.pending[0].callback(None)
        self.assertEqual(self._logged(LogLevel.warn), [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_client_leaving_ais_register_logs_nothing(self) -> None:
        """A client leaving /ais/register while the KS key is fetched logs nothing."""
        from actrix.ais.ratelimit import IpRateLimiter
        from actrix.ais.resource import AisResource
        from actrix.ais.serials import SerialGenerator
        from actrix.ais.service import IdentityIssuer
        from actrix.ais.store import MIGRATIONS, CurrentKeyStore
        from tests.unit.ais.test_service import register_request
        from tests.unit.ks.fakes import FakeKeys, SyncDatabase

        keys = FakeKeys(expires_at=NOW + 3600)
        held: Deferred[None] = Deferred()
        generate = keys.generate_key

        async def slow_generate() -> Any:
            await held
            return await generate()

        keys.generate_key = slow_generate  # type: ignore[method-assign]  # held KS
        issuer = IdentityIssuer(
            keys,
            CurrentKeyStore(SyncDatabase(MIGRATIONS).database()),
            self.clock,
            SerialGenerator(lambda: int(self.clock.seconds() * 1000), worker=1),
        )
        ais = AisResource(
            issuer,
            NonceVerifier(SECRET, self.nonces, self.clock),
            IpRateLimiter(self.clock, 1.0, 10),
        )
        root = SiteRoot()
        root.mount("ais", KleinGuard(ais.app.resource()))
        site = build_site(root, self.clock, LIMITS)
        body = register_request().SerializeToString()
        conn = Connection(site)
        conn.send(
            b"POST /ais/register HTTP/1.1\r\nHost: ais\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        conn.leave()
        held.callback(None)
        self.assertEqual(issuer.metrics.registrations, 1)  # the work finished
        self.assertEqual(self._logged(LogLevel.warn), [])
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(conn.transport.value(), b"")

    def test_non_utf8_path_is_400_without_a_log(self) -> None:
        """A path that is not UTF-8 gets 400 and writes no error line."""
        conn = Connection(self.site)
        conn.send(b"GET /ks/secret/%ff?key_id=1 HTTP/1.1\r\nHost: ks\r\n\r\n")
        self.assertTrue(conn.transport.value().startswith(b"HTTP/1.1 400 "))
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(self._logged(LogLevel.warn), [])

    def test_refused_credentials_logged_once_per_peer(self) -> None:
        """Many bad credentials from one address write one warning per interval."""
        for _ in range(50):
            conn = Connection(self.site)
            conn.send(
                b"GET /ks/secret/1?key_id=1&credential=%7B%22timestamp%22%3A1%2C"
                b"%22nonce%22%3A%22n%22%2C%22signature%22%3A%22s%22%7D"
                b" HTTP/1.1\r\nHost: ks\r\n\r\n"
            )
            self.assertIn(b"401", conn.transport.value().split(b"\r\n")[0])
        self.assertEqual(len(self._logged(LogLevel.warn)), 1)
        other = Connection(self.site, host="198.51.100.8")
        other.send(
            b"GET /ks/secret/1?key_id=1&credential=%7B%22timestamp%22%3A1%2C"
            b"%22nonce%22%3A%22n%22%2C%22signature%22%3A%22s%22%7D"
            b" HTTP/1.1\r\nHost: ks\r\n\r\n"
        )
        self.assertEqual(len(self._logged(LogLevel.warn)), 2)
        self.clock.advance(61)
        Connection(self.site).send(
            b"GET /ks/secret/1?key_id=1&credential=%7B%22timestamp%22%3A1%2C"
            b"%22nonce%22%3A%22n%22%2C%22signature%22%3A%22s%22%7D"
            b" HTTP/1.1\r\nHost: ks\r\n\r\n"
        )
        warnings = self._logged(LogLevel.warn)
        self.assertEqual(len(warnings), 3)
        self.assertEqual(warnings[-1]["suppressed"], 49)

    # -- defect 7: request and idle timeouts

    def test_slow_request_gets_408(self) -> None:
        """A request head still incomplete after request_timeout gets 408 and closes."""
        conn = Connection(self.site)
        conn.send(b"GET /ks/health HTTP/1.1\r\n")
        self.clock.advance(29)
        self.assertFalse(conn.closing)
        self.clock.advance(1)
        self.assertTrue(conn.transport.value().startswith(b"HTTP/1.1 408 "))
        self.assertTrue(conn.closing)

    def test_trickled_bytes_do_not_extend_the_deadline(self) -> None:
        """One byte every few seconds resets the idle clock but not the deadline."""
        conn = Connection(self.site)
        for _ in range(10):
            conn.send(b"X")
            self.clock.advance(3)
        self.assertTrue(conn.transport.value().startswith(b"HTTP/1.1 408 "))
        self.assertTrue(conn.closing)

    def test_silent_connection_closed_after_idle_timeout(self) -> None:
        """A connection that never sends a byte is closed after idle_timeout."""
        conn = Connection(self.site)
        self.clock.advance(59)
        self.assertFalse(conn.closing)
        self.clock.advance(1)
        self.assertTrue(conn.closing)
        self.clock.advance(15)  # abortTimeout: a client that does not read
        self.assertTrue(conn.transport.disconnected)

    def test_keep_alive_requests_each_get_a_deadline(self) -> None:
        """A keep-alive connection's next request has its own request_timeout."""
        conn = Connection(self.site)
        conn.send(b"GET /nothing HTTP/1.1\r\nHost: ks\r\n\r\n")
        self.assertIn(b" 404 ", conn.transport.value())
        self.clock.advance(50)  # idle, within idle_timeout
        conn.send(b"GET /nothing HTTP/1.1\r\n")
        self.clock.advance(29)
        self.assertFalse(conn.closing)
        self.clock.advance(1)
        self.assertIn(b"408", conn.transport.value())

    def test_timeouts_are_logged_through_the_throttle(self) -> None:
        """A hundred slow clients from one address write one log line."""
        for _ in range(100):
            Connection(self.site).send(b"GET / HTTP/1.1\r\n")
        self.clock.advance(30)
        lines = [e for e in self.events if "too slow" in e.get("log_format", "")]
        self.assertEqual(len(lines), 1)

    def test_taken_over_connection_outlives_both_timeouts(self) -> None:
        """After a takeover (WebSocket upgrade) neither timeout closes the socket."""
        conn = Connection(self.site)
        conn.send(b"GET /upgrade HTTP/1.1\r\nHost: ks\r\n\r\n")
        self.assertEqual(self.takeover.transports, [conn.transport])
        self.clock.advance(24 * 3600)
        self.assertFalse(conn.closing)
        self.assertEqual(conn.transport.value(), b"")
        self.assertEqual(self.clock.getDelayedCalls(), [])


class ParseDecimalTests(SynchronousTestCase):
    """parse_decimal bounds digits before converting."""

    def test_bounds(self) -> None:
        """Digits, range, leading zeros and non-ASCII digits."""
        self.assertEqual(parse_decimal("4294967295", (1 << 32) - 1), (1 << 32) - 1)
        self.assertIsNone(parse_decimal("4294967296", (1 << 32) - 1))
        self.assertEqual(parse_decimal("000", 10), 0)
        self.assertEqual(parse_decimal("0" * 100 + "7", 10), 7)
        for bad in ("", "9" * 5000, "-1", "+1", " 1", "\u0661", "1_0"):
            self.assertIsNone(parse_decimal(bad, 1 << 64), bad)
