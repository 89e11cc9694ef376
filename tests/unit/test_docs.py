"""The README and example config document what the code reads."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from actrix.ais.resource import CREDENTIAL_HEADER

ROOT = Path(__file__).parents[2]


class DocsTests(SynchronousTestCase):
    """Operator-facing documentation names the header, the keys and the floors."""

    def setUp(self) -> None:
        self.readme = (ROOT / "README.md").read_text()
        self.example = (ROOT / "etc" / "config.example.toml").read_text()

    def test_readme_names_the_ais_credential_header(self) -> None:
        """The README names the header the AIS admin routes read, with a curl call."""
        header = "X-Actrix-Credential"
        self.assertEqual(header.lower().encode(), CREDENTIAL_HEADER)
        self.assertIn(f'curl -X POST -H "{header}: ', self.readme)
        for payload in ("rotate_key", "current_key", "refresh:"):
            self.assertIn(payload, self.readme)

    def test_token_ttl_floor_documented(self) -> None:
        """The 60 s floor of token_ttl_secs is in the validation table and example."""
        self.assertIn("`services.ais.server.token_ttl_secs` below 60 s", self.readme)
        self.assertIn("token_ttl_secs = 3600", self.example)
        self.assertIn(">= 60 s", self.example)

    def test_site_limit_keys_documented(self) -> None:
        """Each slow-client key is in the README table and the example config."""
        for key in ("request_timeout", "idle_timeout", "max_connections_per_ip"):
            self.assertIn(f"| `{key}` |", self.readme)
            self.assertIn(f"# {key} = ", self.example)

    def test_turn_keys_documented(self) -> None:
        """Every TURN key added for issue 15 is in the README and the example config."""
        for key in (
            "password_algorithms",
            "userhash",
            "user_bandwidth",
            "realm_bandwidth",
            "allocation_log",
            "alternate_servers",
            "redirect_above",
            "tcp_relay",
        ):
            self.assertIn(f"turn.{key}", self.readme)
            self.assertIn(f"# {key} = ", self.example)
        self.assertIn("actrix turn drain", self.readme)

    def test_proxy_protocol_keys_documented(self) -> None:
        """The PROXY v2 listener keys are in the README and the example config."""
        for key in ("tcp_proxy_protocol", "tls_proxy_protocol", "proxy_trusted"):
            self.assertIn(f"bind.ice.{key}", self.readme)
            self.assertIn(f"# {key} = ", self.example)

    def test_admin_keys_documented(self) -> None:
        """Every [admin] and [bind.admin] key is in the example config; the README
        has the admin section with its curl examples."""
        for key in (
            "enabled",
            "on_main_site",
            "session_ttl",
            "max_sessions",
            "login_max_failures",
            "login_window",
            "audit_retention_days",
            "audit_max_rows",
        ):
            self.assertIn(f"# {key} = ", self.example)
            if key not in ("enabled", "max_sessions"):
                self.assertIn(f"admin.{key}", self.readme)
        self.assertIn("# [bind.admin]", self.example)
        self.assertIn("## Admin console and control API", self.readme)
        self.assertIn('curl -s -H "Authorization: Bearer $TOKEN"', self.readme)
        self.assertIn("/realms/1/suspend", self.readme)
        self.assertIn("actrix admin-token create --name", self.readme)
