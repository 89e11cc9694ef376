"""Rooms over real WebSockets: tokens and realms, REST, persistence and idle peers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.http_headers import Headers

from actrix.core import roomtokens
from actrix.tap import build_root_service
from tests.daemon import http_client, http_port, make_settings, start_daemon
from tests.rooms_client import JsonPeer
from tests.rooms_daemon import RoomsDaemonCase
from tests.spies import log_events


class RestTests(RoomsDaemonCase):
    async def test_stats_rooms_and_room(self) -> None:
        """The REST bodies of §6 (open in dev with no bearer token)."""
        a = await self.json_peer()
        await a.request(
            type="JOIN", room_id="team/alpha", payload={"display_name": "alice"}
        )
        client = http_client(self)
        base = f"http://127.0.0.1:{self.port}"
        stats = json.loads(await (await client.get(base + "/api/stats")).content())
        self.assertEqual(stats["peers"], {"total": 1, "without_room": 0})
        listing = json.loads(await (await client.get(base + "/api/rooms")).content())
        self.assertEqual(listing["rooms"][0]["id"], "team/alpha")
        self.assertTrue(listing["rooms"][0]["created_at"].endswith("Z"))
        one = await client.get(base + "/api/rooms/team%2Falpha")
        body = await one.content()
        self.assertTrue(body.endswith(b"\n"))
        room = json.loads(body)
        self.assertEqual(
            list(room),
            ["created_at", "id", "max_peers", "peer_count", "peers", "realm_id"],
        )
        self.assertEqual(room["peers"][0]["display_name"], "alice")
        missing = await client.get(base + "/api/rooms/nope")
        self.assertEqual(
            (missing.code, await missing.content()), (404, b"room not found\n")
        )
        metrics = (await (await client.get(base + "/metrics")).content()).decode()
        self.assertIn("actrix_rooms_members 1.0", metrics)
        self.assertIn("actrix_rooms_rooms 1.0", metrics)
        unknown = await client.get(base + "/api/x")
        self.assertEqual(
            json.loads(await unknown.content()),
            {"error": "not found", "path": "/api/x"},
        )
        health = json.loads(await (await client.get(base + "/rooms/health")).content())
        self.assertEqual(health["status"], "ok")


class RestAuthTests(RoomsDaemonCase):
    extra = """
