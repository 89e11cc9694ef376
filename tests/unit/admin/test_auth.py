"""Who may call what: tokens, sessions, CSRF, read-only, revocation, rate limit."""

from __future__ import annotations

import attrs

from actrix.admin import store as admin_store
from tests.unit.admin.harness import ApiCase

# One state change per kind of route, with a body it would accept.
WRITES = (
    ("POST", "/realms", {"name": "n"}),
    ("PATCH", "/realms/1", {"version": 1, "name": "n"}),
    ("DELETE", "/realms/2", None),
    ("POST", "/realms/1/suspend", None),
    ("POST", "/realms/1/resume", None),
    (
        "POST",
        "/acl",
        {"realm_id": 1, "from_type": "a:b", "to_type": "c:d", "permission": "allow"},
    ),
    ("DELETE", "/acl/1", None),
    ("POST", "/actors/a1%401%2Facme%3Acamera/revoke", None),
    ("POST", "/rooms/lobby/close", None),
    ("POST", "/rooms/lobby/peers/x/kick", None),
    ("POST", "/turn/allocations/x/terminate", None),
    ("POST", "/node/reload", None),
)
READS = (
    "/node",
    "/node/config",
    "/realms",
    "/realms/1",
    "/acl",
    "/actors",
    "/rooms",
    "/turn/allocations",
    "/metrics/series",
    "/audit",
)


class AuthMatrixTests(ApiCase):
    def test_no_credentials_is_401_everywhere(self) -> None:
        """Every read and write without a token or cookie answers 401."""
        for path in READS:
            status, body, _ = self.call("GET", path)
            self.assertEqual((status, body["error"]), (401, "unauthorized"), path)
        for method, path, body in WRITES:
            status, answer, _ = self.call(method, path, body)
            self.assertEqual((status, answer["error"]), (401, "unauthorized"), path)
        self.assertEqual(self.revoker.realms, [])

    def test_wrong_token_is_401(self) -> None:
        """A malformed, unknown or altered bearer token answers 401."""
        altered = self.rw[:-2] + ("AA" if not self.rw.endswith("AA") else "BB")
        for token in ("nonsense", "adm_000000000000_x", altered, "x" * 5000):
            status, body, _ = self.call("GET", "/node", token=token)
            self.assertEqual((status, body["error"]), (401, "unauthorized"))
        status, body, _ = self.call(
            "GET", "/node", headers={"Authorization": "Basic Zm9vOmJhcg=="}
        )
        self.assertEqual(status, 401)

    def test_read_only_token_reads_but_never_writes(self) -> None:
        """A read-only token reads everything; every change is 403 read_only."""
        for path in READS:
            status, _, _ = self.call("GET", path, token=self.ro)
            self.assertEqual(status, 200, path)
        for method, path, body in WRITES:
            status, answer, _ = self.call(method, path, body, token=self.ro)
            self.assertEqual((status, answer["error"]), (403, "read_only"), path)
        self.assertEqual(self.cache.realm(1).status, "Normal")  # type: ignore[union-attr]
        self.assertEqual(len(self.rooms.room("lobby").members), 2)  # type: ignore[union-attr]

    def test_revoked_token_is_refused_and_ends_sessions(self) -> None:
        """After a revoke the bearer token and its console session both get 401."""
        cookie, _ = self.login(self.rw)
        self.admin_db.run_sync(admin_store.revoke_token_txn, "ops", 1)
        status, body, _ = self.call("GET", "/node", token=self.rw)
        self.assertEqual((status, body["error"]), (401, "unauthorized"))
        status, body, _ = self.call("GET", "/node", headers={"Cookie": cookie})
        self.assertEqual(status, 401)
        self.assertIn("revoked", body["message"])
        self.assertEqual(len(self.ctx.sessions), 0)


