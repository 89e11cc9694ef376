"""Sessions, the login limiter, the time series rings, redaction and static files."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

import attrs
import treq
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from actrix.admin import sessions as sessions_module
from actrix.admin.console import AdminRoot, ListenerRoot
from actrix.admin.redact import REDACTED, changed_keys, redacted_config
from actrix.admin.series import (
    MINUTE_SLOTS,
    SECOND_SLOTS,
    SeriesSampler,
    read_collectors,
)
from actrix.admin.sessions import LoginLimiter, Sessions
from actrix.core.config import parse_config
from tests.daemon import config_text


class SessionStoreTests(SynchronousTestCase):
    def test_bounded_and_expiring(self) -> None:
        """At most max sessions (oldest dropped); each ends at its TTL."""
        clock = Clock()
        live = Sessions(clock, 10, 2)
        first, _ = live.open(1, "a", False)
        second, _ = live.open(2, "b", True)
        third, _ = live.open(3, "c", False)
        self.assertEqual(len(live), 2)
        self.assertIsNone(live.get(first))
        self.assertEqual(live.get(second).name, "b")  # type: ignore[union-attr]
        clock.advance(10)
        self.assertIsNone(live.get(third))
        self.assertIsNone(live.get("not-a-cookie"))

    def test_close_token(self) -> None:
        """Revoking a token ends each of its sessions, and only those."""
        live = Sessions(Clock(), 10, 8)
        a, _ = live.open(1, "a", False)
        b, _ = live.open(1, "a", False)
        c, _ = live.open(2, "b", False)
        live.close_token(1)
        self.assertEqual([live.get(x) is None for x in (a, b, c)], [True, True, False])


class LimiterTests(SynchronousTestCase):
    def test_window_and_reset(self) -> None:
        """Failures up to the limit pass; then retry_after until the window ends."""
        clock = Clock()
        limiter = LoginLimiter(clock, 3, 60)
        for _ in range(3):
            self.assertIsNone(limiter.retry_after("ip"))
            limiter.failed("ip")
        self.assertEqual(limiter.retry_after("ip"), 60)
        self.assertIsNone(limiter.retry_after("other"))
        clock.advance(59.5)
        self.assertEqual(limiter.retry_after("ip"), 1)
        clock.advance(1)
        self.assertIsNone(limiter.retry_after("ip"))
        limiter.failed("x")
        limiter.succeeded("x")
        self.assertEqual(len(limiter), 0)

    def test_memory_is_bounded(self) -> None:
        """A spray from more addresses than MAX_TRACKED keeps the table bounded."""
        self.patch(sessions_module, "MAX_TRACKED", 50)
        limiter = LoginLimiter(Clock(), 3, 60)
        for i in range(500):
            limiter.failed(f"10.0.{i // 256}.{i % 256}")
        self.assertEqual(len(limiter), 50)


class SeriesTests(SynchronousTestCase):
    def test_read_collectors_sums_families_and_selects_labels(self) -> None:
        """Relays/s counts signaling relays that were forwarded, not refused ones;
        connections add signaling and room sockets."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        class Collector:
            def collect(self) -> Any:
                relays = CounterMetricFamily(
                    "actrix_signaling_relays", "", labels=["outcome"]
                )
                relays.add_metric(["forwarded"], 7)
                relays.add_metric(["no_target"], 100)
                yield relays
                for name, value in (
                    ("actrix_signaling_connections", 2),
                    ("actrix_rooms_connections", 3),
                ):
                    gauge = GaugeMetricFamily(name, "")
                    gauge.add_metric([], value)
                    yield gauge

        totals = read_collectors([Collector()])
        self.assertEqual(totals["relays_per_sec"], 7.0)
        self.assertEqual(totals["connections"], 5.0)
        self.assertEqual(totals["allocations"], 0.0)

    def test_rates_gauges_and_minutes(self) -> None:
        """Gauges are sampled as they are, counters as rates; minutes are means."""
        clock = Clock()
        clock.advance(600)
        values = {"connections": 1.0, "relays_per_sec": 0.0}
        sampler = SeriesSampler(clock, lambda: dict(values))
        sampler.start()
        for second in range(1, 121):
            values["connections"] = 1.0 if second <= 60 else 3.0
            values["relays_per_sec"] = 10.0 * second  # a counter: +10/s
            clock.advance(1)
        sampler.stop()
        ring = sampler.seconds.read(0)
        self.assertEqual(ring["start"], 600)
        self.assertEqual(len(ring["series"]["connections"]), 121)
        self.assertEqual(ring["series"]["relays_per_sec"][0], None)
        self.assertEqual(set(ring["series"]["relays_per_sec"][2:]), {10.0})
        minutes = sampler.minutes.read(0)
        self.assertEqual(minutes["step"], 60)
        self.assertEqual(minutes["start"], 600)
        # Minute 11 (660-719 s) saw the 1.0 of 660 s and 59 samples of 3.0.
        self.assertEqual(
            minutes["series"]["connections"][:2], [1.0, round((1 + 59 * 3) / 60, 3)]
        )
        later = sampler.seconds.read(700)
        self.assertEqual(later["start"], 700)

    def test_memory_is_fixed(self) -> None:
        """Hours of samples leave both rings at their fixed lengths."""
        clock = Clock()
        sampler = SeriesSampler(clock, lambda: {"actors": 2.0})
        for _ in range(3 * 3600):
            clock.advance(1)
            sampler.sample()
        ring = sampler.seconds.read(0)
        self.assertEqual(len(ring["series"]["actors"]), SECOND_SLOTS)
        self.assertEqual(ring["start"], int(clock.seconds()) - SECOND_SLOTS + 1)
        self.assertEqual(len(sampler.minutes._stamps), MINUTE_SLOTS)
        self.assertEqual(len(sampler.minutes.read(0)["series"]["actors"]), 181)

    def test_empty_rings_answer_every_series(self) -> None:
        """Before the first sample each series is an empty list."""
        sampler = SeriesSampler(Clock(), dict)
        for ring in (sampler.seconds, sampler.minutes):
            answer = ring.read(120)
            self.assertEqual(answer["start"], 120)
            self.assertEqual(len(answer["series"]), 7)
            self.assertEqual(set(map(len, answer["series"].values())), {0})

    def test_a_failing_source_is_logged(self) -> None:
        """An exception while reading is logged and sampling goes on."""

        def broken() -> dict[str, float]:
            raise RuntimeError("boom")

        sampler = SeriesSampler(Clock(), broken)
        sampler.sample()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(math.isnan(sampler.seconds._values["actors"][0]))