[services.rooms]
api_token = "rooms-api-token-0123456789"
"""

    async def test_bearer_and_nonce_auth(self) -> None:
        """GETs need the bearer or a nonce-auth credential; POST mints a token."""
        from actrix.core.auth import sign_credential
        from tests.daemon import SHARED_KEY

        client = http_client(self)
        base = f"http://127.0.0.1:{self.port}"
        denied = await client.get(base + "/api/stats")
        self.assertEqual(
            (denied.code, await denied.content()), (401, b"unauthorized\n")
        )
        ok = await client.get(
            base + "/api/stats",
            headers=Headers({"Authorization": ["Bearer rooms-api-token-0123456789"]}),
        )
        self.assertEqual(ok.code, 200)
        await ok.content()
        credential = sign_credential(
            SHARED_KEY.encode(), "rooms_api:GET /api/rooms", reactor.seconds()
        )
        nonce_ok = await client.get(
            base + "/api/rooms?realm_id=7",
            headers=Headers({"X-Actrix-Credential": [credential.to_header()]}),
        )
        self.assertEqual(json.loads(await nonce_ok.content()), {"rooms": []})
        replay = await client.get(
            base + "/api/rooms",
            headers=Headers({"X-Actrix-Credential": [credential.to_header()]}),
        )
        self.assertEqual(replay.code, 401)
        await replay.content()
        body: dict[str, Any] = {
            "realm_id": 7,
            "room": "team-*",
            "role": "publisher",
            "ttl": 600,
        }
        signed = sign_credential(
            SHARED_KEY.encode(),
            "room_token:" + roomtokens.canonical_json(body).decode(),
            reactor.seconds(),
        )
        minted = await client.post(
            base + "/api/rooms/tokens", json={**body, "credential": signed.to_json()}
        )
        reply = json.loads(await minted.content())
        self.assertEqual(minted.code, 200, reply)
        self.assertEqual(reply["claims"]["role"], "sender")
        again = await client.post(
            base + "/api/rooms/tokens", json={**body, "credential": signed.to_json()}
        )
        self.assertEqual(
            json.loads(await again.content()),
            {"error": "Request rejected", "code": 403},
        )
        unknown = {**body, "realm_id": 99}
        signed = sign_credential(
            SHARED_KEY.encode(),
            "room_token:" + roomtokens.canonical_json(unknown).decode(),
            reactor.seconds(),
        )
        missing = await client.post(
            base + "/api/rooms/tokens", json={**unknown, "credential": signed.to_json()}
        )
        self.assertEqual(missing.code, 404)
        await missing.content()
        peer = await self.json_peer()
        joined = await peer.request(
            type="JOIN", room_id="team-1", payload={"token": reply["token"]}
        )
        self.assertEqual(joined["type"], "ACK", joined)

    async def test_refusals_log_once_a_minute_per_ip(self) -> None:
        """Bad credentials on the REST API (anyone can send them) make one line
        per client IP and reason a minute, not one per request."""
        from actrix.core.auth import sign_credential

        lines = log_events(self, lambda e: "refused" in str(e.get("log_format")))

        client = http_client(self)
        base = f"http://127.0.0.1:{self.port}"
        body = {"realm_id": 7, "room": "r", "role": "publisher", "ttl": 60}
        for _ in range(5):
            forged = sign_credential(
                b"not the shared key",
                "room_token:" + roomtokens.canonical_json(body).decode(),
                reactor.seconds(),
            )
            denied = await client.get(
                base + "/api/rooms",
                headers=Headers({"X-Actrix-Credential": ["{not a credential"]}),
            )
            self.assertEqual(denied.code, 401)
            await denied.content()
            refused = await client.post(
                base + "/api/rooms/tokens",
                json={**body, "credential": forged.to_json()},
            )
            self.assertEqual(refused.code, 401)
            await refused.content()
        formats = sorted(str(e["log_format"]).split(":")[0] for e in lines)
        self.assertEqual(
            formats, ["room token request refused", "rooms API credential refused"]
        )
        self.assertEqual({e["ip"] for e in lines}, {"127.0.0.1"})


class PersistenceAndIdleTests(TestCase):
    timeout = 20

    async def test_configured_room_survives_restart_and_idle_peer_leaves(self) -> None:
        """A configured room keeps created_at across restarts; idle peers leave."""
        directory = Path(self.mktemp())
        extra = """
[services.rooms]
allow_anonymous = true
idle_timeout = 1

[[services.rooms.room]]
name = "hall"
realm_id = 0
max_peers = 5
metadata = { topic = "weekly" }
"""
        settings = make_settings(directory, enable=63, extra=extra)
        # The first daemon is stopped here (not at cleanup) to restart it.
        root = build_root_service(settings, reactor)
        root.privilegedStartService()
        root.startService()
        self.addCleanup(lambda: root.stopService() if root.running else None)
        base = f"http://127.0.0.1:{http_port(root)}"
        client = http_client(self)
        first = json.loads(await (await client.get(base + "/api/rooms/hall")).content())
        self.assertEqual(first["max_peers"], 5)
        quiet, busy = JsonPeer(reactor), JsonPeer(reactor)
        for peer in (quiet, busy):
            self.addCleanup(peer.abort)
            await peer.open(http_port(root))
            await peer.request(type="JOIN", room_id="hall")
        for _ in range(5):
            await deferLater(reactor, 0.5, lambda: None)
            busy.send(type="KEEP_ALIVE")
            if quiet.closed:
                break
        self.assertEqual(await quiet.wait_closed(), 1001)
        left = await busy.of_type("PEER_LEFT")
        self.assertEqual(left["peer_id"], quiet.peer_id)
        busy.abort()
        await root.stopService()
        self.assertFalse(root.running)
        await deferLater(reactor, 1.1, lambda: None)  # created_at is in ms
        again = start_daemon(self, settings)
        url = f"http://127.0.0.1:{http_port(again)}/api/rooms/hall"
        second = json.loads(await (await http_client(self).get(url)).content())
        self.assertEqual(second["created_at"], first["created_at"])
        self.assertEqual(second["peers"], [])
