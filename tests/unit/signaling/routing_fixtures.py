"""Shared fixtures of the route candidates tests: specs, entries, requests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.actrid import new_actr_id, type_key
from actrix.proto import actr_pb2
from actrix.signaling.compat import CompatibilityCache, InlineAnalyzer
from actrix.signaling.routing import RouteEntry, route_candidates

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
