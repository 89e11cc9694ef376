"""Revocation across nodes: one PostgreSQL realm store, one redis-server.

The CLI (another process, as an operator would run it on any host) writes the
revocation into the shared PostgreSQL store; the node holding the actor's
socket hears of it through LISTEN/NOTIFY and ends it, and a watcher on the
other node hears the ActrDown through the bus, all within a second.
"""

from __future__ import annotations

import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.utils import getProcessOutputAndValue

from actrix.core.actrid import actr_id_repr
from actrix.core.revocation import REVOKED_CODE
from tests.integration.test_cluster import ClusterCase
from tests.signaling_client import SignalingClient

DEADLINE = 1.0


class ClusterRevocationTests(ClusterCase):
    async def test_cli_revocation_reaches_the_node_holding_the_socket(self) -> None:
        """Revoked through PostgreSQL: node 1 closes the socket, node 0's watcher
        hears ActrDown, and node 0 refuses the token too."""
        watcher, server = await self.watched_across()
        assert server.actr_id is not None
        config = self.config_file()
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            [
                "-c",
                "from actrix.cli import main; main()",
                "actor",
                "revoke",
                actr_id_repr(server.actr_id),
                "-c",
                str(config),
            ],
            env={"PATH": "/usr/bin:/bin"},
            reactor=reactor,
        )
        self.assertEqual(code, 0, (out + err).decode())
        start = reactor.seconds()
        self.assertEqual(await server.wait_closed(3.0), REVOKED_CODE)
        closed_after = reactor.seconds() - start
        down = Deferred.fromCoroutine(watcher.next_push(3.0))
        event = (await down).server_to_actr.actr_down_event
        down_after = reactor.seconds() - start
        self.assertEqual((event.actor_id, event.reason), (server.actr_id, "revoked"))
        self.assertLessEqual(closed_after, DEADLINE)
        self.assertLessEqual(down_after, DEADLINE)
        # The other node refuses the token as well.
        again = await SignalingClient.reconnect(reactor, self.ports[0], server)
        self.addCleanup(again.drop)
        refused = await again.ping()
        self.assertEqual(refused.error.code, 401, str(refused))
