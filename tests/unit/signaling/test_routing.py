"""Tests for actrix.signaling.routing: the route candidates algorithm (§8.1-§8.3)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.actrid import actr_id_repr, new_actr_id, type_key
from actrix.proto import actr_pb2
from actrix.signaling.compat import CompatibilityCache, InlineAnalyzer, analyze_specs
from actrix.signaling.routing import RouteEntry, haversine_km, route_candidates

Criteria = actr_pb2.RouteCandidatesRequest.NodeSelectionCriteria
CALLER = new_actr_id(1, 0xC0FFEE, "acme", "client")
NOW = 10_000.0

ECHO = """\
syntax = "proto3";
package acme.echo;
message Ping { string text = 1; }
service Echo { rpc Say(Ping) returns (Ping); }
"""


def make_spec(fingerprint: str, content: str = ECHO) -> actr_pb2.ServiceSpec:
    """Build a one-package ServiceSpec."""
    return actr_pb2.ServiceSpec(
        name="echo",
        fingerprint=fingerprint,
        protobufs=[
            actr_pb2.ServiceSpec.Protobuf(
                package="acme.echo", content=content, fingerprint="pkg"
            )
        ],
    )


GREEN = make_spec("fp-green", "// only a comment differs\n" + ECHO)
YELLOW = make_spec("fp-yellow", ECHO + "message Extra { int32 n = 1; }\n")
RED = make_spec("fp-red", ECHO.replace("string text = 1;", "bytes text = 1;"))
CLIENT = make_spec("fp-client")


def make_entry(
    serial: int,
    version: str | None = None,
    *,
    realm: int = 1,
    manufacturer: str = "acme",
    name: str = "echo",
    spec: actr_pb2.ServiceSpec | None = None,
    ws: str | None = None,
    **fields: Any,
) -> RouteEntry:
    """Build a live registry entry of acme:echo (heartbeat = NOW)."""
    actr_id = new_actr_id(realm, serial, manufacturer, name, version)
    fields.setdefault("last_heartbeat", NOW)
    return RouteEntry(
        actr_id=actr_id,
        type_key=type_key(actr_id.type),
        service_name=spec.name if spec else f"{manufacturer}/{name}",
        service_spec=spec,
        ws_address=ws,
        **fields,
    )


def allow_all(realm_id: int, from_key: str, to_key: str) -> bool:
    """An ACL that allows everything."""
    return True


def no_client_spec(
    target: actr_pb2.ActrType, fingerprint: str
) -> actr_pb2.ServiceSpec | None:
    """A spec store that knows nothing."""
    return None


def request(
    version: str | None = None,
    *,
    fingerprint: str = "",
    count: int | None = None,
    factors: Sequence[Criteria.NodeRankingFactor] = (),
    health: int | None = None,
    dependency: int | None = None,
    location: tuple[float | None, float | None] | None = None,
) -> actr_pb2.RouteCandidatesRequest:
    """Build a RouteCandidatesRequest for acme:echo."""
    target = actr_pb2.ActrType(manufacturer="acme", name="echo")
    if version is not None:
        target.version = version
    req = actr_pb2.RouteCandidatesRequest(
        target_type=target, client_fingerprint=fingerprint
    )
    if count is not None:
        req.criteria.candidate_count = count
        req.criteria.ranking_factors.extend(factors)
        if health is not None:
            req.criteria.minimal_health_requirement = health  # type: ignore[assignment]  # int enum value
        if dependency is not None:
            req.criteria.minimal_dependency_requirement = dependency  # type: ignore[assignment]  # int enum value
    if location is not None:
        req.client_location.SetInParent()
        if location[0] is not None:
            req.client_location.latitude = location[0]
        if location[1] is not None:
            req.client_location.longitude = location[1]
    return req


class CountingAnalyzer(InlineAnalyzer):
    """InlineAnalyzer that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def analyze(
        self,
        base: actr_pb2.ServiceSpec,
        candidate: actr_pb2.ServiceSpec,
        analyzed_at: int,
    ) -> actr_pb2.CompatibilityAnalysisResult:
        """Count, then analyze on this thread."""
        self.calls += 1
        return await super().analyze(base, candidate, analyzed_at)


