"""Every admin API endpoint through StubTreq: answers, audit, bad input."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from actrix.core.actrid import actr_id_repr
from actrix.core.settings import Settings
from tests.unit.admin.harness import ApiCase, actor_entry
from tests.unit.turn.helpers import PEER, error_code

A1 = quote(actr_id_repr(actor_entry(1, 0xA1).actr_id), safe="")


class NodeTests(ApiCase):
    def test_node_describes_the_daemon(self) -> None:
        """GET /node: version, env, uptime and the service switches."""
        status, body, _ = self.call("GET", "/node", token=self.ro)
        self.assertEqual(status, 200)
        self.assertEqual(body["env"], "dev")
        self.assertEqual(body["uptime_secs"], 10)
        self.assertEqual(
            body["services"],
            {
                "signaling": True,
                "stun": True,
                "turn": True,
                "ais": True,
                "ks": True,
                "rooms": False,
            },
        )
        self.assertFalse(body["draining"])

    def test_config_is_redacted(self) -> None:
        """GET /node/config shows the settings with the shared key redacted."""
        status, body, _ = self.call("GET", "/node/config", token=self.ro)
        self.assertEqual(status, 200)
        self.assertEqual(body["actrix_shared_key"], "<redacted>")
        self.assertEqual(body["turn"]["static_auth_secret"], "<redacted>")
        self.assertTrue(body["admin"]["enabled"])

    def test_reload_without_a_file_is_unavailable(self) -> None:
        """A daemon not started from a file cannot re-read it: 503."""
        status, body, _ = self.call("POST", "/node/reload", token=self.rw)
        self.assertEqual((status, body["error"]), (503, "unavailable"))

    def test_security_headers(self) -> None:
        """API answers are no-store and refuse framing."""
        _, _, headers = self.call("GET", "/node", token=self.ro)
        self.assertEqual(headers.getRawHeaders("cache-control"), ["no-store"])
        self.assertEqual(headers.getRawHeaders("x-frame-options"), ["DENY"])
        self.assertEqual(
            headers.getRawHeaders("content-type"), ["application/json; charset=utf-8"]
        )

    def test_unknown_path_is_json_404(self) -> None:
        """A path the API does not have answers 404 not_found in JSON."""
        status, body, _ = self.call("GET", "/nothing/here", token=self.ro)
        self.assertEqual((status, body["error"]), (404, "not_found"))


class RealmTests(ApiCase):
    def test_list_filter_sort_paginate(self) -> None:
        """GET /realms filters by q and status, sorts and pages server-side."""
        status, body, _ = self.call(
            "GET", "/realms?sort=name&order=desc", token=self.ro
        )
        self.assertEqual(status, 200)
        self.assertEqual([r["name"] for r in body["items"]], ["two", "one"])
        self.assertEqual(body["total"], 2)
        one = body["items"][1]
        self.assertEqual(one["actors_online"], 1)
        self.assertEqual(one["version"], 1)
        _, body, _ = self.call("GET", "/realms?q=tw", token=self.ro)
        self.assertEqual([r["id"] for r in body["items"]], [2])
        _, body, _ = self.call("GET", "/realms?limit=1&offset=1", token=self.ro)
        self.assertEqual(
            (body["total"], body["limit"], body["offset"], body["items"][0]["id"]),
            (2, 1, 1, 2),
        )
        _, body, _ = self.call("GET", "/realms?status=Suspended", token=self.ro)
        self.assertEqual(body["items"], [])

    def test_create_get_patch_delete(self) -> None:
        """A realm goes through its life; each change is audited."""
        status, made, _ = self.call(
            "POST", "/realms", {"name": "three", "id": 30}, token=self.rw
        )
        self.assertEqual((status, made["id"], made["status"]), (201, 30, "Normal"))
        status, got, _ = self.call("GET", "/realms/30", token=self.ro)
        self.assertEqual(got["name"], "three")
        status, patched, _ = self.call(
            "PATCH",
            "/realms/30",
            {"version": 1, "name": "3", "expires_at": 99},
            token=self.rw,
        )
        self.assertEqual(
            (status, patched["name"], patched["expires_at"], patched["version"]),
            (200, "3", 99, 2),
        )
        self.assertEqual(self.cache.realm(30).name, "3")  # type: ignore[union-attr]
        status, _, _ = self.call("DELETE", "/realms/30", token=self.rw)
        self.assertEqual(status, 204)
        self.assertIsNone(self.cache.realm(30))
        status, body, _ = self.call("GET", "/realms/30", token=self.ro)
        self.assertEqual((status, body["error"]), (404, "not_found"))
        _, audit, _ = self.call("GET", "/audit", token=self.ro)
        self.assertEqual(
            [e["action"] for e in audit["items"]],
            ["realm.delete", "realm.update", "realm.create"],
        )
        self.assertEqual(audit["items"][0]["who"], "ops")
        self.assertEqual(audit["items"][0]["remote"], "127.0.0.1")

    def test_duplicate_id_is_a_conflict(self) -> None:
        """Creating a realm with a taken id answers 409."""
        status, body, _ = self.call(
            "POST", "/realms", {"name": "x", "id": 1}, token=self.rw
        )
        self.assertEqual((status, body["error"]), (409, "conflict"))

    def test_stale_version_is_a_conflict(self) -> None:
        """A PATCH naming an old version is refused and changes nothing."""
        self.call("PATCH", "/realms/1", {"version": 1, "name": "a"}, token=self.rw)
        status, body, _ = self.call(
            "PATCH", "/realms/1", {"version": 1, "name": "b"}, token=self.rw
        )
        self.assertEqual((status, body["error"]), (409, "conflict"))
        self.assertEqual(self.cache.realm(1).name, "a")  # type: ignore[union-attr]

    def test_suspend_then_resume(self) -> None:
        """Suspend sets the row, audits, then calls the revoker; resume undoes it."""
        status, body, _ = self.call(
            "POST", "/realms/1/suspend", {"reason": "abuse"}, token=self.rw
        )
        self.assertEqual(
            (status, body["status"], body["version"]), (200, "Suspended", 2)
        )
        self.assertEqual(self.revoker.realms, [(1, "abuse", "Suspended")])
        self.assertEqual(self.cache.realm_problem(1)[:7], "Realm 1")  # type: ignore[index]
        status, body, _ = self.call("POST", "/realms/1/resume", token=self.rw)
        self.assertEqual((status, body["status"]), (200, "Normal"))
        self.assertIsNone(self.cache.realm_problem(1))
        _, audit, _ = self.call("GET", "/audit?action=realm.suspend", token=self.ro)
        self.assertEqual(audit["total"], 1)
        self.assertEqual(audit["items"][0]["details"], {"reason": "abuse"})

    def test_unknown_realm_operations_are_404(self) -> None:
        """Suspend, resume, patch and delete of an unknown realm answer 404."""
        for method, path, body in (
            ("POST", "/realms/77/suspend", None),
            ("POST", "/realms/77/resume", None),
            ("PATCH", "/realms/77", {"version": 1}),
            ("DELETE", "/realms/77", None),
        ):
            status, answer, _ = self.call(method, path, body, token=self.rw)
            self.assertEqual((status, answer["error"]), (404, "not_found"), path)
        self.assertEqual(self.revoker.realms, [])

    def test_wrong_shapes_are_400(self) -> None:
        """Bodies of the wrong shape or type, and bad ids, are 400 with words."""
        for method, path, body, raw in (
            ("POST", "/realms", ["name"], None),
            ("POST", "/realms", {"name": 5}, None),
            ("POST", "/realms", {"name": "x", "colour": "red"}, None),
            ("POST", "/realms", {}, None),
            ("POST", "/realms", None, b"{not json"),
            ("PATCH", "/realms/1", {"name": "x"}, None),
            ("PATCH", "/realms/1", {"version": "1"}, None),
            ("POST", "/realms/1/suspend", {"reason": 3}, None),
            ("GET", "/realms/abc", None, None),
        ):
            status, answer, _ = self.call(method, path, body, token=self.rw, raw=raw)
            self.assertEqual(status, 400, (path, body))
            self.assertEqual(answer["error"], "bad_request")
            self.assertTrue(answer["message"])

    def test_limit_bounds(self) -> None:
        """limit must be 1..1000; 10**6 rows is a 400, not a clamp."""
        for query in (
            "limit=1000000",
            "limit=0",
            "limit=-1",
            "limit=x",
            "offset=-3",
            "sort=secret",
            "order=up",
        ):
            status, body, _ = self.call("GET", f"/realms?{query}", token=self.ro)
            self.assertEqual((status, body["error"]), (400, "bad_request"), query)
        status, _, _ = self.call("GET", "/realms?limit=1000", token=self.ro)
        self.assertEqual(status, 200)


class AclTests(ApiCase):
    def test_add_list_remove(self) -> None:
        """POST /acl adds an operator rule, GET filters, DELETE removes."""
        rule = {
            "realm_id": 1,
            "from_type": "acme:a",
            "to_type": "acme:b",
            "permission": "allow",
        }
        status, made, _ = self.call("POST", "/acl", rule, token=self.rw)
        self.assertEqual(status, 201)
        self.assertEqual(made["source"], "operator")
        self.assertTrue(self.cache.acl_allowed(1, "acme:a", "acme:b"))
        _, listed, _ = self.call("GET", "/acl?realm_id=1&to_type=acme:b", token=self.ro)
        self.assertEqual([r["id"] for r in listed["items"]], [made["id"]])
        _, none, _ = self.call("GET", "/acl?realm_id=2", token=self.ro)
        self.assertEqual(none["total"], 0)
        status, _, _ = self.call("DELETE", f"/acl/{made['id']}", token=self.rw)
        self.assertEqual(status, 204)
        self.assertFalse(self.cache.acl_allowed(1, "acme:a", "acme:b"))
        status, body, _ = self.call("DELETE", f"/acl/{made['id']}", token=self.rw)
        self.assertEqual((status, body["error"]), (404, "not_found"))

    def test_bad_rules(self) -> None:
        """An unknown realm is 404; a bad type or permission 400."""
        rule = {
            "realm_id": 9,
            "from_type": "acme:a",
            "to_type": "acme:b",
            "permission": "deny",
        }
        status, body, _ = self.call("POST", "/acl", rule, token=self.rw)
        self.assertEqual((status, body["error"]), (404, "not_found"))
        for bad in (
            {**rule, "realm_id": 1, "from_type": "nocolon"},
            {**rule, "realm_id": 1, "permission": "maybe"},
            {"realm_id": 1},
        ):
            status, body, _ = self.call("POST", "/acl", bad, token=self.rw)
            self.assertEqual(status, 400, bad)


class ActorTests(ApiCase):
    def test_list_with_filters(self) -> None:
        """GET /actors lists every realm's actors; filters narrow it."""
        _, body, _ = self.call("GET", "/actors", token=self.ro)
        self.assertEqual(body["total"], 3)
        _, body, _ = self.call("GET", "/actors?realm_id=1&status=online", token=self.ro)
        self.assertEqual([a["serial"] for a in body["items"]], ["a1"])
        item = body["items"][0]
        self.assertEqual(item["type"], "acme:camera")
        self.assertEqual(item["id"], "a1@1/acme:camera")
        self.assertEqual(item["last_heartbeat"], 1_700_000_000)
        _, body, _ = self.call("GET", "/actors?q=b1", token=self.ro)
        self.assertEqual([a["realm_id"] for a in body["items"]], [2])
        _, body, _ = self.call("GET", "/actors?type=acme:other", token=self.ro)
        self.assertEqual(body["total"], 0)
        status, _, _ = self.call("GET", "/actors?status=gone", token=self.ro)
        self.assertEqual(status, 400)

    def test_detail_and_unknown(self) -> None:
        """GET /actors/{id} with the id URL-encoded; unknown 404, malformed 400."""
        status, body, _ = self.call("GET", f"/actors/{A1}", token=self.ro)
        self.assertEqual((status, body["status"]), (200, "online"))
        status, body, _ = self.call(
            "GET", "/actors/" + quote("ff@1/acme:camera", safe=""), token=self.ro
        )
        self.assertEqual((status, body["error"]), (404, "not_found"))
        status, body, _ = self.call("GET", "/actors/garbage", token=self.ro)
        self.assertEqual((status, body["error"]), (400, "bad_request"))

    def test_revoke_calls_the_revoker(self) -> None:
        """POST /actors/{id}/revoke answers the revoker's counts and audits."""
        status, body, _ = self.call(
            "POST", f"/actors/{A1}/revoke", {"reason": "stolen"}, token=self.rw
        )
        self.assertEqual(status, 200)
        self.assertEqual(
            body,
            {
                "revoked": True,
                "sockets_closed": 1,
                "allocations_terminated": 2,
                "room_peers_removed": 3,
            },
        )
        self.assertEqual(self.revoker.actors, [("a1@1/acme:camera", "stolen")])
        _, audit, _ = self.call("GET", "/audit?who=ops", token=self.ro)
        self.assertEqual(audit["items"][0]["action"], "actor.revoke")
        self.assertEqual(audit["items"][0]["details"]["sockets_closed"], 1)

    def test_revoke_unknown_actor(self) -> None:
        """Revoking an actor nobody knows is 404 and calls nothing."""
        status, body, _ = self.call(
            "POST",
            "/actors/" + quote("ff@1/acme:camera", safe="") + "/revoke",
            token=self.rw,
        )
        self.assertEqual((status, body["error"]), (404, "not_found"))
        self.assertEqual(self.revoker.actors, [])


