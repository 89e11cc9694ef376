"""The admin API in a real daemon on loopback: twistd, the CLI, curl-like calls."""

from __future__ import annotations

import json
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import DeferredList
from twisted.internet.task import deferLater
from twisted.internet.testing import EventLoggingObserver
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from tests.daemon import (
    add_realm,
    config_text,
    http_client,
    http_port,
    make_settings,
    start_daemon,
)
from tests.integration.test_daemon import _spawn

ACTRIX = str(Path(sys.executable).parent / "actrix")


def _free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()
    return port


async def _json(response: Any) -> Any:
    content = await treq.content(response)
    return json.loads(content) if content else None


class TwistdAdminTests(TestCase):
    timeout = 60

    async def test_token_login_suspend_audit(self) -> None:
        """CLI token, login, suspend a realm, concurrent edits, read the audit."""
        tmp = Path(self.mktemp()).resolve()
        tmp.mkdir()
        db = tmp / "db"
        add_realm(db, 1, "one")
        admin_port = _free_port()
        config = tmp / "actrix.toml"
        config.write_text(
            config_text(db)
            + f"\n[admin]\nenabled = true\n\n[bind.admin]\nport = {admin_port}\n"
        )
        out, err, code = await getProcessOutputAndValue(
            ACTRIX, ["admin-token", "create", "--name", "ops", "-c", str(config)]
        )
        self.assertEqual(code, 0, err)
        token = out.decode().splitlines()[0]
        self.assertTrue(token.startswith("adm_"))
        proto, transport = _spawn(["actrix", "-c", str(config)], tmp)
        base = f"http://127.0.0.1:{admin_port}/admin/api/v1"
        client = http_client(self)
        for _ in range(150):
            try:
                response = await client.get(base + "/node")
                await response.content()
                break
            except Exception:
                await deferLater(reactor, 0.1, lambda: None)
        else:
            transport.signalProcess("KILL")
            await proto.ended
            self.fail("daemon did not come up: " + proto.output.decode())
        try:
            await self.drive(client, base, token)
        finally:
            transport.signalProcess(signal.SIGTERM)
            code = await proto.ended
        self.assertEqual(code, 0, proto.output.decode())
        self.assertNotIn(token.encode(), proto.output)

    async def drive(self, client: Any, base: str, token: str) -> None:
        response = await client.get(base + "/node")
        self.assertEqual(response.code, 401)
        self.assertEqual((await _json(response))["error"], "unauthorized")

        response = await client.post(base + "/login", json={"token": token})
        self.assertEqual(response.code, 200)
        session = await _json(response)
        cookie_header = response.headers.getRawHeaders("set-cookie")[0]
        self.assertIn("HttpOnly", cookie_header)
        self.assertIn("SameSite=Strict", cookie_header)
        cookie = cookie_header.split(";")[0]
        csrf = session["csrf"]

        response = await client.get(base + "/session", headers={"Cookie": cookie})
        self.assertEqual((await _json(response))["name"], "ops")

        response = await client.post(
            base + "/realms/1/suspend", json={}, headers={"Cookie": cookie}
        )
        self.assertEqual(
            (response.code, (await _json(response))["error"]), (403, "csrf")
        )
        response = await client.post(
            base + "/realms/1/suspend",
            json={"reason": "integration"},
            headers={"Cookie": cookie, "X-CSRF-Token": csrf},
        )
        realm = await _json(response)
        self.assertEqual((response.code, realm["status"]), (200, "Suspended"))

        bearer = {"Authorization": f"Bearer {token}"}
        response = await client.get(base + "/realms/1", headers=bearer)
        realm = await _json(response)
        self.assertEqual(realm["status"], "Suspended")

        patches = [
            client.patch(
                base + "/realms/1",
                json={"version": realm["version"], "name": name},
                headers=bearer,
            )
            for name in ("left", "right")
        ]
        results = await DeferredList(patches, fireOnOneErrback=True)
        codes = sorted(r.code for _, r in results)
        for _, r in results:
            await r.content()
        self.assertEqual(codes, [200, 409])

        response = await client.get(base + "/realms?limit=1000000", headers=bearer)
        self.assertEqual(response.code, 400)
        await response.content()

        response = await client.get(base + "/audit", headers=bearer)
        audit = await _json(response)
        actions = [(e["action"], e["who"], e["remote"]) for e in audit["items"]]
        self.assertIn(("realm.suspend", "ops", "127.0.0.1"), actions)
        self.assertIn(("session.login", "ops", "127.0.0.1"), actions)
        self.assertIn("realm.update", [a for a, _, _ in actions])
        suspend = next(e for e in audit["items"] if e["action"] == "realm.suspend")
        self.assertEqual(suspend["details"], {"reason": "integration"})

        response = await client.get(base + "/node", headers=bearer)
        self.assertEqual((await _json(response))["node_id"], "actrix-test")