class RoutingTestCase(SynchronousTestCase):
    """Shared fixture: a fake clock, an inline analyzer and a cache."""

    def setUp(self) -> None:
        """Create the cache on a fake clock."""
        self.clock = task.Clock()
        self.clock.advance(NOW)
        self.analyzer = CountingAnalyzer()
        self.compat = CompatibilityCache(self.clock, self.analyzer)

    def route(
        self,
        req: actr_pb2.RouteCandidatesRequest,
        entries: Sequence[RouteEntry],
        acl: Callable[[int, str, str], bool] = allow_all,
        client_spec: Callable[
            [actr_pb2.ActrType, str], actr_pb2.ServiceSpec | None
        ] = no_client_spec,
        now: float = NOW,
    ) -> actr_pb2.RouteCandidatesResponse.RouteCandidatesOk:
        """Run route_candidates synchronously and return the success payload."""
        d = Deferred.fromCoroutine(
            route_candidates(req, CALLER, entries, acl, client_spec, self.compat, now)
        )
        response = self.successResultOf(d)
        self.assertEqual(response.WhichOneof("result"), "success")
        return response.success

    def serials(self, ids: Sequence[actr_pb2.ActrId]) -> list[int]:
        """Return the serial numbers of a list of ids."""
        return [i.serial_number for i in ids]