class WithoutRevokerTests(ApiCase):
    revoker_present = False

    def test_revoke_is_unavailable(self) -> None:
        """Without a revoker the revoke endpoint answers 503 unavailable."""
        status, body, _ = self.call("POST", f"/actors/{A1}/revoke", token=self.rw)
        self.assertEqual((status, body["error"]), (503, "unavailable"))

    def test_suspend_still_suspends(self) -> None:
        """Without a revoker a suspend still sets the realm Suspended."""
        status, body, _ = self.call("POST", "/realms/2/suspend", token=self.rw)
        self.assertEqual((status, body["status"]), (200, "Suspended"))


class RoomTests(ApiCase):
    def test_list_and_detail(self) -> None:
        """GET /rooms and /rooms/{id} show the room and its members."""
        _, body, _ = self.call("GET", "/rooms", token=self.ro)
        self.assertEqual(body["total"], 1)
        room = body["items"][0]
        self.assertEqual(
            (room["id"], room["peers"], room["persistent"]), ("lobby", 2, False)
        )
        status, detail, _ = self.call("GET", "/rooms/lobby", token=self.ro)
        self.assertEqual(status, 200)
        self.assertEqual(
            sorted(m["peer_id"] for m in detail["members"]),
            sorted(p.peer_id for p, _ in self.sinks),
        )
        self.assertEqual(detail["members"][0]["protocol"], "json")
        _, none, _ = self.call("GET", "/rooms?realm_id=5", token=self.ro)
        self.assertEqual(none["total"], 0)
        status, body, _ = self.call("GET", "/rooms/nope", token=self.ro)
        self.assertEqual((status, body["error"]), (404, "not_found"))

    def test_kick_then_close(self) -> None:
        """Kick ends one member's connection (4008); close ends the room."""
        (first, first_sink), (_, second_sink) = self.sinks
        status, _, _ = self.call(
            "POST", f"/rooms/lobby/peers/{first.peer_id}/kick", token=self.rw
        )
        self.assertEqual(status, 204)
        self.assertIn(("end", 4008), first_sink.events)
        status, body, _ = self.call(
            "POST", f"/rooms/lobby/peers/{first.peer_id}/kick", token=self.rw
        )
        self.assertEqual((status, body["error"]), (404, "not_found"))
        status, _, _ = self.call("POST", "/rooms/lobby/close", token=self.rw)
        self.assertEqual(status, 204)
        self.assertIn(("end", 4008), second_sink.events)
        self.assertIsNone(self.rooms.room("lobby"))
        status, _, _ = self.call("POST", "/rooms/lobby/close", token=self.rw)
        self.assertEqual(status, 404)


