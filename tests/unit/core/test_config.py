"""Configuration parsing and validation: every rule, valid and invalid."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from actrix.core.config import ConfigError, Settings, load_config, parse_config
from actrix.core.settings import AlternateServer
from tests.daemon import _merge, config_text


def _data(overrides: str = "", enable: int = 31) -> dict[str, Any]:
    data = tomllib.loads(config_text(Path("/tmp/actrix-test"), enable))
    if overrides:
        _merge(data, tomllib.loads(overrides))
    return data


class ConfigTests(SynchronousTestCase):
    def assert_problem(self, data: dict[str, Any], expected: str) -> None:
        with self.assertRaises(ConfigError) as cm:
            parse_config(data)
        self.assertTrue(
            any(expected in p for p in cm.exception.problems),
            f"{expected!r} not in {cm.exception.problems}",
        )

    def parse(self, overrides: str = "", enable: int = 31) -> Settings:
        return parse_config(_data(overrides, enable))

    def test_valid_config_parses(self) -> None:
        """The test base config is valid and typed."""
        s = self.parse()
        self.assertEqual(s.enable, 31)
        self.assertEqual(s.bind.ice.port, 0)
        self.assertEqual(s.turn.relay_port_range, (49152, 65535))
        self.assertEqual(s.enabled_services, ("signaling", "turn", "ais", "ks"))
        self.assertEqual(s.warnings, ())

    def test_dev_example_configs_are_valid(self) -> None:
        """The shipped example configs validate."""
        root = Path(__file__).parents[3] / "etc"
        for name in ("actrix.dev.toml", "config.example.toml"):
            load_config(root / name)

    def test_enable_above_63_rejected(self) -> None:
        """Bitmask values above 63 (rooms is bit 32) are errors."""
        data = _data()
        data["enable"] = 64
        self.assert_problem(data, "enable: must be <= 63")

    def test_enable_wrong_type(self) -> None:
        """A string enable names the key and the type."""
        data = _data()
        data["enable"] = "31"
        self.assert_problem(data, "enable: expected an integer, got a string")

    def test_boolean_is_not_an_integer(self) -> None:
        """TOML booleans are not accepted where integers are expected."""
        data = _data()
        data["enable"] = True
        self.assert_problem(data, "enable: expected an integer, got a boolean")

    def test_blank_name_rejected(self) -> None:
        """name must not be blank."""
        data = _data()
        data["name"] = "  "
        self.assert_problem(data, "name: must not be blank")

    def test_missing_required_keys(self) -> None:
        """Every missing required key is reported with its dotted path."""
        data = _data()
        for key in ("name", "env", "location_tag", "sqlite_path", "actrix_shared_key"):
            del data[key]
        del data["bind"]["ice"]["port"]
        with self.assertRaises(ConfigError) as cm:
            parse_config(data)
        problems = cm.exception.problems
        for key in ("name", "env", "location_tag", "sqlite_path", "actrix_shared_key"):
            self.assertIn(f"{key}: missing required key", problems)
        self.assertIn("bind.ice.port: missing required key", problems)

    def test_bad_env(self) -> None:
        """env must be dev, prod or test."""
        data = _data()
        data["env"] = "staging"
        self.assert_problem(data, "env: must be 'dev', 'prod' or 'test'")

    def test_unknown_keys_rejected(self) -> None:
        """Unknown keys at any depth are errors naming the dotted key."""
        self.assert_problem(_data("colour = 1"), "colour: unknown key")
        self.assert_problem(_data("[turn]\nrelm = 'x'"), "turn.relm: unknown key")
        self.assert_problem(
            _data("[services.signaling.server.rate_limit.message]\nper_sec = 1"),
            "services.signaling.server.rate_limit.message.per_sec: unknown key",
        )
        self.assert_problem(_data("[acl]\nx = 1"), "acl: unknown key")

    def test_supervisor_rejected(self) -> None:
        """The supervisor table is reported as unsupported."""
        self.assert_problem(
            _data("[supervisor]\nx = 1"), "supervisor: the supervisor integration"
        )

    def test_shared_key_rules(self) -> None:
        """The shared key must be 16+ chars and not contain default/change."""
        for bad, message in (
            ("short", "shorter than 16"),
            ("please-change-me-0123456789", "must not contain"),
            ("the-DEFAULT-key-0123456789", "must not contain"),
        ):
            data = _data()
            data["actrix_shared_key"] = bad
            self.assert_problem(data, f"actrix_shared_key: {message}")

    def test_shared_key_never_in_repr(self) -> None:
        """The secret value does not appear in the settings' repr."""
        s = self.parse()
        self.assertNotIn(s.actrix_shared_key.value, repr(s))
        self.assertNotIn("test-rest-secret", repr(s))
        self.assertNotIn("alice-password", repr(s))

    def test_ip_fields_validated(self) -> None:
        """Bind IPs and the TURN advertised IP must be IP literals."""
        self.assert_problem(
            _data("[bind.http]\nip = 'localhost'"), "bind.http.ip: not an IP address"
        )
        self.assert_problem(
            _data("[turn]\nadvertised_ip = 'turn.example.com'"),
            "turn.advertised_ip: not an IP address",
        )

    def test_advertised_ip_unchecked_without_turn(self) -> None:
        """Without STUN/TURN bits the TURN advertised IP is not checked."""
        s = self.parse("[turn]\nadvertised_ip = 'nope'", enable=25)
        self.assertEqual(s.turn.advertised_ip, "nope")

    def test_blank_turn_realm(self) -> None:
        """TURN needs a non-blank realm."""
        self.assert_problem(
            _data("[turn]\nrealm = ' '"), "turn.realm: must not be blank"
        )

    def test_port_range(self) -> None:
        """Ports must be 0-65535."""
        self.assert_problem(
            _data("[bind.ice]\nport = 70000"), "bind.ice.port: must be <="
        )
        self.assert_problem(
            _data("[bind.http]\nport = -1"), "bind.http.port: must be >="
        )

    def test_relay_port_range(self) -> None:
        """relay_port_range is parsed and checked for order and form."""
        s = self.parse("[turn]\nrelay_port_range = '50000-50100'")
        self.assertEqual(s.turn.relay_port_range, (50000, 50100))
        self.assert_problem(
            _data("[turn]\nrelay_port_range = '60000-50000'"),
            "turn.relay_port_range: start 60000 > end 50000",
        )
        self.assert_problem(
            _data("[turn]\nrelay_port_range = 'lots'"),
            "turn.relay_port_range: expected",
        )

    def test_default_lifetime_within_max(self) -> None:
        """The default allocation lifetime may not exceed the maximum."""
        self.assert_problem(
            _data("[turn]\ndefault_lifetime = 7200\nmax_lifetime = 3600"),
            "turn.default_lifetime: 7200 exceeds turn.max_lifetime 3600",
        )

    def test_peer_allow_must_be_networks(self) -> None:
        """Allow-list entries must parse as networks."""
        self.assert_problem(
            _data("[turn]\npeer_allow = ['10.0.0.0/8', 'nonsense']"),
            "turn.peer_allow: 'nonsense' is not an IP network",
        )

    def test_password_algorithms(self) -> None:
        """password_algorithms maps names to RFC 8489 numbers in order."""
        self.assertEqual(self.parse().turn.password_algorithms, (2, 1))
        s = self.parse("[turn]\npassword_algorithms = ['md5']\nuserhash = false")
        self.assertEqual(s.turn.password_algorithms, (1,))
        self.assertFalse(s.turn.userhash)
        self.assert_problem(
            _data("[turn]\npassword_algorithms = ['sha1']"),
            "turn.password_algorithms: 'sha1' is not one of sha256, md5",
        )
        self.assert_problem(
            _data("[turn]\npassword_algorithms = ['md5', 'md5']"),
            "turn.password_algorithms: 'md5' listed twice",
        )
        self.assert_problem(
            _data("[turn]\npassword_algorithms = []"),
            "turn.password_algorithms: must name at least one algorithm",
        )

    def test_rest_secret_list_and_bandwidth_keys(self) -> None:
        """static_auth_secret takes one secret or a list; caps are >= 0 bytes/s."""
        s = self.parse("[turn]\nstatic_auth_secret = ['new', 'old']")
        self.assertEqual([x.value for x in s.turn.rest_secrets], ["new", "old"])
        minting = s.turn.static_auth_secret
        assert minting is not None
        self.assertEqual(minting.value, "new")
        self.assertEqual(len(self.parse().turn.rest_secrets), 1)
        self.assert_problem(
            _data("[turn]\nstatic_auth_secret = []"),
            "turn.static_auth_secret: expected a string or a non-empty list",
        )
        self.assert_problem(
            _data("[turn]\nstatic_auth_secret = ['ok', '']"),
            "turn.static_auth_secret: secrets must not be empty",
        )
        s = self.parse("[turn]\nuser_bandwidth = 125000\nrealm_bandwidth = 0")
        self.assertEqual(s.turn.user_bandwidth, 125000)
        self.assertFalse(s.turn.allocation_log)
        self.assert_problem(
            _data("[turn]\nrealm_bandwidth = -1"), "turn.realm_bandwidth: must be >="
        )

    def test_alternate_servers(self) -> None:
        """alternate_servers must be IP literals with ports; redirect_above >= 0."""
        s = self.parse(
            "[turn]\nalternate_servers = ['203.0.113.1:3478', '[2001:db8::1]:5349']"
        )
        self.assertEqual(len(s.turn.alternate_servers), 2)
        self.assert_problem(
            _data("[turn]\nalternate_servers = ['turn.example.com:3478']"),
            "turn.alternate_servers: 'turn.example.com:3478' is not ip:port",
        )
        self.assert_problem(
            _data("[turn]\nredirect_above = -1"), "turn.redirect_above: must be >="
        )
        s = self.parse(
            "[turn]\nalternate_servers = ['203.0.113.1:3478', {address ="
            " '203.0.113.2:3478', domain = 'turn-b.example.com', tls_port = 5349}]"
        )
        self.assertEqual(
            s.turn.alternate_servers,
            (
                AlternateServer("203.0.113.1:3478"),
                AlternateServer("203.0.113.2:3478", "turn-b.example.com", 5349),
            ),
        )
        for entry, problem in (
            ("{domain = 'a.example'}", "[0].address: missing"),
            ("{address = 'x:1'}", "[0].address: 'x:1' is not ip:port"),
            (
                "{address = '203.0.113.2:1', domain = '203.0.113.2'}",
                "[0].domain: '203.0.113.2' is not a DNS name",
            ),
            ("{address = '203.0.113.2:1', tls_port = 0}", "[0].tls_port: must be >= 1"),
            ("{address = '203.0.113.2:1', sni = 'a'}", "[0].sni: unknown key"),
            ("3478", ': expected "ip:port" or a table, got an integer'),
        ):
            self.assert_problem(
                _data(f"[turn]\nalternate_servers = [{entry}]"),
                f"turn.alternate_servers{problem}",
            )
        self.assertTrue(s.turn.tcp_relay)
        self.assertFalse(self.parse("[turn]\ntcp_relay = false").turn.tcp_relay)

    def test_proxy_protocol_needs_trusted_networks(self) -> None:
        """PROXY protocol on a listener requires valid proxy_trusted networks."""
        s = self.parse(
            "[bind.ice]\ntcp_proxy_protocol = true\nproxy_trusted = ['10.0.0.0/8']"
        )
        self.assertTrue(s.bind.ice.tcp_proxy_protocol)
        self.assertFalse(s.bind.ice.tls_proxy_protocol)
        self.assert_problem(
            _data("[bind.ice]\ntls_proxy_protocol = true"),
            "bind.ice.proxy_trusted: PROXY protocol is on but no network is trusted",
        )
        self.assert_problem(
            _data("[bind.ice]\nproxy_trusted = ['lb.example']"),
            "bind.ice.proxy_trusted: 'lb.example' is not an IP network",
        )

    def test_filter_level(self) -> None:
        """The first filter_level item must be a known level."""
        s = self.parse("[observability]\nfilter_level = 'debug,actrix=info'")
        self.assertEqual(s.observability.level, "debug")
        self.assert_problem(
            _data("[observability]\nfilter_level = 'loud'"),
            "observability.filter_level: must start with one of",
        )

    def test_log_output(self) -> None:
        """log.output must be console or file."""
        self.assert_problem(
            _data("[observability.log]\noutput = 'syslog'"),
            "observability.log.output: must be 'console' or 'file'",
        )

    def test_tracing_rules(self) -> None:
        """Tracing needs an http(s) endpoint and is not built in."""
        self.assert_problem(
            _data("[observability.tracing]\nenable = true\nendpoint = 'grpc://x'"),
            "observability.tracing.endpoint: must start with http",
        )

    def test_services_required_by_bits(self) -> None:
        """Each enabled HTTP service needs its table."""
        data = _data()
        del data["services"]["ks"]
        self.assert_problem(data, "services.ks: required when KS")
        data = _data()
        data["enable"] = 8
        self.assert_problem(data, "services.ais.dependencies.ks: required")
        data = _data()
        data["enable"] = 1
        self.assert_problem(data, "services.signaling.dependencies.ks: required")
        self.assert_problem(data, "services.signaling.dependencies.ais: required")

    def test_remote_dependencies_satisfy_rules(self) -> None:
        """Signaling alone is valid with remote KS and AIS endpoints."""
        s = self.parse(
            "[services.signaling.dependencies.ks]\n"
            "endpoint = 'http://10.0.0.1:8080'\ntimeout_seconds = 5\n"
            "[services.signaling.dependencies.ais]\n"
            "endpoint = 'http://10.0.0.2:8080/'\n",
            enable=1,
        )
        assert s.services.signaling is not None
        assert s.services.signaling.ais is not None
        self.assertEqual(s.services.signaling.ais.endpoint, "http://10.0.0.2:8080")

    def test_ks_client_rules(self) -> None:
        """A KS client needs an http(s) URL, a timeout and TLS consistency."""
        self.assert_problem(
            _data(
                "[services.ais.dependencies.ks]\nendpoint = 'grpc://x'\n"
                "timeout_seconds = 1\nenable_tls = true\n"
            ),
            "services.ais.dependencies.ks.endpoint: must start with http",
        )
        self.assert_problem(
            _data(
                "[services.ais.dependencies.ks]\nendpoint = 'https://x'\n"
                "timeout_seconds = 1\nenable_tls = true\n"
            ),
            "services.ais.dependencies.ks.tls_domain: required",
        )
        self.assert_problem(
            _data("[services.ais.dependencies.ks]\nendpoint = 'https://x'\n"),
            "services.ais.dependencies.ks.timeout_seconds: missing required key",
        )

    def test_ks_storage_rules(self) -> None:
        """KS storage needs a backend, key TTL and the sqlite table."""
        data = _data()
        del data["services"]["ks"]["storage"]["sqlite"]
        self.assert_problem(data, "services.ks.storage.sqlite: missing required key")
        self.assert_problem(
            _data("[services.ks.storage]\nbackend = 'postgres'"),
            "services.ks.storage.backend: not supported here; set [storage]",
        )
        self.assert_problem(
            _data("[services.ks.storage]\nkey_ttl_seconds = -5"),
            "services.ks.storage.key_ttl_seconds: must be >= 0",
        )

    def test_rate_limit_minimums(self) -> None:
        """Zero rates (which panicked the original) are rejected."""
        self.assert_problem(
            _data("[services.signaling.server.rate_limit.message]\nper_second = 0"),
            "services.signaling.server.rate_limit.message.per_second: must be >= 1",
        )
        self.assert_problem(
            _data("[services.signaling.server.rate_limit.connection]\nburst_size = 0"),
            "services.signaling.server.rate_limit.connection.burst_size: must be >= 1",
        )

    def test_max_acl_principals(self) -> None:
        """The ACL principal bound defaults to 256 and must lie in 1..10000."""
        signaling = self.parse().services.signaling
        assert signaling is not None
        self.assertEqual(signaling.max_acl_principals, 256)
        set_to = "[services.signaling.server]\nmax_acl_principals = {}"
        configured = self.parse(set_to.format(16)).services.signaling
        assert configured is not None
        self.assertEqual(configured.max_acl_principals, 16)
        self.assert_problem(
            _data(set_to.format(0)),
            "services.signaling.server.max_acl_principals: must be >= 1",
        )
        self.assert_problem(
            _data(set_to.format(10001)),
            "services.signaling.server.max_acl_principals: must be <= 10000",
        )

    def test_site_limits_defaults_and_values(self) -> None:
        """bind.http takes request/idle timeouts and a per-IP cap, with defaults."""
        http = self.parse().bind.http
        assert http is not None
        self.assertEqual(
            (http.request_timeout, http.idle_timeout, http.max_connections_per_ip),
            (30.0, 60.0, 256),
        )
        s = self.parse(
            "[bind.http]\nrequest_timeout = 5\nidle_timeout = 7.5\n"
            "max_connections_per_ip = 20\n",
            enable=16,
        )
        assert s.bind.http is not None and s.site_bind is s.bind.http
        self.assertEqual(
            (
                s.bind.http.request_timeout,
                s.bind.http.idle_timeout,
                s.bind.http.max_connections_per_ip,
            ),
            (5.0, 7.5, 20),
        )

    def test_site_limits_bounds(self) -> None:
        """Timeouts outside 1 s-1 h, NaN, caps below 1 and typos are errors."""
        for text, expected in (
            ("request_timeout = 0.5", "bind.http.request_timeout: must be >= 1.0"),
            ("idle_timeout = 7200", "bind.http.idle_timeout: must be <= 3600.0"),
            ("idle_timeout = nan", "bind.http.idle_timeout: must be a number"),
            ("max_connections_per_ip = 0", "max_connections_per_ip: must be >= 1"),
            ("request_timeout = '30'", "request_timeout: expected a number"),
            ("idle_timeot = 30", "bind.http.idle_timeot: unknown key"),
        ):
            self.assert_problem(_data(f"[bind.http]\n{text}\n"), expected)

    def test_site_cap_below_signaling_cap_warns(self) -> None:
        """A site cap below signaling's per-IP WebSocket cap is a warning."""
        s = self.parse("[bind.http]\nmax_connections_per_ip = 50\n")
        self.assertEqual(len(s.warnings), 1)
        self.assertIn("bind.http.max_connections_per_ip", s.warnings[0])
        self.assertEqual(self.parse().warnings, ())
        self.assertEqual(
            self.parse("[bind.http]\nmax_connections_per_ip = 50\n", 16).warnings, ()
        )

    def test_token_ttl_floor(self) -> None:
        """services.ais.server.token_ttl_secs below 60 s is an error; 60 is fine."""
        self.assert_problem(
            _data("[services.ais.server]\ntoken_ttl_secs = 59\n"),
            "services.ais.server.token_ttl_secs: must be >= 60",
        )
        s = self.parse("[services.ais.server]\ntoken_ttl_secs = 60\n")
        assert s.services.ais is not None
        self.assertEqual(s.services.ais.token_ttl_secs, 60)

    def test_reconnect_window_bounds(self) -> None:
        """The reconnect window defaults to 30 s and must lie within 0-3600 s."""
        signaling = self.parse().services.signaling
        assert signaling is not None
        self.assertEqual(signaling.reconnect_window_secs, 30)
        self.assert_problem(
            _data("[services.signaling.server]\nreconnect_window_secs = -1"),
            "services.signaling.server.reconnect_window_secs: must be >= 0",
        )
        self.assert_problem(
            _data("[services.signaling.server]\nreconnect_window_secs = 3601"),
            "services.signaling.server.reconnect_window_secs: must be <= 3600",
        )

    def test_prod_requires_https(self) -> None:
        """Outside dev an HTTPS binding is required, and port 0 is refused in prod."""
        data = _data()
        data["env"] = "prod"
        self.assert_problem(data, "bind.https: required when env is 'prod'")
        data["bind"]["https"] = {
            "domain_name": "x",
            "advertised_ip": "1.2.3.4",
            "ip": "0.0.0.0",
            "port": 0,
            "cert": "/c.pem",
            "key": "/k.pem",
        }
        self.assert_problem(data, "bind.https.port: must not be 0 in prod")

    def test_prod_logging_warnings(self) -> None:
        """Console or unrotated logs in prod are warnings, not errors."""
        data = _data()
        data["env"] = "prod"
        data["bind"]["https"] = {
            "domain_name": "x",
            "advertised_ip": "1.2.3.4",
            "ip": "0.0.0.0",
            "port": 443,
            "cert": "/c.pem",
            "key": "/k.pem",
        }
        s = parse_config(data)
        self.assertTrue(any("console" in w for w in s.warnings))
        data["observability"] = {"log": {"output": "file"}}
        s = parse_config(data)
        self.assertTrue(any("rotate" in w for w in s.warnings))

    def test_ice_tls_needs_cert(self) -> None:
        """bind.ice.tls_port needs cert and key."""
        self.assert_problem(
            _data("[bind.ice]\ntls_port = 5349"), "bind.ice.tls_port: needs"
        )

    def test_errors_are_all_collected(self) -> None:
        """Several independent problems are reported together."""
        data = _data("colour = 1\n[turn]\nadvertised_ip = 'x'")
        data["env"] = "nope"
        with self.assertRaises(ConfigError) as cm:
            parse_config(data)
        self.assertGreaterEqual(len(cm.exception.problems), 3)

    def test_load_config_bad_files(self) -> None:
        """Missing, non-UTF-8 and broken TOML files give one clear error."""
        tmp = Path(self.mktemp())
        tmp.mkdir()
        with self.assertRaises(ConfigError) as cm:
            load_config(tmp / "missing.toml")
        self.assertIn("cannot read", cm.exception.problems[0])
        broken = tmp / "broken.toml"
        broken.write_text("name = [unclosed\n")
        with self.assertRaises(ConfigError) as cm:
            load_config(broken)
        self.assertIn("invalid TOML", cm.exception.problems[0])
        binary = tmp / "binary.toml"
        binary.write_bytes(b"\xff\xfe\x00")
        with self.assertRaises(ConfigError) as cm:
            load_config(binary)
        self.assertIn("not UTF-8", cm.exception.problems[0])