class InProcessAdminTests(TestCase):
    timeout = 30

    async def test_main_site_hint_series_and_metrics(self) -> None:
        """on_main_site serves the API on the site; the startup hint and series work."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        settings = make_settings(
            Path(self.mktemp()),
            extra="\n[admin]\nenabled = true\non_main_site = true\n"
            "\n[bind.admin]\nport = 0\n",
        )
        root = start_daemon(self, settings)
        hints = [e for e in events if "admin-token create" in e.get("log_format", "")]
        self.assertEqual(len(hints), 1)
        client = http_client(self)
        for port in (http_port(root), int(root.listener("admin").bound_port)):
            response = await client.get(f"http://127.0.0.1:{port}/admin/api/v1/node")
            self.assertEqual(response.code, 401)
            await response.content()
        for _ in range(3):
            response = await client.post(
                f"http://127.0.0.1:{http_port(root)}/admin/api/v1/login",
                json={"token": "adm_wrong"},
            )
            await response.content()
        await deferLater(reactor, 2.1, lambda: None)
        response = await client.get(f"http://127.0.0.1:{http_port(root)}/metrics")
        text = (await response.content()).decode()
        self.assertIn("actrix_admin_login_failures_total 3.0", text)
        parts = root.background.getServiceNamed("admin")
        ring = parts._ctx.sampler.seconds.read(0)
        self.assertGreaterEqual(len(ring["series"]["auth_failures_per_sec"]), 2)
        self.assertIn(0.0, ring["series"]["connections"])


class LiveActorTests(TestCase):
    timeout = 30

    async def test_registered_actor_is_listed(self) -> None:
        """A registered actor shows in /actors and its realm's count; revoke ends it."""
        import io
        from urllib.parse import quote

        from actrix.cli import run
        from tests.signaling_client import SignalingClient

        tmp = Path(self.mktemp()).resolve()
        add_realm(tmp, 101)
        settings = make_settings(
            tmp, enable=25, extra="\n[admin]\nenabled = true\non_main_site = true\n"
        )
        config = tmp / "actrix.toml"
        config.write_text(
            config_text(tmp, enable=25)
            + "\n[admin]\nenabled = true\non_main_site = true\n"
        )
        root = start_daemon(self, settings)
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(
            run(
                ["admin-token", "create", "--name", "ops", "-c", str(config)], out, err
            ),
            0,
            err.getvalue(),
        )
        bearer: Any = {"Authorization": f"Bearer {out.getvalue().splitlines()[0]}"}
        signaling = await SignalingClient.connect(reactor, http_port(root))
        self.addCleanup(signaling.drop)
        registered = await signaling.register(101)
        self.assertTrue(registered.HasField("success"), str(registered))
        base = f"http://127.0.0.1:{http_port(root)}/admin/api/v1"
        client = http_client(self)
        response = await client.get(base + "/actors?realm_id=101", headers=bearer)
        listed = await _json(response)
        self.assertEqual(listed["total"], 1, listed)
        actor = listed["items"][0]
        self.assertEqual((actor["status"], actor["realm_id"]), ("online", 101))
        # The socket is held here: its address and open time are shown.
        self.assertEqual(actor["remote"], "127.0.0.1")
        self.assertLessEqual(
            abs(actor["connected_at"] - int(reactor.seconds())), 5, actor
        )
        response = await client.get(
            base + "/actors/" + quote(actor["id"], safe=""), headers=bearer
        )
        self.assertEqual((await _json(response))["id"], actor["id"])
        response = await client.get(base + "/realms/101", headers=bearer)
        self.assertEqual((await _json(response))["actors_online"], 1)
        response = await client.post(
            base + "/actors/" + quote(actor["id"], safe="") + "/revoke", headers=bearer
        )
        # tap wires the Revoker into the API: the actor's socket is closed.
        revoked = await _json(response)
        self.assertEqual((response.code, revoked["sockets_closed"]), (200, 1), revoked)
        self.assertIsNotNone(await signaling.wait_closed())


class AdminTlsTests(TestCase):
    timeout = 30

    async def test_tls_listener_and_secure_cookie(self) -> None:
        """bind.admin with cert/key serves TLS (verified against the cert); its
        login cookie is Secure, also in dev, and a wrong token is 401."""
        import io
        import ssl
        import urllib.error
        import urllib.request

        from twisted.internet.threads import deferToThread

        from actrix.cli import run
        from tests.certs import write_self_signed

        tmp = Path(self.mktemp()).resolve()
        cert, key = write_self_signed(tmp / "tls")
        extra = (
            "\n[admin]\nenabled = true\n\n[bind.admin]\nport = 0\n"
            f"cert = '{cert}'\nkey = '{key}'\n"
        )
        config = tmp / "actrix.toml"
        config.write_text(config_text(tmp / "db") + extra)
        root = start_daemon(self, make_settings(tmp / "db", extra=extra))
        out, err = io.StringIO(), io.StringIO()
        args = ["admin-token", "create", "--name", "ops", "-c", str(config)]
        self.assertEqual(run(args, out, err), 0, err.getvalue())
        token = out.getvalue().splitlines()[0]
        port = int(root.listener("admin").bound_port)
        context = ssl.create_default_context(cafile=str(cert))

        def login(text: str) -> tuple[int, str, str]:
            request = urllib.request.Request(
                f"https://127.0.0.1:{port}/admin/api/v1/login",
                data=json.dumps({"token": text}).encode(),
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, context=context) as answer:  # noqa: S310
                    return answer.status, answer.headers["set-cookie"], ""
            except urllib.error.HTTPError as e:
                return e.code, "", e.read().decode()

        code, _, body = await deferToThread(login, "adm_000000000000_wrong")
        self.assertEqual(code, 401)
        self.assertIn("unauthorized", body)
        code, cookie, _ = await deferToThread(login, token)
        self.assertEqual(code, 200)
        self.assertIn("; Secure", cookie)