class CandidateSetTests(RoutingTestCase):
    """§8.1: version group, liveness, realm and ACL filtering, ws_address_map."""

    def test_latest_version_is_the_string_maximum(self) -> None:
        """Without a target version the string-greatest version wins."""
        entries = [
            make_entry(1),
            make_entry(2, "1"),
            make_entry(3, "2"),
            make_entry(4, "alpha"),
            make_entry(5, "alpha"),
        ]
        self.assertEqual(
            self.serials(self.route(request(), entries).candidates), [4, 5]
        )

    def test_string_order_puts_nine_above_ten(self) -> None:
        """Versions compare as strings: "9" > "2" > "10" > "1"."""
        entries = [make_entry(1, "10"), make_entry(2, "9"), make_entry(3, "2")]
        self.assertEqual(self.serials(self.route(request(), entries).candidates), [2])

    def test_any_version_beats_none(self) -> None:
        """Entries without a version form the lowest group."""
        entries = [make_entry(1), make_entry(2, "1"), make_entry(3, "  ")]
        self.assertEqual(self.serials(self.route(request(), entries).candidates), [2])

    def test_unversioned_group_when_nothing_has_a_version(self) -> None:
        """Absent and blank versions are one group."""
        entries = [make_entry(1), make_entry(2, ""), make_entry(3, " \t")]
        self.assertEqual(
            self.serials(self.route(request(), entries).candidates), [1, 2, 3]
        )

    def test_versions_are_trimmed_before_grouping(self) -> None:
        """ " 2 " and "2" are the same version."""
        entries = [make_entry(1, " 2 "), make_entry(2, "2"), make_entry(3, "10")]
        self.assertEqual(
            self.serials(self.route(request(), entries).candidates), [1, 2]
        )

    def test_exact_version_match_with_trimming(self) -> None:
        """A target version keeps only entries whose trimmed version equals it."""
        entries = [
            make_entry(1, "1"),
            make_entry(2, " 1\n"),
            make_entry(3, "10"),
            make_entry(4, "2"),
            make_entry(5),
        ]
        self.assertEqual(
            self.serials(self.route(request(" 1 "), entries).candidates), [1, 2]
        )

    def test_blank_target_version_means_latest(self) -> None:
        """A present but blank target version selects the latest group."""
        entries = [make_entry(1, "1"), make_entry(2, "2")]
        self.assertEqual(
            self.serials(self.route(request("  "), entries).candidates), [2]
        )

    def test_other_types_are_ignored(self) -> None:
        """Only entries with the target's manufacturer and name are candidates."""
        entries = [
            make_entry(1, "9", name="other"),
            make_entry(2, "9", manufacturer="evil"),
            make_entry(3, "1"),
        ]
        self.assertEqual(self.serials(self.route(request(), entries).candidates), [3])

    def test_offline_entries_are_never_candidates(self) -> None:
        """An entry whose socket is closed is skipped, also for version choice."""
        entries = [make_entry(1, "2", online=False), make_entry(2, "1")]
        ok = self.route(request(), entries)
        self.assertEqual(self.serials(ok.candidates), [2])
        self.assertEqual(self.serials([w.candidate_id for w in ok.ws_address_map]), [2])

    def test_expired_heartbeats_are_skipped(self) -> None:
        """Entries silent for more than 300 s are expired even before the sweep."""
        entries = [
            make_entry(1, last_heartbeat=NOW - 300),
            make_entry(2, last_heartbeat=NOW - 300.5),
        ]
        self.assertEqual(self.serials(self.route(request(), entries).candidates), [1])

    def test_acl_filter_uses_type_keys(self) -> None:
        """The ACL is asked (caller realm, caller type key, entry type key)."""
        calls: list[tuple[int, str, str]] = []

        def acl(realm_id: int, from_key: str, to_key: str) -> bool:
            calls.append((realm_id, from_key, to_key))
            return to_key == "acme:echo:2"

        entries = [make_entry(1, " 2"), make_entry(2, "2")]
        denied = self.route(request("2"), entries, acl=lambda *a: False)
        self.assertEqual(list(denied.candidates), [])
        self.assertEqual(list(denied.ws_address_map), [])
        ok = self.route(request("2"), entries, acl=acl)
        self.assertEqual(self.serials(ok.candidates), [1, 2])
        self.assertEqual(calls, [(1, "acme:client", "acme:echo:2")] * 2)

    def test_acl_default_deny(self) -> None:
        """With no matching ACL row an entry is denied."""
        rows = {(1, "acme:client", "acme:echo:1"): True}

        def acl(realm_id: int, from_key: str, to_key: str) -> bool:
            return rows.get((realm_id, from_key, to_key), False)

        self.assertEqual(
            self.serials(
                self.route(request("1"), [make_entry(1, "1")], acl).candidates
            ),
            [1],
        )
        self.assertEqual(
            list(self.route(request("2"), [make_entry(2, "2")], acl).candidates), []
        )

    def test_other_realms_are_excluded(self) -> None:
        """Entries outside the caller's realm are dropped even if the ACL allows."""
        seen: list[int] = []

        def acl(realm_id: int, from_key: str, to_key: str) -> bool:
            seen.append(realm_id)
            return True

        entries = [make_entry(1, realm=2), make_entry(2, realm=1)]
        self.assertEqual(
            self.serials(self.route(request(), entries, acl).candidates), [2]
        )
        self.assertEqual(seen, [1])

    def test_ws_address_map_precedes_filters_and_limit(self) -> None:
        """Every ACL-allowed entry is in ws_address_map, filtered or not."""
        entries = [
            make_entry(1, ws="ws://a", availability=3),
            make_entry(2),
            make_entry(3, ws="ws://c", availability=0),
        ]
        ok = self.route(request(count=0, health=0), entries)
        self.assertEqual(list(ok.candidates), [])
        self.assertEqual(
            [
                (w.candidate_id.serial_number, w.HasField("ws_address"))
                for w in ok.ws_address_map
            ],
            [(1, True), (2, False), (3, True)],
        )
        self.assertEqual(ok.ws_address_map[0].ws_address, "ws://a")
        self.assertEqual(ok.ws_address_map[0].candidate_id, entries[0].actr_id)