class StorageConfigTests(SynchronousTestCase):
    """``[storage]``: SQLite by default, PostgreSQL with its keys checked."""

    def parse(self, storage: str) -> Settings:
        return parse_config(_data("[storage]\n" + storage))

    def problems(self, storage: str) -> list[str]:
        with self.assertRaises(ConfigError) as cm:
            self.parse(storage)
        return list(cm.exception.problems)

    def test_sqlite_is_the_default(self) -> None:
        """Without [storage] (or with backend sqlite) nothing needs PostgreSQL."""
        settings = parse_config(_data())
        self.assertEqual(settings.storage.backend, "sqlite")
        self.assertIsNone(settings.storage.postgresql)
        self.assertIsNone(self.parse('backend = "sqlite"').storage.postgresql)

    def test_postgresql_keys(self) -> None:
        """A DSN and the separate keys are read; the password stays a Secret."""
        pg = self.parse(
            'backend = "postgresql"\n'
            'dsn = "postgresql://actrix@db.example:5433/actrix"\n'
            'password = "s3cret-pw"\nsslmode = "verify-full"\npool_size = 8\n'
            'statement_timeout = 2.5\nschema_prefix = "prod_"'
        ).storage.postgresql
        assert pg is not None
        self.assertEqual((pg.pool_size, pg.statement_timeout), (8, 2.5))
        self.assertEqual((pg.sslmode, pg.schema_prefix), ("verify-full", "prod_"))
        assert pg.password is not None
        self.assertEqual(pg.password.value, "s3cret-pw")
        self.assertNotIn("s3cret-pw", repr(pg))

    def test_password_from_file_and_environment(self) -> None:
        """password_file is read (one trailing newline dropped); password_env too."""
        path = Path(self.mktemp())
        path.write_text("from-file\n")
        pg = self.parse(
            f'backend = "postgresql"\ndbname = "a"\npassword_file = "{path}"'
        ).storage.postgresql
        assert pg is not None and pg.password is not None
        self.assertEqual(pg.password.value, "from-file")
        os.environ["ACTRIX_TEST_PG_PW"] = "from-env"
        self.addCleanup(os.environ.pop, "ACTRIX_TEST_PG_PW", None)
        pg = self.parse(
            'backend = "postgresql"\ndbname = "a"\npassword_env = "ACTRIX_TEST_PG_PW"'
        ).storage.postgresql
        assert pg is not None and pg.password is not None
        self.assertEqual(pg.password.value, "from-env")

    def test_bad_values_are_named_by_key(self) -> None:
        """Each mistake is reported with its dotted key, never with the secret."""
        problems = self.problems(
            'backend = "postgresql"\n'
            'dsn = "host=db passwrd=hunter22 =oops"\n'
            'password = "x"\npassword_env = "NOT_SET_ANYWHERE_42"\n'
            'sslmode = "maybe"\npool_size = 0\nfoo = 1'
        )
        text = "\n".join(problems)
        self.assertIn("storage.dsn: not a libpq connection string", text)
        self.assertNotIn("hunter22", text)
        self.assertIn("storage.password_env: give only one of", text)
        self.assertIn("storage.sslmode: must be one of", text)
        self.assertIn("storage.pool_size: must be >= 1", text)
        self.assertIn("storage.foo: unknown key", text)

    def test_missing_sources(self) -> None:
        """No DSN and no dbname, an unset variable, an unreadable file: errors."""
        self.assertIn(
            "storage.dsn: backend 'postgresql' needs storage.dsn or storage.dbname",
            self.problems('backend = "postgresql"'),
        )
        self.assertIn(
            "storage.password_env: environment variable NOT_SET_ANYWHERE_42 is not set",
            self.problems(
                'backend = "postgresql"\ndbname = "a"\n'
                'password_env = "NOT_SET_ANYWHERE_42"'
            ),
        )
        text = "\n".join(
            self.problems(
                'backend = "postgresql"\ndbname = "a"\n'
                'password_file = "/nonexistent/pw"'
            )
        )
        self.assertIn("storage.password_file: cannot read /nonexistent/pw", text)

    def test_postgresql_keys_need_the_backend(self) -> None:
        """PostgreSQL keys under the sqlite backend are refused, not ignored."""
        self.assertIn(
            "storage.dsn: only used with backend = 'postgresql'",
            self.problems('dsn = "dbname=a"'),
        )
        self.assertIn(
            "storage.backend: must be 'sqlite' or 'postgresql'",
            self.problems('backend = "postgres"'),
        )


