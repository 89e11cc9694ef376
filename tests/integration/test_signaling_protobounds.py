"""Hostile ServiceSpec .proto text over a real WebSocket: refused, daemon serves on."""

from __future__ import annotations

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher

from actrix.proto import actr_pb2
from actrix.signaling.protoc_pool import ProtocPool
from tests.integration.test_signaling import NO_LIMITS, SignalingDaemonCase, allow
from tests.signaling_client import SignalingClient
from tests.unit.signaling.hostile_protos import nested_aggregate_option, nested_groups

ECHO = (
    'syntax = "proto3";\npackage acme.echo;\n'
    "message Ping { string text = 1; }\n"
    "service Echo { rpc Say(Ping) returns (Ping); }\n"
)


def spec(fingerprint: str, content: str) -> actr_pb2.ServiceSpec:
    """A one-package spec of acme.echo."""
    return actr_pb2.ServiceSpec(
        name="Echo",
        fingerprint=fingerprint,
        protobufs=[
            actr_pb2.ServiceSpec.Protobuf(
                package="acme.echo", content=content, fingerprint=f"p-{fingerprint}"
            )
        ],
    )


class HostileSpecTests(SignalingDaemonCase):
    """Route negotiation against specs whose text crashed or bloated protoc."""

    # The nested groups are 78 KB of text: above the default message cap.
    overrides = NO_LIMITS + "[services.signaling.server]\nmax_message_size = 262144\n"

    async def routes(
        self, caller: SignalingClient, fingerprint: str
    ) -> actr_pb2.RouteCandidatesResponse.RouteCandidatesOk:
        request = actr_pb2.RouteCandidatesRequest(
            target_type=actr_pb2.ActrType(manufacturer="acme", name="svc"),
            client_fingerprint=fingerprint,
        )
        reply = await caller.call(route_candidates_request=request)
        self.assertTrue(reply.route_candidates_response.HasField("success"))
        return reply.route_candidates_response.success

    async def test_hostile_specs_are_not_compatible_and_daemon_serves(self) -> None:
        """Hostile candidates are refused by the bounds; the others rank; all serve."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        acl = allow(("acme", "caller"))
        # The client's spec is known to the spec store from an earlier actor.
        base = await self.registered(name="svc", spec=spec("fp-base", ECHO), acl=acl)
        leave = actr_pb2.UnregisterRequest(actr_id=base.actr_id)
        await base.call(unregister_request=leave)
        aggregate = await self.registered(
            name="svc", spec=spec("fp-aggregate", nested_aggregate_option()), acl=acl
        )
        groups = await self.registered(
            name="svc", spec=spec("fp-groups", nested_groups()), acl=acl
        )
        yellow = await self.registered(
            name="svc", spec=spec("fp-yellow", ECHO + "message Extra {}\n"), acl=acl
        )
        bystander = await self.registered(name="bystander")
        caller = await self.registered(name="caller")

        for _ in range(2):  # the second answer comes from the cache
            ok = await self.routes(caller, "fp-base")
            self.assertEqual(list(ok.candidates), [yellow.actr_id])
            self.assertFalse(ok.has_exact_match)
            self.assertTrue(ok.is_sub_healthy)
            infos = {i.candidate_fingerprint: i for i in ok.compatibility_info}
            self.assertEqual(set(infos), {"fp-aggregate", "fp-groups", "fp-yellow"})
            self.assertFalse(infos["fp-aggregate"].HasField("analysis_result"))
            self.assertFalse(infos["fp-groups"].HasField("analysis_result"))
            self.assertEqual(
                infos["fp-yellow"].analysis_result.level,
                actr_pb2.BACKWARD_COMPATIBLE,
            )

        pong = await bystander.ping()
        self.assertTrue(pong.HasField("pong"), str(pong))
        for hostile in (aggregate, groups):
            pong = await hostile.ping()
            self.assertTrue(pong.HasField("pong"), str(pong))
        # Only the yellow pair reached a worker; the bounds refused the rest.
        pool = self.root.background.getServiceNamed("protoc")
        self.assertIsInstance(pool, ProtocPool)
        self.assertEqual(pool.spawned, 1)
        refusals = [
            e
            for e in events
            if e["log_level"] == LogLevel.warn
            and "proto text refused" in str(e.get("reason", ""))
        ]
        self.assertEqual(len(refusals), 1)  # throttled: one line a minute
