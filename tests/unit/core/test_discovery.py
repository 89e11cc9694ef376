"""LAN discovery: the [discovery] table, what is announced, what discover reads."""

from __future__ import annotations

import io
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from actrix.cli import run
from actrix.cli.discover import endpoint_urls
from actrix.core import discovery as d
from actrix.core.config import ConfigError
from actrix.core.settings import DiscoveryConfig, Settings
from tests.daemon import make_settings

PORTS = {"http": 8080, "ice-udp": 3478, "ice-tcp": 3478, "ice-tls": 5349}


def _settings(extra: str = "", overrides: str = "", enable: int = 63) -> Settings:
    return make_settings(Path("/tmp/unused"), enable, extra, overrides)


class ConfigTests(SynchronousTestCase):
    def test_defaults_off(self) -> None:
        """Without [discovery] nothing is announced."""
        self.assertEqual(_settings().discovery, DiscoveryConfig())

    def test_keys_read(self) -> None:
        """mdns, instance and interfaces are read."""
        settings = _settings(
            '[discovery]\nmdns = true\ninstance = "lab"\ninterfaces = ["10.0.0.2"]\n'
        )
        self.assertEqual(
            settings.discovery, DiscoveryConfig(True, "lab", ("10.0.0.2",))
        )

    def test_bad_keys_named(self) -> None:
        """Each bad key is reported with its dotted name (what actrix check prints)."""
        with self.assertRaises(ConfigError) as cm:
            _settings(
                '[discovery]\nmdns = "yes"\ninstance = ""\n'
                'interfaces = ["eth0"]\nbogus = 1\n'
            )
        text = "\n".join(cm.exception.problems)
        for key in ("mdns", "instance", "interfaces", "bogus"):
            self.assertIn(f"discovery.{key}", text)


class PlanTests(SynchronousTestCase):
    def test_full_daemon(self) -> None:
        """Every endpoint gets its DNS-SD type; the daemon record sums them up."""
        ads = d.plan_advertisements(_settings(), PORTS.get)
        by_type = {a.service_type: a for a in ads}
        self.assertEqual(ads[0].service_type, d.DAEMON)
        self.assertEqual(
            {t: a.port for t, a in by_type.items()},
            {
                d.DAEMON: 8080,
                d.SIGNALING: 8080,
                d.ROOMS: 8080,
                d.STUN: 3478,
                d.TURN_UDP: 3478,
                d.TURN_TCP: 3478,
                d.TURNS: 5349,
            },
        )
        self.assertEqual(by_type[d.SIGNALING].addresses, ("127.0.0.1",))
        summary = dict(by_type[d.DAEMON].properties)
        self.assertEqual(summary["signaling"], "8080/signaling/ws")
        self.assertEqual(summary["rooms"], "8080/rooms/ws")
        self.assertEqual((summary["stun"], summary["turn"]), ("3478", "3478"))
        self.assertEqual((summary["turn_tcp"], summary["turns"]), ("3478", "5349"))
        self.assertEqual(summary["tls"], "0")
        self.assertNotIn("ice_ip", summary)

    def test_rooms_on_their_own_listener(self) -> None:
        """With [bind.rooms] the rooms record names that listener's port and TLS."""
        settings = _settings(
            overrides='[bind.rooms]\nip = "127.0.0.1"\nport = 9443\n'
            'cert = "/c.pem"\nkey = "/k.pem"\n'
        )
        ads = d.plan_advertisements(settings, {**PORTS, "rooms": 9443}.get)
        rooms = next(a for a in ads if a.service_type == d.ROOMS)
        self.assertEqual((rooms.port, dict(rooms.properties)["tls"]), (9443, "1"))
        self.assertEqual(dict(ads[0].properties)["rooms"], "9443/rooms/ws")
        self.assertEqual([a.service_type for a in ads].count(d.ROOMS), 1)

    def test_ice_elsewhere_and_advertised_ip(self) -> None:
        """A wildcard bind announces the advertised IP; ICE elsewhere gets ice_ip."""
        settings = _settings(
            overrides=(
                '[bind.http]\nip = "0.0.0.0"\nadvertised_ip = "192.0.2.7"\n'
                '[bind.ice]\nip = "0.0.0.0"\n[turn]\nadvertised_ip = "192.0.2.8"\n'
            ),
        )
        ads = d.plan_advertisements(settings, {"http": 80, "ice-udp": 3478}.get)
        daemon = ads[0]
        self.assertEqual(daemon.addresses, ("192.0.2.7",))
        self.assertEqual(dict(daemon.properties)["ice_ip"], "192.0.2.8")
        self.assertNotIn(d.TURN_TCP, [a.service_type for a in ads])

    def test_stun_only_daemon_is_announced_on_its_ice_port(self) -> None:
        """Without an HTTP site the daemon record sits on the ICE port."""
        ads = d.plan_advertisements(_settings(enable=2), {"ice-udp": 3478}.get)
        self.assertEqual(
            [(a.service_type, a.port) for a in ads],
            [(d.DAEMON, 3478), (d.STUN, 3478)],
        )

    def test_interfaces_used_for_wildcard_binds(self) -> None:
        """Configured interfaces stand in for a wildcard bind without advertised IP."""
        self.assertEqual(
            d.host_addresses("0.0.0.0", "", ["10.1.1.1"]),
            ("10.1.1.1",),
        )
        self.assertEqual(d.host_addresses("::", "2001:db8::1", []), ("2001:db8::1",))
        for address in d.host_addresses("0.0.0.0", "", []):
            self.assertFalse(address.startswith("127."))


