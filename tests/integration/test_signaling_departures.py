"""Session end over real WebSockets: the reconnect window and bad-frame logging.

A disconnected actor is offline at once (in no answer) and leaves memory and
``signaling_cache.db`` when ``reconnect_window_secs`` ends without a reconnect.
Undecodable frames log one line per source address and reason, not one each.
A token the in-process AIS issued is accepted on first use without decryption.
"""

from __future__ import annotations

import sqlite3

from twisted.internet import reactor
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher

from actrix.proto import actr_pb2
from actrix.signaling.service import SignalingService
from actrix.signaling.store import CACHE_DB, row_key
from tests.integration.test_signaling import (
    NO_LIMITS,
    REALM,
    SignalingDaemonCase,
    allow,
    http_get,
    sleep,
)
from tests.integration.test_signaling_directory import spec
from tests.signaling_client import SignalingClient

WINDOW = 1


class ReconnectWindowTests(SignalingDaemonCase):
    overrides = (
        NO_LIMITS
        + f"""
[services.signaling.server]
reconnect_window_secs = {WINDOW}
"""
    )

    def service(self) -> SignalingService:
        found: SignalingService = self.root.sessions.getServiceNamed("signaling")
        return found

    def stored_rows(self) -> list[str]:
        # A small read of the test's own file; the daemon's writer uses WAL.
        path = self.settings.sqlite_path / CACHE_DB
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT actor_key FROM service_registry").fetchall()
        conn.close()
        return [key for (key,) in rows]

    async def answers(self, caller: SignalingClient) -> tuple[int, int, bool]:
        """Route candidates, discovery entries and spec found for ``svc``."""
        routes = await caller.call(
            route_candidates_request=actr_pb2.RouteCandidatesRequest(
                target_type=actr_pb2.ActrType(manufacturer="acme", name="svc"),
                client_fingerprint="",
            )
        )
        found = await caller.call(discovery_request=actr_pb2.DiscoveryRequest())
        looked = await caller.call(
            get_service_spec_request=actr_pb2.GetServiceSpecRequest(name="Svc")
        )
        return (
            len(routes.route_candidates_response.success.candidates),
            len(found.discovery_response.success.entries),
            looked.get_service_spec_response.HasField("success"),
        )

    async def test_disconnected_actor_leaves_after_window(self) -> None:
        """Offline at once, gone from memory and SQLite once the window ends."""
        server = await self.registered(
            name="svc", spec=spec("Svc"), acl=allow(("acme", "caller"))
        )
        caller = await self.registered(name="caller")
        assert server.actr_id is not None
        key = (REALM, server.actr_id.serial_number)
        self.assertEqual(await self.answers(caller), (1, 1, True))
        await sleep(1.2)  # one write-behind flush
        self.assertIn(row_key(*key), self.stored_rows())
        await server.close()
        await sleep(0.1)
        self.assertIsNotNone(self.service().directory.cached(key))
        self.assertEqual(await self.answers(caller), (0, 0, False))
        await sleep(WINDOW + 1.3)  # the window, then one flush
        self.assertIsNone(self.service().directory.cached(key))
        self.assertNotIn(row_key(*key), self.stored_rows())
        late = await SignalingClient.reconnect(reactor, self.port, server)
        self.addCleanup(late.drop)
        self.assertEqual(await self.answers(caller), (0, 0, False))

    async def test_reconnect_inside_window_keeps_actor(self) -> None:
        """A URL-identity reconnect inside the window keeps the actor routable."""
        server = await self.registered(
            name="svc", spec=spec("Svc"), acl=allow(("acme", "caller"))
        )
        caller = await self.registered(name="caller")
        await server.close()
        await sleep(WINDOW / 2)
        back = await SignalingClient.reconnect(reactor, self.port, server)
        self.addCleanup(back.drop)
        await sleep(WINDOW + 0.2)
        self.assertEqual(await self.answers(caller), (1, 1, True))


class UndecodableFrameLogTests(SignalingDaemonCase):
    async def test_undecodable_frames_log_once_per_source(self) -> None:
        """Twenty undecodable frames from one address give one warning, all counted."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        for _ in range(20):
            sender = await self.client()
            sender.send_raw(b"\xff\xff\xff\xff garbage")
            self.assertEqual(await sender.wait_closed(), 1007)
        lines = [
            e
            for e in events
            if "undecodable frame" in e.get("log_format", "")
            and e["log_level"] >= LogLevel.info
        ]
        self.assertEqual(len(lines), 1)
        self.assertEqual(self.service().metrics.rejections["decode"], 20)

    def service(self) -> SignalingService:
        found: SignalingService = self.root.sessions.getServiceNamed("signaling")
        return found


class IssuedTokenTests(SignalingDaemonCase):
    async def test_first_ping_after_register_needs_no_decryption(self) -> None:
        """A token the in-process AIS issued is accepted without an ECIES decryption."""
        client = await self.registered()
        pong = await client.ping()
        self.assertTrue(pong.HasField("pong"))
        response = await http_get(f"http://127.0.0.1:{self.port}/metrics")
        text = (await response.content()).decode()
        self.assertIn("actrix_credentials_decryptions_total 0.0", text)
        self.assertIn("actrix_credentials_accepted_total 1.0", text)
