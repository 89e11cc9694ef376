"""``[bind.rooms]``: the room endpoints on a listener of their own."""

from __future__ import annotations

from twisted.internet import reactor

from actrix.core.config import ConfigError
from actrix.root import ActrixService
from tests.daemon import http_client, http_port, make_settings
from tests.rooms_client import JsonPeer
from tests.rooms_daemon import ROOMS, RoomsDaemonCase

ON_ITS_OWN = ROOMS + '[bind.rooms]\nip = "127.0.0.1"\nport = 0\n'


def rooms_port(root: ActrixService) -> int:
    return int(root.listener("rooms").bound_port)


class RoomsListenerTests(RoomsDaemonCase):
    extra = ON_ITS_OWN

    async def test_rooms_answer_on_their_port_only(self) -> None:
        """Peers meet on the rooms port; the main site has no /rooms or /api."""
        port = rooms_port(self.root)
        alice = await JsonPeer(reactor).open(port)
        self.addCleanup(alice.abort)
        bob = await JsonPeer(reactor).open(port)
        self.addCleanup(bob.abort)
        await alice.request(type="JOIN", room_id="own-port")
        await bob.request(type="JOIN", room_id="own-port")
        joined = await alice.of_type("PEER_JOINED")
        self.assertEqual(joined["peer_id"], bob.peer_id)
        client = http_client(self)
        for where, code in (
            (f"{port}/rooms/health", 200),
            (f"{http_port(self.root)}/rooms/health", 404),
            (f"{http_port(self.root)}/api/stats", 404),
            (f"{http_port(self.root)}/health", 200),  # the main site as before
        ):
            response = await client.get(f"http://127.0.0.1:{where}")
            await response.content()
            self.assertEqual(response.code, code, where)

    def test_check_names_a_missing_port_and_rooms_that_are_off(self) -> None:
        """bind.rooms needs a port, a whole TLS pair, and rooms enabled."""
        for enable, table, said in (
            (63, "[bind.rooms]\n", "bind.rooms.port"),
            (63, '[bind.rooms]\nport = 9000\ncert = "/x.pem"\n', "bind.rooms.cert"),
            (31, "[bind.rooms]\nport = 9000\n", "bind.rooms: rooms (enable bit 32)"),
        ):
            with self.assertRaises(ConfigError) as caught:
                make_settings(self.directory, enable=enable, extra=table)
            self.assertIn(said, str(caught.exception))