class SessionTests(ApiCase):
    def test_login_sets_a_strict_cookie(self) -> None:
        """Login answers the csrf token and an HttpOnly SameSite=Strict cookie."""
        status, body, headers = self.call("POST", "/login", {"token": self.rw})
        self.assertEqual(status, 200)
        self.assertEqual((body["name"], body["read_only"]), ("ops", False))
        self.assertEqual(body["expires_at"], int(self.clock.seconds()) + 3600)
        cookie = headers.getRawHeaders("set-cookie")[0]
        self.assertIn("HttpOnly", cookie)
        self.assertIn("SameSite=Strict", cookie)
        self.assertIn("Path=/admin", cookie)
        # dev over plain HTTP: the one case without Secure.
        self.assertNotIn("Secure", cookie)
        self.assertNotIn(self.rw, cookie)

    def test_cookie_is_secure_outside_dev(self) -> None:
        """Outside env=dev the cookie is Secure even over plain HTTP."""
        self.ctx.settings = attrs.evolve(self.ctx.settings, env="prod")
        _, _, headers = self.call("POST", "/login", {"token": self.ro})
        self.assertIn("; Secure", headers.getRawHeaders("set-cookie")[0])

    def test_cookie_is_secure_over_https_in_dev(self) -> None:
        """In dev the cookie keeps Secure when the request came over HTTPS."""
        d = self.stub.request(
            "POST",
            "https://127.0.0.1/admin/api/v1/login",
            data=b'{"token": "%s"}' % self.ro.encode(),
        )
        self.stub.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)
        self.assertIn("; Secure", response.headers.getRawHeaders("set-cookie")[0])
        self.successResultOf(response.content())

    def test_session_reads_and_csrf_guards_writes(self) -> None:
        """A cookie reads; a write needs the exact CSRF token of its session."""
        cookie, csrf = self.login(self.rw)
        status, body, _ = self.call("GET", "/session", headers={"Cookie": cookie})
        self.assertEqual((status, body["csrf"]), (200, csrf))
        for headers in (
            {"Cookie": cookie},
            {"Cookie": cookie, "X-CSRF-Token": "wrong"},
            {"Cookie": cookie, "X-CSRF-Token": csrf + "x"},
        ):
            status, body, _ = self.call("POST", "/realms/1/suspend", headers=headers)
            self.assertEqual((status, body["error"]), (403, "csrf"))
        self.assertEqual(self.cache.realm(1).status, "Normal")  # type: ignore[union-attr]
        _, other_csrf = self.login(self.rw)
        status, _, _ = self.call(
            "POST",
            "/realms/1/suspend",
            headers={"Cookie": cookie, "X-CSRF-Token": other_csrf},
        )
        self.assertEqual(status, 403)
        status, body, _ = self.call(
            "POST",
            "/realms/1/suspend",
            headers={"Cookie": cookie, "X-CSRF-Token": csrf},
        )
        self.assertEqual((status, body["status"]), (200, "Suspended"))

    def test_read_only_session_gets_read_only(self) -> None:
        """A read-only login with a right CSRF token still cannot change things."""
        cookie, csrf = self.login(self.ro)
        status, body, _ = self.call(
            "POST",
            "/realms/1/suspend",
            headers={"Cookie": cookie, "X-CSRF-Token": csrf},
        )
        self.assertEqual((status, body["error"]), (403, "read_only"))

    def test_session_expires(self) -> None:
        """After the session TTL the cookie answers 401."""
        cookie, _ = self.login(self.ro)
        self.clock.advance(3601)
        status, body, _ = self.call("GET", "/node", headers={"Cookie": cookie})
        self.assertEqual((status, body["error"]), (401, "unauthorized"))
        self.assertIn("expired", body["message"])

    def test_bearer_has_no_session(self) -> None:
        """GET /session with a bearer token (no cookie) is 401."""
        status, _, _ = self.call("GET", "/session", token=self.rw)
        self.assertEqual(status, 401)

    def test_logout_needs_csrf_and_ends_the_session(self) -> None:
        """POST /logout without CSRF is 403; with it 204 and the cookie is dead."""
        cookie, csrf = self.login(self.ro)
        status, _, _ = self.call("POST", "/logout", headers={"Cookie": cookie})
        self.assertEqual(status, 403)
        status, _, headers = self.call(
            "POST", "/logout", headers={"Cookie": cookie, "X-CSRF-Token": csrf}
        )
        self.assertEqual(status, 204)
        self.assertIn("Max-Age=0", headers.getRawHeaders("set-cookie")[0])
        status, _, _ = self.call("GET", "/node", headers={"Cookie": cookie})
        self.assertEqual(status, 401)

    def test_bad_login_bodies(self) -> None:
        """A login body of the wrong shape is 400; a wrong token 401."""
        for body in ({}, {"token": 5}, {"token": "x", "extra": 1}, ["x"]):
            status, answer, _ = self.call("POST", "/login", body)
            self.assertEqual((status, answer["error"]), (400, "bad_request"), body)
        status, answer, _ = self.call("POST", "/login", {"token": "adm_nope"})
        self.assertEqual((status, answer["error"]), (401, "unauthorized"))

    def test_failed_logins_are_rate_limited_per_ip(self) -> None:
        """Past 5 failures in the window the IP gets 429 with retry_after."""
        for _ in range(5):
            status, _, _ = self.call("POST", "/login", {"token": "adm_bad"})
            self.assertEqual(status, 401)
        status, body, _ = self.call("POST", "/login", {"token": self.rw})
        self.assertEqual((status, body["error"]), (429, "too_many_requests"))
        self.assertEqual(body["retry_after"], 60)
        status, _, _ = self.call("GET", "/node", token=self.rw)
        self.assertEqual(status, 429)
        self.assertEqual(self.ctx.metrics.login_failures, 5)
        self.clock.advance(61)
        status, _, _ = self.call("POST", "/login", {"token": self.rw})
        self.assertEqual(status, 200)