class ClusterConfigTests(SynchronousTestCase):
    """``[cluster]``: workers and node_id, checked against the rest."""

    def test_defaults(self) -> None:
        """One worker and no configured name."""
        cluster = parse_config(_data()).cluster
        self.assertEqual((cluster.workers, cluster.node_id), (1, None))

    def test_workers_and_node_id(self) -> None:
        """Workers with Redis and without rooms; a node id of safe characters."""
        data = _data(
            '[redis]\nhost = "r"\n[cluster]\nworkers = 4\nnode_id = "edge-1.a"'
        )
        data["enable"] = 31
        cluster = parse_config(data).cluster
        self.assertEqual((cluster.workers, cluster.node_id), (4, "edge-1.a"))

    def test_bad_values_are_named_by_key(self) -> None:
        """Out of range, bad characters, no Redis, rooms: each named."""
        for extra, expected in [
            ("[cluster]\nworkers = 0", "cluster.workers: must be >= 1"),
            ("[cluster]\nworkers = 65", "cluster.workers: must be <= 64"),
            ('[cluster]\nnode_id = "a b"', "cluster.node_id: 1 to 64"),
            ('[cluster]\nnode_id = ""', "cluster.node_id: 1 to 64"),
            ("[cluster]\nworkers = 2", "add a [redis] table"),
            ("[cluster]\nbogus = 1", "cluster.bogus: unknown key"),
        ]:
            with self.assertRaises(ConfigError) as cm:
                parse_config(_data(extra))
            self.assertIn(expected, "\n".join(cm.exception.problems), extra)
        data = _data('[redis]\nhost = "r"\n[cluster]\nworkers = 2')
        data["enable"] = 63
        with self.assertRaises(ConfigError) as cm:
            parse_config(data)
        self.assertIn("run rooms (enable bit 32) with workers = 1", str(cm.exception))