class TurnTests(ApiCase):
    def allocate(self) -> str:
        client = self.turn.client()
        answer = client.allocate()
        self.assertIsNone(error_code(answer))
        client.permit(PEER)
        return client.link.address[0]

    def test_list_counts_traffic_and_terminate(self) -> None:
        """GET lists an allocation with its counts; terminate deletes it."""
        self.allocate()
        allocation = next(iter(self.turn.service.allocations.values()))
        port = allocation.relay_address[1]
        self.turn.relays.peer_sends(port, b"x" * 100, PEER)
        status, body, _ = self.call("GET", "/turn/allocations", token=self.ro)
        self.assertEqual((status, body["total"]), (200, 1))
        item = body["items"][0]
        self.assertEqual((item["username"], item["transport"]), ("alice", "udp"))
        self.assertEqual((item["bytes_in"], item["packets_in"]), (100, 1))
        self.assertEqual(item["client"], "192.0.2.10:40000")
        _, none, _ = self.call("GET", "/turn/allocations?username=bob", token=self.ro)
        self.assertEqual(none["total"], 0)
        status, _, _ = self.call(
            "POST", f"/turn/allocations/{item['id']}/terminate", token=self.rw
        )
        self.assertEqual(status, 204)
        self.assertEqual(len(self.turn.service.allocations), 0)
        self.assertIn(port, self.turn.relays.closed)
        status, body, _ = self.call(
            "POST", f"/turn/allocations/{item['id']}/terminate", token=self.rw
        )
        self.assertEqual((status, body["error"]), (404, "not_found"))


