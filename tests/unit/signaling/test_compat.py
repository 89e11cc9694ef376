"""Tests for actrix.signaling.compat: spec comparison (§8.4) and the analysis cache."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from actrix.proto import actr_pb2
from actrix.signaling.compat import (
    CompatibilityCache,
    CompatibilityError,
    InlineAnalyzer,
    analyze_specs,
)

ECHO = """\
syntax = "proto3";
package acme.echo;

import "google/protobuf/timestamp.proto";

// A request.
message EchoRequest {
  string text = 1;
  google.protobuf.Timestamp sent_at = 2;
  message Meta { int64 id = 1; }
  Meta meta = 3;
}

message EchoResponse {
  string text = 1;
}

service Echo {
  rpc Say(EchoRequest) returns (EchoResponse);
}
"""


def protobuf(package: str, content: str) -> actr_pb2.ServiceSpec.Protobuf:
    """Build one package entry of a ServiceSpec."""
    return actr_pb2.ServiceSpec.Protobuf(
        package=package, content=content, fingerprint=f"fp-{package}"
    )


def spec(fingerprint: str, *packages: tuple[str, str]) -> actr_pb2.ServiceSpec:
    """Build a ServiceSpec from (package, content) pairs."""
    return actr_pb2.ServiceSpec(
        name="echo",
        fingerprint=fingerprint,
        protobufs=[protobuf(p, c) for p, c in packages],
    )


def compare(old: str, new: str) -> actr_pb2.CompatibilityAnalysisResult:
    """Analyze two single-package specs with different service fingerprints."""
    return analyze_specs(
        spec("base", ("acme.echo", old)), spec("cand", ("acme.echo", new)), 100
    )


def kinds(changes: Any) -> list[tuple[str, str, bool]]:
    """Summarise ProtocolChange records as (type, file, breaking) tuples."""
    return [(c.change_type, c.file_name, c.is_breaking) for c in changes]


class AnalyzeSpecsTests(SynchronousTestCase):
    """analyze_specs implements the Green/Yellow/Red rules of §8.4."""

    def test_equal_fingerprints_are_fully_compatible(self) -> None:
        """Equal service fingerprints short-circuit to FULLY_COMPATIBLE, no changes."""
        result = analyze_specs(
            spec("same", ("acme.echo", ECHO)),
            spec("same", ("acme.echo", ECHO.replace("text", "body"))),
            7,
        )
        self.assertEqual(result.level, actr_pb2.FULLY_COMPATIBLE)
        self.assertEqual(list(result.changes), [])
        self.assertEqual(list(result.breaking_changes), [])
        self.assertEqual(
            (result.base_fingerprint, result.candidate_fingerprint, result.analyzed_at),
            ("same", "same", 7),
        )

    def test_comment_and_whitespace_changes_are_green(self) -> None:
        """Comments, blank lines and indentation do not change the semantic form."""
        new = "// header comment\n" + ECHO.replace("\n", "\n\n").replace("  ", "\t")
        result = compare(ECHO, new)
        self.assertEqual(result.level, actr_pb2.FULLY_COMPATIBLE)
        self.assertEqual(list(result.changes), [])
        self.assertEqual(result.base_fingerprint, "base")
        self.assertEqual(result.candidate_fingerprint, "cand")
        self.assertEqual(result.analyzed_at, 100)

    def test_declaration_order_is_green(self) -> None:
        """Reordering messages does not change the semantic form."""
        head, rest = ECHO.split("// A request.\n", 1)
        request, rest = rest.split("message EchoResponse", 1)
        response, service = rest.split("service Echo", 1)
        new = f"{head}message EchoResponse{response}{request}service Echo{service}"
        self.assertEqual(compare(ECHO, new).level, actr_pb2.FULLY_COMPATIBLE)

    def test_added_field_is_yellow(self) -> None:
        """A new field keeps every old (number, type) pair: BACKWARD_COMPATIBLE."""
        new = ECHO.replace("string text = 1;\n}", "string text = 1;\n  int32 n = 2;\n}")
        result = compare(ECHO, new)
        self.assertEqual(result.level, actr_pb2.BACKWARD_COMPATIBLE)
        self.assertEqual(
            kinds(result.changes), [("PROTO_CONTENT_CHANGED", "acme.echo", False)]
        )
        self.assertEqual(result.changes[0].location, "acme.echo")
        self.assertEqual(
            result.changes[0].description, "Proto file 'acme.echo' has semantic changes"
        )
        self.assertEqual(list(result.breaking_changes), [])

    def test_added_message_is_yellow(self) -> None:
        """A new message is a backward-compatible addition."""
        result = compare(ECHO, ECHO + "\nmessage Extra { bool flag = 1; }\n")
        self.assertEqual(result.level, actr_pb2.BACKWARD_COMPATIBLE)

    def test_added_method_is_yellow(self) -> None:
        """A new RPC method keeps all old method triples."""
        new = ECHO.replace(
            "returns (EchoResponse);",
            "returns (EchoResponse);\n  rpc Shout(EchoRequest) returns (EchoResponse);",
        )
        self.assertEqual(compare(ECHO, new).level, actr_pb2.BACKWARD_COMPATIBLE)

    def assert_red(self, new: str) -> None:
        """Check that ``new`` is a breaking change of ECHO with both records."""
        result = compare(ECHO, new)
        self.assertEqual(result.level, actr_pb2.BREAKING_CHANGES)
        self.assertEqual(
            kinds(result.changes), [("PROTO_CONTENT_CHANGED", "acme.echo", True)]
        )
        self.assertEqual(
            kinds(result.breaking_changes),
            [("BREAKING_PROTO_CHANGE", "acme.echo", True)],
        )
        self.assertEqual(
            result.breaking_changes[0].description,
            "Breaking changes detected in 'acme.echo'",
        )
        self.assertEqual(result.breaking_changes[0].location, "acme.echo")

    def test_removed_field_is_red(self) -> None:
        """Dropping a field breaks the old (number, type) set."""
        self.assert_red(ECHO.replace("  google.protobuf.Timestamp sent_at = 2;\n", ""))

    def test_renumbered_field_is_red(self) -> None:
        """Changing a field number is breaking."""
        self.assert_red(ECHO.replace("sent_at = 2;", "sent_at = 9;"))

    def test_retyped_field_is_red(self) -> None:
        """Changing a field type is breaking."""
        self.assert_red(
            ECHO.replace("string text = 1;\n  google", "bytes text = 1;\n  google")
        )

    def test_retyped_nested_field_is_red(self) -> None:
        """Nested messages are checked by their fully-qualified names."""
        self.assert_red(ECHO.replace("int64 id = 1;", "int32 id = 1;"))

    def test_removed_message_is_red(self) -> None:
        """A message that disappears is breaking."""
        new = ECHO.replace("service Echo", "message Gone {}\nservice Echo").replace(
            "message EchoResponse {\n  string text = 1;\n}\n", ""
        )
        new = new.replace("returns (EchoResponse)", "returns (EchoRequest)")
        self.assert_red(new)

    def test_removed_method_is_red(self) -> None:
        """A service losing a method is breaking."""
        self.assert_red(
            ECHO.replace("  rpc Say(EchoRequest) returns (EchoResponse);\n", "")
        )

    def test_changed_method_output_is_red(self) -> None:
        """A method whose output type changes is breaking."""
        self.assert_red(ECHO.replace("returns (EchoResponse)", "returns (EchoRequest)"))

    def test_file_added_is_recorded(self) -> None:
        """A package only in the candidate adds a non-breaking FILE_ADDED record."""
        extra = 'syntax = "proto3";\npackage acme.extra;\nmessage X { int32 a = 1; }\n'
        result = analyze_specs(
            spec("b", ("acme.echo", ECHO)),
            spec("c", ("acme.echo", ECHO), ("acme.extra", extra)),
            1,
        )
        self.assertEqual(result.level, actr_pb2.FULLY_COMPATIBLE)
        self.assertEqual(kinds(result.changes), [("FILE_ADDED", "acme.extra", False)])
        self.assertEqual(
            result.changes[0].description, "Proto file 'acme.extra' was added"
        )
        self.assertEqual(result.changes[0].location, "acme.extra")

    def test_file_removed_is_breaking(self) -> None:
        """A package only in the base is a FILE_REMOVED breaking change."""
        extra = 'syntax = "proto3";\npackage acme.extra;\nmessage X { int32 a = 1; }\n'
        result = analyze_specs(
            spec("b", ("acme.echo", ECHO), ("acme.extra", extra)),
            spec("c", ("acme.echo", ECHO)),
            1,
        )
        self.assertEqual(result.level, actr_pb2.BREAKING_CHANGES)
        self.assertEqual(list(result.changes), [])
        self.assertEqual(
            kinds(result.breaking_changes), [("FILE_REMOVED", "acme.extra", True)]
        )
        self.assertEqual(
            result.breaking_changes[0].description,
            "Proto file 'acme.extra' was removed",
        )

    def test_worst_level_wins(self) -> None:
        """A Yellow package and a Red package make the whole result Red."""
        other = 'syntax = "proto3";\npackage acme.other;\nmessage X { int32 a = 1; }\n'
        result = analyze_specs(
            spec("b", ("acme.echo", ECHO), ("acme.other", other)),
            spec(
                "c",
                ("acme.echo", ECHO + "message Y {}\n"),
                ("acme.other", other.replace("int32", "string")),
            ),
            1,
        )
        self.assertEqual(result.level, actr_pb2.BREAKING_CHANGES)
        self.assertEqual(
            kinds(result.changes),
            [
                ("PROTO_CONTENT_CHANGED", "acme.echo", False),
                ("PROTO_CONTENT_CHANGED", "acme.other", True),
            ],
        )

    def test_cross_package_imports_resolve(self) -> None:
        """Imports of another package of the same spec resolve by either file name."""
        common = (
            'syntax = "proto3";\npackage acme.common;\nmessage Id { int64 v = 1; }\n'
        )
        for path in ("acme.common.proto", "acme/common.proto"):
            user = (
                f'syntax = "proto3";\npackage acme.user;\nimport "{path}";\n'
                "message User { acme.common.Id id = 1; }\n"
            )
            result = analyze_specs(
                spec("b", ("acme.common", common), ("acme.user", user)),
                spec(
                    "c",
                    ("acme.common", common),
                    ("acme.user", user.replace("id = 1", "id = 2")),
                ),
                1,
            )
            self.assertEqual(result.level, actr_pb2.BREAKING_CHANGES)
            self.assertEqual(
                kinds(result.breaking_changes),
                [("BREAKING_PROTO_CHANGE", "acme.user", True)],
            )

    def test_proto2_spec_compiles(self) -> None:
        """proto2 syntax with required fields and enums is compared too."""
        old = (
            'syntax = "proto2";\npackage p2;\n'
            "enum Kind { A = 0; B = 1; }\n"
            "message M { required uint32 id = 1; optional Kind kind = 2; }\n"
        )
        new = old.replace(
            "optional Kind kind = 2;", "optional Kind kind = 2; optional string s = 3;"
        )
        result = analyze_specs(spec("b", ("p2", old)), spec("c", ("p2", new)), 1)
        self.assertEqual(result.level, actr_pb2.BACKWARD_COMPATIBLE)

    def test_unsafe_package_name_is_contained(self) -> None:
        """A package name that is not an identifier path still compiles, privately."""
        content = 'syntax = "proto3";\npackage x;\nmessage M { int32 a = 1; }\n'
        result = analyze_specs(
            spec("b", ("../../evil", content)),
            spec("c", ("../../evil", content.replace("int32", "string"))),
            1,
        )
        self.assertEqual(result.level, actr_pb2.BREAKING_CHANGES)

    def assert_error(
        self, base: actr_pb2.ServiceSpec, cand: actr_pb2.ServiceSpec
    ) -> None:
        """Check that comparing the specs raises CompatibilityError."""
        self.assertRaises(CompatibilityError, analyze_specs, base, cand, 1)

    def test_no_protobufs_is_an_error(self) -> None:
        """A spec without protobufs cannot be analyzed (either side)."""
        self.assert_error(spec("b"), spec("c", ("acme.echo", ECHO)))
        self.assert_error(spec("b", ("acme.echo", ECHO)), spec("c"))

    def test_no_protobufs_is_an_error_even_with_equal_fingerprints(self) -> None:
        """The protobuf checks come before the fingerprint shortcut."""
        self.assert_error(spec("same"), spec("same"))

    def test_blank_content_is_an_error(self) -> None:
        """A protobuf whose content is only whitespace is an error."""
        self.assert_error(
            spec("b", ("acme.echo", ECHO)), spec("c", ("acme.echo", " \n\t"))
        )
        self.assert_error(spec("b", ("acme.echo", "")), spec("c", ("acme.echo", ECHO)))

    def test_unparsable_proto_is_an_error(self) -> None:
        """Proto text that protoc rejects is an analysis error, on either side."""
        self.assert_error(
            spec("b", ("acme.echo", ECHO)), spec("c", ("acme.echo", "message {"))
        )
        self.assert_error(
            spec("b", ("acme.echo", "not a proto at all")),
            spec("c", ("acme.echo", ECHO)),
        )

    def test_unresolvable_import_is_an_error(self) -> None:
        """An import of a file the spec does not contain is an analysis error."""
        bad = ECHO.replace(
            'import "google/protobuf/timestamp.proto";',
            'import "google/protobuf/timestamp.proto";\n'
            'import "elsewhere/other.proto";',
        )
        self.assert_error(spec("b", ("acme.echo", ECHO)), spec("c", ("acme.echo", bad)))

    def test_path_escaping_import_is_an_error(self) -> None:
        """Imports cannot read files outside the temporary include directory."""
        for target in ("../../../../etc/hostname", "/etc/hostname"):
            bad = f'syntax = "proto3";\npackage acme.echo;\nimport "{target}";\n'
            self.assert_error(
                spec("b", ("acme.echo", ECHO)), spec("c", ("acme.echo", bad))
            )


class CountingAnalyzer:
    """An analyzer that records calls and answers from a callable or a Deferred."""

    def __init__(
        self,
        answer: Callable[
            [actr_pb2.ServiceSpec, actr_pb2.ServiceSpec, int],
            Deferred[actr_pb2.CompatibilityAnalysisResult],
        ]
        | None = None,
    ) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self._answer = answer

    async def analyze(
        self,
        base: actr_pb2.ServiceSpec,
        candidate: actr_pb2.ServiceSpec,
        analyzed_at: int,
    ) -> actr_pb2.CompatibilityAnalysisResult:
        """Record the call, then answer."""
        self.calls.append((base.fingerprint, candidate.fingerprint, analyzed_at))
        if self._answer is not None:
            return await self._answer(base, candidate, analyzed_at)
        return analyze_specs(base, candidate, analyzed_at)


BASE = spec("fp-base", ("acme.echo", ECHO))
YELLOW = spec("fp-yellow", ("acme.echo", ECHO + "message Y {}\n"))


class CompatibilityCacheTests(SynchronousTestCase):
    """CompatibilityCache: keys, TTL, bound, sharing of in-flight analyses."""

    def setUp(self) -> None:
        """Create a cache on a fake clock at t=1000."""
        self.clock = task.Clock()
        self.clock.advance(1000)
        self.analyzer = CountingAnalyzer()
        self.cache = CompatibilityCache(self.clock, self.analyzer)

    def analyze(
        self, cache: CompatibilityCache, cand: actr_pb2.ServiceSpec, key: str = "a:b"
    ) -> actr_pb2.CompatibilityAnalysisResult:
        """Run one cache analysis that must complete synchronously."""
        return self.successResultOf(
            Deferred.fromCoroutine(cache.analyze(key, BASE, cand))
        )

    def test_key_format(self) -> None:
        """Keys are "<type key>:<client fp>:<candidate fp>"."""
        self.assertEqual(CompatibilityCache.key("m:n:1", "F", "C"), "m:n:1:F:C")

    def test_miss_then_hit(self) -> None:
        """The second request for one key is served from memory."""
        first = self.analyze(self.cache, YELLOW)
        second = self.analyze(self.cache, YELLOW)
        self.assertIs(first, second)
        self.assertEqual(first.level, actr_pb2.BACKWARD_COMPATIBLE)
        self.assertEqual(first.analyzed_at, 1000)
        self.assertEqual(self.analyzer.calls, [("fp-base", "fp-yellow", 1000)])
        self.assertIs(self.cache.get("a:b", "fp-base", "fp-yellow"), first)
        self.assertEqual((self.cache.stats.hits, self.cache.stats.misses), (2, 1))

    def test_type_key_is_part_of_the_key(self) -> None:
        """The same fingerprints under another type key are analyzed separately."""
        self.analyze(self.cache, YELLOW, "a:b")
        self.analyze(self.cache, YELLOW, "a:c")
        self.assertEqual(len(self.analyzer.calls), 2)
        self.assertIsNone(self.cache.get("a:d", "fp-base", "fp-yellow"))

    def test_entries_expire_after_ttl(self) -> None:
        """A result is reused up to 24 h old and recomputed after that."""
        self.analyze(self.cache, YELLOW)
        self.clock.advance(86_400)
        self.assertIsNotNone(self.cache.get("a:b", "fp-base", "fp-yellow"))
        self.clock.advance(1)
        self.assertIsNone(self.cache.get("a:b", "fp-base", "fp-yellow"))
        self.assertEqual(len(self.cache), 0)
        again = self.analyze(self.cache, YELLOW)
        self.assertEqual(again.analyzed_at, 87_401)
        self.assertEqual(len(self.analyzer.calls), 2)

    def test_oldest_entry_is_evicted_at_the_bound(self) -> None:
        """At max_entries the oldest insertion makes room for the new one."""
        cache = CompatibilityCache(self.clock, self.analyzer, max_entries=2)
        for key in ("t:1", "t:2", "t:3"):
            self.analyze(cache, YELLOW, key)
        self.assertEqual(len(cache), 2)
        self.assertIsNone(cache.get("t:1", "fp-base", "fp-yellow"))
        self.assertIsNotNone(cache.get("t:2", "fp-base", "fp-yellow"))
        self.assertIsNotNone(cache.get("t:3", "fp-base", "fp-yellow"))
        self.assertEqual(cache.stats.evictions, 1)

    def test_default_bound_is_ten_thousand(self) -> None:
        """By default the 10 001st key evicts the first one."""
        result = actr_pb2.CompatibilityAnalysisResult()
        cache = CompatibilityCache(
            self.clock, CountingAnalyzer(lambda base, cand, at: succeed(result))
        )
        for i in range(10_001):
            self.analyze(cache, YELLOW, f"t:{i}")
        self.assertEqual(len(cache), 10_000)
        self.assertIsNone(cache.get("t:0", "fp-base", "fp-yellow"))
        self.assertIs(cache.get("t:1", "fp-base", "fp-yellow"), result)

    def test_errors_are_cached_and_reraised(self) -> None:
        """A failed analysis raises CompatibilityError now and from the cache."""
        broken = spec("fp-broken", ("acme.echo", "message {"))
        d = Deferred.fromCoroutine(self.cache.analyze("a:b", BASE, broken))
        self.failureResultOf(d, CompatibilityError)
        self.assertRaises(
            CompatibilityError, self.cache.get, "a:b", "fp-base", "fp-broken"
        )
        d2 = Deferred.fromCoroutine(self.cache.analyze("a:b", BASE, broken))
        self.failureResultOf(d2, CompatibilityError)
        self.assertEqual(len(self.analyzer.calls), 1)
        self.assertEqual(self.cache.stats.errors, 1)

    def test_concurrent_misses_share_one_analysis(self) -> None:
        """Callers arriving while an analysis runs wait for the same result."""
        pending: Deferred[actr_pb2.CompatibilityAnalysisResult] = Deferred()
        analyzer = CountingAnalyzer(lambda base, cand, at: pending)
        cache = CompatibilityCache(self.clock, analyzer)
        d1 = Deferred.fromCoroutine(cache.analyze("a:b", BASE, YELLOW))
        d2 = Deferred.fromCoroutine(cache.analyze("a:b", BASE, YELLOW))
        self.assertNoResult(d1)
        self.assertNoResult(d2)
        result = analyze_specs(BASE, YELLOW, 5)
        pending.callback(result)
        self.assertIs(self.successResultOf(d1), result)
        self.assertIs(self.successResultOf(d2), result)
        self.assertEqual(len(analyzer.calls), 1)

    def test_concurrent_misses_share_one_error(self) -> None:
        """Every waiter of a failing analysis gets a CompatibilityError."""
        pending: Deferred[actr_pb2.CompatibilityAnalysisResult] = Deferred()
        cache = CompatibilityCache(
            self.clock, CountingAnalyzer(lambda base, cand, at: pending)
        )
        d1 = Deferred.fromCoroutine(cache.analyze("a:b", BASE, YELLOW))
        d2 = Deferred.fromCoroutine(cache.analyze("a:b", BASE, YELLOW))
        pending.errback(CompatibilityError("bad"))
        self.failureResultOf(d1, CompatibilityError)
        self.failureResultOf(d2, CompatibilityError)

    def test_unexpected_errors_are_not_cached(self) -> None:
        """A non-CompatibilityError failure reaches all waiters and is retried later."""
        pending: Deferred[actr_pb2.CompatibilityAnalysisResult] = Deferred()
        analyzer = CountingAnalyzer(lambda base, cand, at: pending)
        cache = CompatibilityCache(self.clock, analyzer)
        d1 = Deferred.fromCoroutine(cache.analyze("a:b", BASE, YELLOW))
        d2 = Deferred.fromCoroutine(cache.analyze("a:b", BASE, YELLOW))
        pending.errback(OSError("disk full"))
        self.failureResultOf(d1, OSError)
        self.failureResultOf(d2, OSError)
        self.assertIsNone(cache.get("a:b", "fp-base", "fp-yellow"))
        self.assertEqual(len(cache), 0)


class InlineAnalyzerTests(SynchronousTestCase):
    """InlineAnalyzer answers synchronously."""

    def test_inline_result(self) -> None:
        """The coroutine completes without a reactor."""
        d = Deferred.fromCoroutine(InlineAnalyzer().analyze(BASE, YELLOW, 9))
        self.assertEqual(self.successResultOf(d).analyzed_at, 9)