class RedisConfigTests(SynchronousTestCase):
    """``[redis]``: absent by default; a URL or separate keys, errors by key."""

    def parse(self, redis: str) -> Settings:
        return parse_config(_data("[redis]\n" + redis))

    def problems(self, redis: str) -> str:
        with self.assertRaises(ConfigError) as cm:
            self.parse(redis)
        return "\n".join(cm.exception.problems)

    def test_no_table_means_no_redis(self) -> None:
        """Without [redis] the directory stays in this process."""
        self.assertIsNone(parse_config(_data()).redis)

    def test_url_and_keys(self) -> None:
        """The URL gives host, port, db and password; a separate key wins."""
        redis = self.parse(
            'url = "redis://:p%40ss@cache.example:6380/3"\nkey_prefix = "prod:"'
        ).redis
        assert redis is not None and redis.password is not None
        self.assertEqual(
            (redis.host, redis.port, redis.db, redis.key_prefix),
            ("cache.example", 6380, 3, "prod:"),
        )
        self.assertEqual(redis.password.value, "p@ss")
        self.assertNotIn("p@ss", repr(redis))
        redis = self.parse('url = "redis://cache.example/3"\nport = 7000\ndb = 1').redis
        assert redis is not None
        self.assertEqual((redis.port, redis.db, redis.password), (7000, 1, None))

    def test_tls(self) -> None:
        """rediss:// or tls = true turns TLS on; tls_ca needs it and TCP."""
        redis = self.parse('url = "rediss://cache.example:6380/0"').redis
        assert redis is not None
        self.assertEqual((redis.tls, redis.tls_ca), (True, None))
        redis = self.parse(
            'host = "cache.example"\ntls = true\ntls_ca = "/ca.pem"'
        ).redis
        assert redis is not None
        self.assertEqual((redis.tls, str(redis.tls_ca)), (True, "/ca.pem"))
        text = self.problems('host = "cache.example"\ntls_ca = "/ca.pem"')
        self.assertIn("redis.tls_ca: needs tls = true", text)
        text = self.problems('host = "/run/r.sock"\ntls = true')
        self.assertIn("redis.tls: TLS is for TCP connections", text)

    def test_unix_socket(self) -> None:
        """A unix:// URL, or a host starting with '/', is a socket path."""
        redis = self.parse('url = "unix:///run/redis/redis.sock?db=2"').redis
        assert redis is not None
        self.assertEqual(
            (redis.host, redis.db, redis.unix), ("/run/redis/redis.sock", 2, True)
        )
        redis = self.parse('host = "/tmp/r.sock"').redis
        assert redis is not None
        self.assertTrue(redis.unix)

    def test_password_from_environment(self) -> None:
        """password_env is read into a Secret."""
        os.environ["ACTRIX_TEST_REDIS_PW"] = "from-env"
        self.addCleanup(os.environ.pop, "ACTRIX_TEST_REDIS_PW", None)
        redis = self.parse('host = "h"\npassword_env = "ACTRIX_TEST_REDIS_PW"').redis
        assert redis is not None and redis.password is not None
        self.assertEqual(redis.password.value, "from-env")

    def test_bad_values_are_named_by_key(self) -> None:
        """Each mistake has its dotted key; a bad URL is not echoed."""
        text = self.problems(
            'url = "http://:hunter22@x"\nport = 0\ndb = 16\nkey_prefix = "a b"\n'
            'password = "x"\npassword_env = "Y"\nfoo = 1'
        )
        self.assertIn("redis.url: scheme must be one of redis, rediss, unix", text)
        self.assertNotIn("hunter22", text)
        self.assertIn("redis.port: must be >= 1", text)
        self.assertIn("redis.db: must be <= 15", text)
        self.assertIn("redis.key_prefix: only ASCII letters", text)
        self.assertIn("redis.password_env: give only one of", text)
        self.assertIn("redis.foo: unknown key", text)
        self.assertIn("redis.url: not a Redis URL", self.problems('url = "redis:///0"'))
        self.assertIn("redis.host: give redis.url or redis.host", self.problems(""))