class RankingTests(RoutingTestCase):
    """§8.2: filters, stable sorts by ranking factor, limit."""

    def test_no_criteria_returns_all_in_registry_order(self) -> None:
        """Without criteria every candidate is returned and nothing is negotiated."""
        entries = [make_entry(3), make_entry(1), make_entry(2)]
        ok = self.route(request(), entries)
        self.assertEqual(self.serials(ok.candidates), [3, 1, 2])
        self.assertEqual(list(ok.compatibility_info), [])
        self.assertFalse(ok.HasField("has_exact_match"))
        self.assertFalse(ok.HasField("is_sub_healthy"))

    def test_criteria_response_has_no_negotiation_fields(self) -> None:
        """With criteria, has_exact_match and is_sub_healthy stay absent."""
        ok = self.route(request(count=5), [make_entry(1)])
        self.assertFalse(ok.HasField("has_exact_match"))
        self.assertFalse(ok.HasField("is_sub_healthy"))
        self.assertEqual(list(ok.compatibility_info), [])

    def test_candidate_count_limits(self) -> None:
        """The first candidate_count entries are returned; 0 gives none."""
        entries = [make_entry(i) for i in range(1, 5)]
        self.assertEqual(
            self.serials(self.route(request(count=2), entries).candidates), [1, 2]
        )
        self.assertEqual(list(self.route(request(count=0), entries).candidates), [])
        self.assertEqual(len(self.route(request(count=99), entries).candidates), 4)

    def test_health_filter_strict(self) -> None:
        """minimal_health_requirement FULL keeps only FULL entries (unknown dropped)."""
        entries = [
            make_entry(1, availability=1),
            make_entry(2),
            make_entry(3, availability=0),
        ]
        ok = self.route(request(count=9, health=actr_pb2.FULL), entries)
        self.assertEqual(self.serials(ok.candidates), [3])

    def test_health_filter_keeps_unknown_and_sorts(self) -> None:
        """From DEGRADED up, unknown entries pass and sort like OVERLOADED."""
        entries = [
            make_entry(1),
            make_entry(2, availability=2),
            make_entry(3, availability=1),
            make_entry(4, availability=3),
            make_entry(5, availability=0),
            make_entry(6, availability=1),
        ]
        degraded = self.route(request(count=9, health=actr_pb2.DEGRADED), entries)
        self.assertEqual(self.serials(degraded.candidates), [5, 3, 6, 1])
        everything = self.route(request(count=9, health=actr_pb2.UNAVAILABLE), entries)
        self.assertEqual(self.serials(everything.candidates), [5, 3, 6, 1, 2, 4])

    def test_dependency_filter(self) -> None:
        """Dependency state is never reported: kept iff the requirement is >= 1."""
        entries = [make_entry(1), make_entry(2, availability=0)]
        healthy = self.route(request(count=9, dependency=actr_pb2.HEALTHY), entries)
        self.assertEqual(list(healthy.candidates), [])
        warning = self.route(request(count=9, dependency=actr_pb2.WARNING), entries)
        self.assertEqual(self.serials(warning.candidates), [1, 2])

    def test_power_reserve_descending_missing_last(self) -> None:
        """MAXIMUM_POWER_RESERVE: most reserve first; unreported and NaN last."""
        entries = [
            make_entry(1),
            make_entry(2, power_reserve=0.2),
            make_entry(3, power_reserve=math.nan),
            make_entry(4, power_reserve=0.9),
            make_entry(5, power_reserve=0.2),
        ]
        ok = self.route(
            request(count=9, factors=[Criteria.MAXIMUM_POWER_RESERVE]), entries
        )
        self.assertEqual(self.serials(ok.candidates), [4, 2, 5, 1, 3])

    def test_mailbox_backlog_ascending_missing_last(self) -> None:
        """MINIMUM_MAILBOX_BACKLOG: smallest backlog first; unreported last."""
        entries = [
            make_entry(1),
            make_entry(2, mailbox_backlog=10.0),
            make_entry(3, mailbox_backlog=0.0),
        ]
        ok = self.route(
            request(count=9, factors=[Criteria.MINIMUM_MAILBOX_BACKLOG]), entries
        )
        self.assertEqual(self.serials(ok.candidates), [3, 2, 1])

    def test_nearest_by_haversine_distance(self) -> None:
        """NEAREST with client coordinates: closest first, no location last."""
        berlin, paris, tokyo = (52.52, 13.40), (48.86, 2.35), (35.68, 139.69)
        entries = [
            make_entry(1, location=tokyo),
            make_entry(2),
            make_entry(3, location=paris),
            make_entry(4, location=berlin),
        ]
        ok = self.route(
            request(count=9, factors=[Criteria.NEAREST], location=berlin), entries
        )
        self.assertEqual(self.serials(ok.candidates), [4, 3, 1, 2])

    def test_nearest_without_client_coordinates(self) -> None:
        """NEAREST without both client coordinates puts located entries first."""
        entries = [make_entry(1), make_entry(2, location=(1.0, 2.0)), make_entry(3)]
        for location in (None, (10.0, None), (None, 10.0)):
            ok = self.route(
                request(count=9, factors=[Criteria.NEAREST], location=location), entries
            )
            self.assertEqual(self.serials(ok.candidates), [2, 1, 3])

    def test_haversine(self) -> None:
        """Berlin-Paris is about 878 km on a 6371 km sphere."""
        distance = haversine_km((52.52, 13.40), (48.86, 2.35))
        self.assertLess(abs(distance - 877.5), 1.0)
        self.assertEqual(haversine_km((1.0, 1.0), (1.0, 1.0)), 0.0)

    def test_client_affinity(self) -> None:
        """CLIENT_AFFINITY: entries whose sticky ids hold the caller's id first."""
        me = actr_id_repr(CALLER)
        entries = [
            make_entry(1, sticky_client_ids=("someone-else",)),
            make_entry(2, sticky_client_ids=("x", me)),
            make_entry(3),
            make_entry(4, sticky_client_ids=(me,)),
        ]
        ok = self.route(request(count=9, factors=[Criteria.CLIENT_AFFINITY]), entries)
        self.assertEqual(self.serials(ok.candidates), [2, 4, 1, 3])

    def test_best_compatibility_is_a_no_op_without_negotiation(self) -> None:
        """No compatibility scores exist outside negotiation mode."""
        entries = [make_entry(2, spec=RED), make_entry(1, spec=GREEN)]
        ok = self.route(
            request(count=9, factors=[Criteria.BEST_COMPATIBILITY]), entries
        )
        self.assertEqual(self.serials(ok.candidates), [2, 1])
        self.assertEqual(self.analyzer.calls, 0)

    def test_unknown_ranking_factor_is_ignored(self) -> None:
        """A factor number this server does not know leaves the order alone."""
        req = request(count=9, factors=[Criteria.MINIMUM_MAILBOX_BACKLOG])
        # Append ranking_factors = 99 (field 2, varint) on the wire.
        raw = req.criteria.SerializeToString() + bytes([0x10, 99])
        req.criteria.Clear()
        req.criteria.ParseFromString(raw)
        entries = [
            make_entry(1, mailbox_backlog=5.0),
            make_entry(2, mailbox_backlog=1.0),
        ]
        self.assertEqual(self.serials(self.route(req, entries).candidates), [2, 1])

    def test_last_factor_dominates(self) -> None:
        """Factors are stable sorts applied in order: earlier ones break ties."""
        entries = [
            make_entry(1, power_reserve=0.1, mailbox_backlog=5.0),
            make_entry(2, power_reserve=0.9, mailbox_backlog=5.0),
            make_entry(3, power_reserve=0.5, mailbox_backlog=1.0),
        ]
        power_then_backlog = self.route(
            request(
                count=9,
                factors=[
                    Criteria.MAXIMUM_POWER_RESERVE,
                    Criteria.MINIMUM_MAILBOX_BACKLOG,
                ],
            ),
            entries,
        )
        self.assertEqual(self.serials(power_then_backlog.candidates), [3, 2, 1])
        backlog_then_power = self.route(
            request(
                count=9,
                factors=[
                    Criteria.MINIMUM_MAILBOX_BACKLOG,
                    Criteria.MAXIMUM_POWER_RESERVE,
                ],
            ),
            entries,
        )
        self.assertEqual(self.serials(backlog_then_power.candidates), [2, 3, 1])

    def test_factors_apply_after_health_sort(self) -> None:
        """A ranking factor overrides the health sort; health breaks its ties."""
        entries = [
            make_entry(1, availability=1, power_reserve=0.5),
            make_entry(2, availability=0, power_reserve=0.5),
            make_entry(3, availability=1, power_reserve=0.9),
        ]
        ok = self.route(
            request(
                count=9,
                health=actr_pb2.UNAVAILABLE,
                factors=[Criteria.MAXIMUM_POWER_RESERVE],
            ),
            entries,
        )
        self.assertEqual(self.serials(ok.candidates), [3, 2, 1])