class DiscoverParsingTests(SynchronousTestCase):
    def test_record_becomes_urls(self) -> None:
        """A daemon record's TXT gives the site, WebSocket and ICE URLs."""
        txt = {
            "tls": "1",
            "signaling": "443/signaling/ws",
            "rooms": "443/rooms/ws",
            "stun": "3478",
            "turn": "3478",
            "turn_tcp": "3478",
            "turns": "5349",
            "ice_ip": "192.0.2.8",
        }
        urls = endpoint_urls(["192.0.2.7"], 443, txt)
        self.assertEqual(
            urls,
            [
                ("site", "https://192.0.2.7:443"),
                ("signaling", "wss://192.0.2.7:443/signaling/ws"),
                ("rooms", "wss://192.0.2.7:443/rooms/ws"),
                ("stun", "stun:192.0.2.8:3478"),
                ("turn", "turn:192.0.2.8:3478?transport=udp"),
                ("turn", "turn:192.0.2.8:3478?transport=tcp"),
                ("turns", "turns:192.0.2.8:5349?transport=tcp"),
            ],
        )

    def test_hostile_txt_is_dropped_or_bounded(self) -> None:
        """Bad ports, missing values and control characters do not come through."""
        txt = {
            "signaling": "99999/x",
            "rooms": None,
            "stun": "abc",
            "turn": "3478\x1b[2J" + "9" * 500,
        }
        self.assertEqual(endpoint_urls(["::1"], 80, txt), [])
        self.assertEqual(
            endpoint_urls(["::1"], 80, {"stun": "3478"}),
            [("stun", "stun:[::1]:3478")],
        )


class DiscoverCliTests(SynchronousTestCase):
    def test_bad_arguments_are_one_line_errors(self) -> None:
        """An out-of-range timeout or a non-address interface exits 1 at once."""
        for argv in (
            ["discover", "--timeout", "0"],
            ["discover", "--timeout", "1", "--interface", "eth0"],
        ):
            out, err = io.StringIO(), io.StringIO()
            self.assertEqual(run(argv, out, err), 1)
            self.assertTrue(err.getvalue().startswith("actrix: --"), err.getvalue())
