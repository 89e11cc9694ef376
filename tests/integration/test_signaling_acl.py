"""Registration ACLs over a real WebSocket (issue 10, defect 4).

The newest registration of a type replaces what earlier ones declared, one row
per (realm, from, to) is stored, an explicit DENY beats ALLOW, and a request
naming too many principals is refused before anything is created.
"""

from __future__ import annotations

import sqlite3

from actrix.core.realms import realms_path
from actrix.proto import actr_pb2
from tests.integration.test_signaling import REALM, SignalingDaemonCase, allow
from tests.signaling_client import SignalingClient

DENY = actr_pb2.AclRule.DENY


class RegistrationAclTests(SignalingDaemonCase):
    def acl_rows(self) -> list[tuple[str, str, int]]:
        conn = sqlite3.connect(realms_path(self.directory))
        try:
            rows = conn.execute(
                "SELECT from_type, to_type, access FROM actoracl ORDER BY rowid"
            ).fetchall()
        finally:
            conn.close()
        return [(str(f), str(t), int(a)) for f, t, a in rows]

    async def visible_types(self, caller: SignalingClient) -> set[str]:
        reply = await caller.call(discovery_request=actr_pb2.DiscoveryRequest())
        return {e.actr_type.name for e in reply.discovery_response.success.entries}

    async def test_newest_registration_replaces_and_its_deny_counts(self) -> None:
        """svc allows caller, then a newer svc denies it: caller loses access."""
        first = await self.registered(name="svc", acl=allow(("acme", "caller")))
        caller = await self.registered(name="caller")
        self.assertEqual(await self.visible_types(caller), {"svc"})
        await self.registered(
            name="svc", acl=allow(("acme", "caller"), permission=DENY)
        )
        self.assertEqual(await self.visible_types(caller), set())
        assert first.actr_id is not None
        envelope, relay = caller.relay_envelope(first.actr_id)
        relay.ice_restart_request.SetInParent()
        reply = (await caller.request(envelope)).server_to_actr
        self.assert_error(reply.error, 403, "ACL policy denies relay to target actor")
        self.assertEqual(self.acl_rows(), [("acme:caller", "acme:svc", 0)])
        # A third registration allowing it again replaces the deny.
        await self.registered(name="svc", acl=allow(("acme", "caller")))
        self.assertEqual(await self.visible_types(caller), {"svc"})
        self.assertEqual(self.acl_rows(), [("acme:caller", "acme:svc", 1)])

    async def test_deny_beats_allow_within_one_registration(self) -> None:
        """An ALLOW and a later DENY for the same caller in one request: denied."""
        acl = allow(("acme", "caller"))
        acl.rules.extend(allow(("acme", "caller"), permission=DENY).rules)
        await self.registered(name="svc", acl=acl)
        caller = await self.registered(name="caller")
        self.assertEqual(await self.visible_types(caller), set())
        self.assertEqual(self.acl_rows(), [("acme:caller", "acme:svc", 0)])

    async def test_repeated_registrations_store_one_row_per_triple(self) -> None:
        """Twenty registrations with the same ACL leave one row per principal."""
        principals = [("acme", f"c{i}") for i in range(20)]
        for _ in range(20):
            await self.registered(name="svc", acl=allow(*principals))
        self.assertEqual(len(self.acl_rows()), 20)

    async def test_too_many_principals_is_400(self) -> None:
        """257 principals: register_response.error 400; no identity, no ACL row."""
        client = await self.client()
        principals = [("acme", f"c{i}") for i in range(257)]
        response = await client.register(REALM, name="svc", acl=allow(*principals))
        self.assert_error(response.error, 400, "Too many ACL principals: 257 > 256")
        self.assertEqual(self.acl_rows(), [])
        # Nothing was bound: the same socket registers with 256.
        response = await client.register(REALM, name="svc", acl=allow(*principals[1:]))
        self.assertTrue(response.HasField("success"), str(response))
        self.assertEqual(len(self.acl_rows()), 256)