class SeriesAndAuditTests(ApiCase):
    def test_series_resolutions(self) -> None:
        """GET /metrics/series answers both rings; a bad resolution is 400."""
        self.sampler.sample()
        self.clock.advance(1)
        self.sampler.sample()
        status, body, _ = self.call(
            "GET", "/metrics/series?resolution=1s", token=self.ro
        )
        self.assertEqual((status, body["step"]), (200, 1))
        self.assertEqual(body["series"]["connections"], [3.0, 3.0])
        self.assertEqual(body["series"]["relays_per_sec"], [None, 0.0])
        status, body, _ = self.call(
            "GET", "/metrics/series?resolution=1m", token=self.ro
        )
        self.assertEqual((status, body["step"]), (200, 60))
        status, body, _ = self.call(
            "GET", "/metrics/series?resolution=5s", token=self.ro
        )
        self.assertEqual(status, 400)

    def test_audit_pages_newest_first(self) -> None:
        """GET /audit pages newest first and filters by action and who."""
        for i in range(3):
            self.call("POST", "/realms", {"name": f"r{i}"}, token=self.rw)
        _, body, _ = self.call("GET", "/audit?limit=2", token=self.ro)
        self.assertEqual(body["total"], 3)
        self.assertEqual([e["target"] for e in body["items"]], ["5", "4"])
        _, body, _ = self.call("GET", "/audit?who=viewer", token=self.ro)
        self.assertEqual(body["total"], 0)