class NegotiationTests(RoutingTestCase):
    """§8.3: negotiation mode when the caller sends its spec fingerprint."""

    def client_specs(
        self, known: actr_pb2.ServiceSpec | None = CLIENT
    ) -> tuple[
        list[tuple[str, str]],
        Callable[[actr_pb2.ActrType, str], actr_pb2.ServiceSpec | None],
    ]:
        """A spec store that records its lookups and knows ``known``."""
        lookups: list[tuple[str, str]] = []

        def lookup(
            target: actr_pb2.ActrType, fingerprint: str
        ) -> actr_pb2.ServiceSpec | None:
            lookups.append((type_key(target), fingerprint))
            if known is not None and fingerprint == known.fingerprint:
                return known
            return None

        return lookups, lookup

    def test_exact_matches_win(self) -> None:
        """Entries with the client's fingerprint are the only candidates."""
        lookups, store = self.client_specs()
        entries = [
            make_entry(1, spec=GREEN),
            make_entry(2, spec=CLIENT, ws="ws://two"),
            make_entry(3, spec=CLIENT),
        ]
        ok = self.route(request(fingerprint="fp-client"), entries, client_spec=store)
        self.assertEqual(self.serials(ok.candidates), [2, 3])
        self.assertTrue(ok.HasField("has_exact_match") and ok.has_exact_match)
        self.assertTrue(ok.HasField("is_sub_healthy"))
        self.assertFalse(ok.is_sub_healthy)
        self.assertEqual(len(ok.compatibility_info), 3)
        exact = ok.compatibility_info[1]
        self.assertEqual(exact.candidate_id, entries[1].actr_id)
        self.assertEqual(exact.candidate_fingerprint, "fp-client")
        self.assertTrue(exact.is_exact_match)
        self.assertFalse(exact.HasField("analysis_result"))
        self.assertEqual(exact.ws_address, "ws://two")
        self.assertFalse(ok.compatibility_info[2].HasField("ws_address"))
        # The non-exact entry is still analyzed and listed.
        self.assertTrue(ok.compatibility_info[0].HasField("analysis_result"))
        self.assertEqual(lookups, [("acme:echo", "fp-client")])

    def test_compatible_ordering(self) -> None:
        """Without exact matches, FULLY sorts before BACKWARD; breaking is excluded."""
        _lookups, store = self.client_specs()
        entries = [
            make_entry(1, spec=YELLOW),
            make_entry(2, spec=RED),
            make_entry(3, spec=GREEN),
            make_entry(4, spec=YELLOW),
        ]
        ok = self.route(request(fingerprint="fp-client"), entries, client_spec=store)
        self.assertEqual(self.serials(ok.candidates), [3, 1, 4])
        self.assertFalse(ok.has_exact_match)
        self.assertTrue(ok.HasField("has_exact_match"))
        self.assertTrue(ok.is_sub_healthy)
        levels = [i.analysis_result.level for i in ok.compatibility_info]
        self.assertEqual(
            levels,
            [
                actr_pb2.BACKWARD_COMPATIBLE,
                actr_pb2.BREAKING_CHANGES,
                actr_pb2.FULLY_COMPATIBLE,
                actr_pb2.BACKWARD_COMPATIBLE,
            ],
        )
        for info in ok.compatibility_info:
            self.assertTrue(info.HasField("is_exact_match"))
            self.assertFalse(info.is_exact_match)
            self.assertEqual(info.analysis_result.base_fingerprint, "fp-client")
        # Two distinct YELLOW entries share one analysis through the cache.
        self.assertEqual(self.analyzer.calls, 3)

    def test_results_are_cached_under_the_entry_type_key(self) -> None:
        """An analysis is stored as "<entry type key>:F:C" and reused."""
        _lookups, store = self.client_specs()
        entry = make_entry(1, "3", spec=YELLOW)
        self.route(request(fingerprint="fp-client"), [entry], client_spec=store)
        cached = self.compat.get("acme:echo:3", "fp-client", "fp-yellow")
        assert cached is not None
        self.assertEqual(cached.level, actr_pb2.BACKWARD_COMPATIBLE)
        self.route(request(fingerprint="fp-client"), [entry], client_spec=store)
        self.assertEqual(self.analyzer.calls, 1)

    def test_cached_result_is_used_without_client_spec(self) -> None:
        """A cache hit counts even when the spec store no longer has the client spec."""
        _lookups, store = self.client_specs()
        entries = [make_entry(1, spec=YELLOW)]
        self.route(request(fingerprint="fp-client"), entries, client_spec=store)
        ok = self.route(request(fingerprint="fp-client"), entries)
        self.assertEqual(self.serials(ok.candidates), [1])
        self.assertTrue(ok.is_sub_healthy)
        self.assertEqual(
            ok.compatibility_info[0].analysis_result.level,
            actr_pb2.BACKWARD_COMPATIBLE,
        )

    def test_cache_expiry_forces_reanalysis(self) -> None:
        """After 24 h the cached result is gone and the analysis runs again."""
        lookups, store = self.client_specs()
        later = NOW + 86_401
        entries = [make_entry(1, spec=YELLOW, last_heartbeat=later)]
        first = self.route(request(fingerprint="fp-client"), entries, client_spec=store)
        self.clock.advance(86_400)
        self.route(request(fingerprint="fp-client"), entries, client_spec=store)
        self.assertEqual((len(lookups), self.analyzer.calls), (1, 1))
        self.clock.advance(1)
        again = self.route(
            request(fingerprint="fp-client"), entries, client_spec=store, now=later
        )
        self.assertEqual((len(lookups), self.analyzer.calls), (2, 2))
        self.assertEqual(first.compatibility_info[0].analysis_result.analyzed_at, NOW)
        self.assertEqual(again.compatibility_info[0].analysis_result.analyzed_at, later)

    def test_no_client_spec_means_not_compatible(self) -> None:
        """Without the client's spec nothing can be analyzed."""
        ok = self.route(request(fingerprint="fp-unknown"), [make_entry(1, spec=GREEN)])
        self.assertEqual(list(ok.candidates), [])
        self.assertFalse(ok.has_exact_match)
        self.assertFalse(ok.is_sub_healthy)
        info = ok.compatibility_info[0]
        self.assertFalse(info.HasField("analysis_result"))
        self.assertTrue(info.HasField("is_exact_match"))
        self.assertFalse(info.is_exact_match)
        self.assertEqual(info.candidate_fingerprint, "fp-green")
        self.assertEqual(self.analyzer.calls, 0)

    def test_entry_without_spec_is_not_compatible(self) -> None:
        """An entry registered without a spec has fingerprint "" and no analysis."""
        lookups, store = self.client_specs()
        ok = self.route(
            request(fingerprint="fp-client"), [make_entry(1)], client_spec=store
        )
        self.assertEqual(list(ok.candidates), [])
        self.assertEqual(ok.compatibility_info[0].candidate_fingerprint, "")
        self.assertFalse(ok.compatibility_info[0].HasField("analysis_result"))
        self.assertEqual(lookups, [])

    def test_analysis_errors_are_not_compatible(self) -> None:
        """Bad specs (no protobufs, blank or unparsable content) never raise."""
        bad_specs = [
            actr_pb2.ServiceSpec(name="echo", fingerprint="fp-empty"),
            make_spec("fp-blank", "   \n"),
            make_spec("fp-garbage", "message {{{"),
        ]
        _lookups, store = self.client_specs()
        entries = [make_entry(i, spec=s) for i, s in enumerate(bad_specs, 1)]
        entries.append(make_entry(9, spec=GREEN))
        ok = self.route(request(fingerprint="fp-client"), entries, client_spec=store)
        self.assertEqual(self.serials(ok.candidates), [9])
        self.assertEqual(
            [i.HasField("analysis_result") for i in ok.compatibility_info],
            [False, False, False, True],
        )

    def test_bad_client_spec_is_not_compatible(self) -> None:
        """A client spec that cannot be analyzed makes every entry incompatible."""
        for bad in (
            actr_pb2.ServiceSpec(name="echo", fingerprint="fp-client"),
            make_spec("fp-client", ""),
            make_spec("fp-client", "syntax = nonsense"),
        ):
            self.compat = CompatibilityCache(self.clock, self.analyzer)
            _lookups, store = self.client_specs(bad)
            ok = self.route(
                request(fingerprint="fp-client"),
                [make_entry(1, spec=GREEN)],
                client_spec=store,
            )
            self.assertEqual(list(ok.candidates), [])
            self.assertFalse(ok.is_sub_healthy)

    def test_failing_spec_store_is_contained(self) -> None:
        """An exception from the spec store is logged and means "no client spec"."""

        def broken(
            target: actr_pb2.ActrType, fingerprint: str
        ) -> actr_pb2.ServiceSpec | None:
            raise RuntimeError("store is down")

        ok = self.route(
            request(fingerprint="fp-client"),
            [make_entry(1, spec=GREEN)],
            client_spec=broken,
        )
        self.assertEqual(list(ok.candidates), [])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_spec_store_is_asked_once_with_the_request_type(self) -> None:
        """The client spec is looked up once, by target type and fingerprint."""
        lookups, store = self.client_specs()
        entries = [make_entry(1, "7", spec=GREEN), make_entry(2, "7", spec=YELLOW)]
        self.route(request(" 7 ", fingerprint="fp-client"), entries, client_spec=store)
        self.assertEqual(lookups, [("acme:echo:7", "fp-client")])

    def test_negotiation_ignores_filters_but_honours_count(self) -> None:
        """Health filters and factors are ignored; candidate_count still truncates."""
        _lookups, store = self.client_specs()
        entries = [
            make_entry(1, spec=GREEN, availability=3),
            make_entry(2, spec=GREEN, availability=3, power_reserve=1.0),
            make_entry(3, spec=YELLOW, availability=3),
        ]
        req = request(
            fingerprint="fp-client",
            count=2,
            health=actr_pb2.FULL,
            factors=[Criteria.MAXIMUM_POWER_RESERVE],
        )
        ok = self.route(req, entries, client_spec=store)
        self.assertEqual(self.serials(ok.candidates), [1, 2])
        self.assertEqual(len(ok.compatibility_info), 3)
        zero = self.route(
            request(fingerprint="fp-client", count=0), entries, client_spec=store
        )
        self.assertEqual(list(zero.candidates), [])
        self.assertTrue(zero.is_sub_healthy)

    def test_blank_fingerprint_is_not_negotiation(self) -> None:
        """A whitespace-only fingerprint selects non-negotiation mode."""
        ok = self.route(request(fingerprint=" \t "), [make_entry(1, spec=GREEN)])
        self.assertEqual(self.serials(ok.candidates), [1])
        self.assertFalse(ok.HasField("has_exact_match"))
        self.assertEqual(list(ok.compatibility_info), [])

    def test_negotiation_respects_acl_and_ws_map(self) -> None:
        """Denied entries are neither analyzed nor listed; ws_address_map is filled."""
        _lookups, store = self.client_specs()
        entries = [
            make_entry(1, "1", spec=GREEN, ws="ws://one"),
            make_entry(2, "1", spec=GREEN, realm=5),
        ]
        ok = self.route(request(fingerprint="fp-client"), entries, client_spec=store)
        self.assertEqual(self.serials(ok.candidates), [1])
        self.assertEqual(len(ok.compatibility_info), 1)
        self.assertEqual(ok.compatibility_info[0].ws_address, "ws://one")
        self.assertEqual([w.ws_address for w in ok.ws_address_map], ["ws://one"])

    def test_response_serializes(self) -> None:
        """The negotiated response has every required field set."""
        _lookups, store = self.client_specs()
        d = Deferred.fromCoroutine(
            route_candidates(
                request(fingerprint="fp-client"),
                CALLER,
                [make_entry(1, spec=RED), make_entry(2)],
                allow_all,
                store,
                self.compat,
                NOW,
            )
        )
        response = self.successResultOf(d)
        self.assertTrue(response.IsInitialized())
        again = actr_pb2.RouteCandidatesResponse.FromString(
            response.SerializeToString()
        )
        self.assertEqual(again, response)

    def test_analysis_matches_analyze_specs(self) -> None:
        """The analysis in compatibility_info is exactly analyze_specs' result."""
        _lookups, store = self.client_specs()
        ok = self.route(
            request(fingerprint="fp-client"),
            [make_entry(1, spec=RED)],
            client_spec=store,
        )
        self.assertEqual(
            ok.compatibility_info[0].analysis_result,
            analyze_specs(CLIENT, RED, int(NOW)),
        )
