"""Tests for actrix.signaling.routing: compatibility negotiation (§8.3)."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred

from actrix.core.actrid import type_key
from actrix.proto import actr_pb2
from actrix.signaling.compat import CompatibilityCache, analyze_specs
from actrix.signaling.routing import route_candidates
from tests.unit.signaling.routing_fixtures import (
    CALLER,
    CLIENT,
    GREEN,
    NOW,
    RED,
    YELLOW,
    Criteria,
    RoutingTestCase,
    allow_all,
    make_entry,
    make_spec,
    request,
)


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
