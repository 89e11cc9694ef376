"""The relay peer deny-list and its allow-list."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from actrix.turn.peers import PeerPolicy

TABLE = (
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("0.0.0.0", "this-network"),
    ("0.1.2.3", "this-network"),
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "shared-address"),
    ("100.127.255.254", "shared-address"),
    ("169.254.169.254", "link-local"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("255.255.255.255", "reserved"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fc00::1", "unique-local"),
    ("fd12:3456::1", "unique-local"),
    ("fe80::1", "link-local"),
    ("ff02::1", "multicast"),
    ("2001:0:4136:e378::1", "teredo"),
    ("2002:c000:0204::1", "6to4"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::127.0.0.1", "loopback"),
    ("::192.168.0.1", "private"),
    ("not-an-ip", "invalid"),
    ("8.8.8.8", None),
    ("172.32.0.1", None),
    ("100.128.0.1", None),
    ("203.0.113.5", None),
    ("2001:db8::1", None),
    ("2606:4700::1111", None),
    ("::ffff:8.8.8.8", None),
)


class PeerPolicyTests(SynchronousTestCase):
    def test_deny_table(self) -> None:
        """Each address falls under the expected rule (or none)."""
        policy = PeerPolicy()
        for ip, rule in TABLE:
            self.assertEqual(policy.denied_rule(ip), rule, ip)
            self.assertEqual(policy.denied_rule(ip), rule, f"{ip} (cached)")

    def test_allow_list_wins(self) -> None:
        """An allow-listed network is let through, also in its mapped IPv6 form."""
        policy = PeerPolicy(["127.0.0.1/32", "10.1.0.0/16"])
        self.assertIsNone(policy.denied_rule("127.0.0.1"))
        self.assertIsNone(policy.denied_rule("::ffff:127.0.0.1"))
        self.assertIsNone(policy.denied_rule("10.1.2.3"))
        self.assertEqual(policy.denied_rule("127.0.0.2"), "loopback")
        self.assertEqual(policy.denied_rule("10.2.0.1"), "private")
