"""Tests for actrix.signaling.routing: candidate set and ranking (§8.1, §8.2)."""

from __future__ import annotations

import math

from actrix.core.actrid import actr_id_repr
from actrix.proto import actr_pb2
from actrix.signaling.routing import haversine_km
from tests.unit.signaling.routing_fixtures import (
    CALLER,
    GREEN,
    NOW,
    RED,
    Criteria,
    RoutingTestCase,
    make_entry,
    request,
)


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