class ConcurrencyTests(ApiCase):
    def test_concurrent_patches_of_one_realm(self) -> None:
        """Two PATCHes of version 1 in flight at once: one 200, one 409."""
        import json

        import treq

        from actrix.core import realms
        from tests.backends import HeldDatabase
        from tests.unit.admin.harness import BASE

        held = HeldDatabase(self.connection(realms.STORE), "sqlite")
        self.ctx.realm_db = held
        pending = [
            self.stub.request(
                "PATCH",
                BASE + "/realms/1",
                data=json.dumps({"version": 1, "name": name}).encode(),
                headers={"Authorization": [f"Bearer {self.rw}"]},
            )
            for name in ("left", "right")
        ]
        self.stub.flush()
        held.release()
        self.stub.flush()
        responses = [self.successResultOf(d) for d in pending]
        self.assertEqual(sorted(r.code for r in responses), [200, 409])
        for response in responses:
            self.successResultOf(treq.content(response))
        self.assertEqual(self.cache.realm(1).name, "left")  # type: ignore[union-attr]


class ReloadTests(ApiCase):
    def settings(self) -> Settings:
        from actrix.core.config import load_config
        from tests.daemon import config_text

        directory = Path(self.mktemp())
        directory.mkdir()
        self.config_file = directory / "actrix.toml"
        self.config_file.write_text(
            config_text(directory / "db") + "\n[admin]\nenabled = true\n"
        )
        return load_config(self.config_file)

    def test_reload_reports_applied_and_restart_keys(self) -> None:
        """A changed log level is applied; a changed port needs a restart."""
        text = self.config_file.read_text()
        self.config_file.write_text(
            text.replace(
                "[bind.ice]\n",
                "[observability]\nfilter_level = 'debug'\n\n[bind.ice]\n",
            ).replace('name = "actrix-test"', 'name = "renamed"')
        )
        status, body, _ = self.call("POST", "/node/reload", token=self.rw)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["applied"], ["observability.filter_level"])
        self.assertEqual(body["restart_needed"], ["name"])
        self.assertEqual(self.reloads, [1])
        _, audit, _ = self.call("GET", "/audit?action=node.reload", token=self.ro)
        self.assertEqual(audit["total"], 1)

    def test_invalid_file_applies_nothing(self) -> None:
        """An invalid config file answers 400 with the problem; no hook runs."""
        self.config_file.write_text(
            self.config_file.read_text().replace("enable = 31", "enable = 99")
        )
        status, body, _ = self.call("POST", "/node/reload", token=self.rw)
        self.assertEqual((status, body["error"]), (400, "bad_request"))
        self.assertIn("enable: must be <= 63", body["message"])
        self.assertEqual(self.reloads, [])