SECRETS = {
    "actrix_shared_key": "S1-shared-key-value-000",
    "kek": "S2-kek-value-000000000000000000000000000000000000000000000000000",
    "turn": "S3-turn-rest-secret",
    "user": "S4-user-password",
    "metrics": "S5-metrics-token-value",
    "api": "S6-rooms-api-token-value",
    "pg": "S7-postgres-password",
    "redis": "S8-redis-password",
}


def _secret_config(directory: Path) -> str:
    text = config_text(directory, enable=63).replace(
        "test-shared-key-0123456789abcdef", SECRETS["actrix_shared_key"]
    )
    text = text.replace('"test-rest-secret"', f'"{SECRETS["turn"]}"')
    text = text.replace('"alice-password"', f'"{SECRETS["user"]}"')
    text = text.replace(
        "[services.ks]\ntolerance_seconds = 3600",
        f'[services.ks]\ntolerance_seconds = 3600\nkek = "{SECRETS["kek"]}"',
    )
    return (
        text
        + f"""
[observability.metrics]
token = "{SECRETS["metrics"]}"

[services.rooms]
api_token = "{SECRETS["api"]}"

[storage]
backend = "postgresql"
dsn = "postgresql://u:{SECRETS["pg"]}@127.0.0.1/db"
password = "{SECRETS["pg"]}"

[redis]
url = "redis://:{SECRETS["redis"]}@127.0.0.1:6379/0"

[admin]
enabled = true
"""
    )


class RedactTests(SynchronousTestCase):
    def test_no_secret_value_appears(self) -> None:
        """The redacted config holds none of the config's secret values."""
        settings = parse_config(tomllib.loads(_secret_config(Path("/tmp/x"))))
        self.assertEqual(settings.services.ks.kek.value, SECRETS["kek"])  # type: ignore[union-attr]
        text = json.dumps(redacted_config(settings))
        for name, value in SECRETS.items():
            self.assertNotIn(value, text, name)
            self.assertNotIn(value[3:12], text, name)
        self.assertIn(REDACTED, text)
        self.assertIn('"name": "actrix-test"', text)

    def test_changed_keys(self) -> None:
        """Config diffs name changed keys, secrets included, never their values."""
        settings = parse_config(tomllib.loads(_secret_config(Path("/tmp/x"))))
        fresh = attrs.evolve(
            settings,
            observability=attrs.evolve(settings.observability, filter_level="debug"),
            actrix_shared_key=attrs.evolve(
                settings.actrix_shared_key, value="other!" * 4
            ),
        )
        self.assertEqual(
            changed_keys(settings, fresh),
            ["actrix_shared_key", "observability.filter_level"],
        )
        self.assertEqual(changed_keys(settings, settings), [])


class MissingConsoleTests(SynchronousTestCase):
    def test_missing_console_is_404(self) -> None:
        """Without installed console files /admin/ is a clear 404."""
        stub: Any = StubTreq(ListenerRoot(AdminRoot(Resource(), Path(self.mktemp()))))
        d = stub.get("http://127.0.0.1/admin/")
        stub.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 404)
        self.assertIn(b"not installed", self.successResultOf(treq.content(response)))
