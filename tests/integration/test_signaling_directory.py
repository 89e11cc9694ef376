"""Discovery, service specs, route candidates and presence over real WebSockets."""

from __future__ import annotations

from actrix.proto import actr_pb2
from tests.integration.test_signaling import (
    OTHER_REALM,
    REALM,
    OnRedis,
    SignalingDaemonCase,
    allow,
    sleep,
)
from tests.signaling_client import SignalingClient


def spec(name: str, fingerprint: str = "fp-1") -> actr_pb2.ServiceSpec:
    return actr_pb2.ServiceSpec(
        name=name,
        description=f"{name} service",
        fingerprint=fingerprint,
        published_at=1700000000,
        tags=["stable"],
        protobufs=[
            actr_pb2.ServiceSpec.Protobuf(
                package="echo.v1",
                content=(
                    'syntax = "proto3";\npackage echo.v1;\n'
                    "message Ping { string text = 1; }\n"
                ),
                fingerprint="pf-1",
            )
        ],
    )


def target(name: str, version: str | None = None) -> actr_pb2.ActrType:
    actr_type = actr_pb2.ActrType(manufacturer="acme", name=name)
    if version is not None:
        actr_type.version = version
    return actr_type


class DiscoveryTests(SignalingDaemonCase):
    async def discover(
        self, client: SignalingClient, manufacturer: str | None = None
    ) -> list[actr_pb2.DiscoveryResponse.TypeEntry]:
        request = actr_pb2.DiscoveryRequest()
        if manufacturer is not None:
            request.manufacturer = manufacturer
        reply = await client.call(discovery_request=request)
        return list(reply.discovery_response.success.entries)

    async def test_discovery_lists_allowed_types_once(self) -> None:
        """Two actors of one allowed type show as one entry with their spec data."""
        for _ in range(2):
            await self.registered(
                name="echo", spec=spec("EchoService"), acl=allow(("acme", "caller"))
            )
        await self.registered(name="hidden")
        caller = await self.registered(name="caller")
        entries = await self.discover(caller)
        self.assertEqual([e.actr_type.name for e in entries], ["echo"])
        entry = entries[0]
        self.assertEqual(entry.name, "EchoService")
        self.assertEqual(entry.service_fingerprint, "fp-1")
        self.assertEqual(entry.description, "EchoService service")
        self.assertEqual(entry.published_at, 1700000000)
        self.assertEqual(list(entry.tags), ["stable"])

    async def test_discovery_filters_manufacturer(self) -> None:
        """The manufacturer filter keeps exact matches only."""
        await self.registered(name="echo", acl=allow(("acme", "caller")))
        caller = await self.registered(name="caller")
        self.assertEqual(len(await self.discover(caller, "acme")), 1)
        self.assertEqual(await self.discover(caller, "other"), [])

    async def test_discovery_is_realm_isolated(self) -> None:
        """Actors of another realm are never listed, whatever the ACL says."""
        await self.registered(OTHER_REALM, name="echo", acl=allow(("acme", "caller")))
        caller = await self.registered(name="caller")
        self.assertEqual(await self.discover(caller), [])

    async def test_actor_without_spec_is_unknown(self) -> None:
        """An actor registered without a spec is listed with fingerprint ``unknown``."""
        await self.registered(name="bare", acl=allow(("acme", "caller")))
        caller = await self.registered(name="caller")
        (entry,) = await self.discover(caller)
        self.assertEqual(entry.name, "acme/bare")
        self.assertEqual(entry.service_fingerprint, "unknown")


class ServiceSpecTests(SignalingDaemonCase):
    async def lookup(
        self, client: SignalingClient, name: str
    ) -> actr_pb2.GetServiceSpecResponse:
        reply = await client.call(
            get_service_spec_request=actr_pb2.GetServiceSpecRequest(name=name)
        )
        return reply.get_service_spec_response

    async def test_spec_found_by_service_name(self) -> None:
        """GetServiceSpec returns the registered spec of an allowed actor."""
        await self.registered(
            name="echo", spec=spec("EchoService"), acl=allow(("acme", "caller"))
        )
        caller = await self.registered(name="caller")
        response = await self.lookup(caller, "EchoService")
        self.assertEqual(response.success, spec("EchoService"))

    async def test_unknown_spec_is_404(self) -> None:
        """An unknown service name answers 404 with the §9 text."""
        caller = await self.registered(name="caller")
        response = await self.lookup(caller, "Nope")
        self.assert_error(
            response.error, 404, "Service specification not found for name=Nope"
        )

    async def test_spec_hidden_by_acl_and_realm(self) -> None:
        """Specs of actors the caller may not reach (ACL or realm) are not disclosed."""
        await self.registered(name="echo", spec=spec("Private"))
        await self.registered(
            OTHER_REALM,
            name="echo",
            spec=spec("Foreign"),
            acl=allow(("acme", "caller")),
        )
        caller = await self.registered(name="caller")
        self.assertEqual((await self.lookup(caller, "Private")).error.code, 404)
        self.assertEqual((await self.lookup(caller, "Foreign")).error.code, 404)


class RouteCandidateTests(SignalingDaemonCase):
    async def routes(
        self,
        caller: SignalingClient,
        actr_type: actr_pb2.ActrType,
        count: int | None = None,
        factors: tuple[int, ...] = (),
        fingerprint: str = "",
    ) -> actr_pb2.RouteCandidatesResponse.RouteCandidatesOk:
        request = actr_pb2.RouteCandidatesRequest(
            target_type=actr_type, client_fingerprint=fingerprint
        )
        if count is not None:
            request.criteria.candidate_count = count
            request.criteria.ranking_factors.extend(factors)  # type: ignore[arg-type]  # enum ints
        reply = await caller.call(route_candidates_request=request)
        return reply.route_candidates_response.success

    async def test_candidates_with_ws_address(self) -> None:
        """Allowed actors of the type are candidates and their ws_address is mapped."""
        server = await self.registered(
            name="svc", acl=allow(("acme", "caller")), ws_address="ws://10.0.0.1:9000"
        )
        caller = await self.registered(name="caller")
        ok = await self.routes(caller, target("svc"))
        self.assertEqual(list(ok.candidates), [server.actr_id])
        self.assertEqual(ok.ws_address_map[0].candidate_id, server.actr_id)
        self.assertEqual(ok.ws_address_map[0].ws_address, "ws://10.0.0.1:9000")

    async def test_candidates_default_deny_and_realm_isolation(self) -> None:
        """Actors without an ACL row or in another realm are never candidates."""
        await self.registered(name="svc")
        await self.registered(OTHER_REALM, name="svc", acl=allow(("acme", "caller")))
        caller = await self.registered(name="caller")
        ok = await self.routes(caller, target("svc"))
        self.assertEqual(list(ok.candidates), [])
        self.assertEqual(list(ok.ws_address_map), [])

    async def test_power_reserve_ranking_and_limit(self) -> None:
        """MAXIMUM_POWER_RESERVE ranks the most reserve first; the count limits."""
        servers = [
            await self.registered(name="svc", acl=allow(("acme", "caller")))
            for _ in range(3)
        ]
        for server, reserve in zip(servers, (0.2, 0.9, 0.5), strict=True):
            await server.ping(power_reserve=reserve)
        caller = await self.registered(name="caller")
        factor = actr_pb2.RouteCandidatesRequest.NodeSelectionCriteria
        ok = await self.routes(
            caller, target("svc"), count=2, factors=(factor.MAXIMUM_POWER_RESERVE,)
        )
        self.assertEqual(list(ok.candidates), [servers[1].actr_id, servers[2].actr_id])

    async def test_client_affinity_uses_sticky_ids(self) -> None:
        """CLIENT_AFFINITY prefers the actor whose Ping listed the caller's id."""
        first = await self.registered(name="svc", acl=allow(("acme", "caller")))
        second = await self.registered(name="svc", acl=allow(("acme", "caller")))
        caller = await self.registered(name="caller")
        from actrix.core.actrid import actr_id_repr

        assert caller.actr_id is not None
        await first.ping()
        await second.ping(sticky=(actr_id_repr(caller.actr_id),))
        factor = actr_pb2.RouteCandidatesRequest.NodeSelectionCriteria
        ok = await self.routes(
            caller, target("svc"), count=2, factors=(factor.CLIENT_AFFINITY,)
        )
        self.assertEqual(ok.candidates[0], second.actr_id)

    async def test_latest_version_group(self) -> None:
        """Without a version the latest (string order) group is returned."""
        await self.registered(name="svc", version="1", acl=allow(("acme", "caller")))
        newer = await self.registered(
            name="svc", version="2", acl=allow(("acme", "caller"))
        )
        caller = await self.registered(name="caller")
        ok = await self.routes(caller, target("svc"))
        self.assertEqual(list(ok.candidates), [newer.actr_id])

    async def test_exact_fingerprint_preferred(self) -> None:
        """In negotiation mode an exact spec fingerprint match wins."""
        await self.registered(
            name="svc", spec=spec("Svc", "fp-old"), acl=allow(("acme", "caller"))
        )
        exact = await self.registered(
            name="svc", spec=spec("Svc", "fp-new"), acl=allow(("acme", "caller"))
        )
        caller = await self.registered(name="caller")
        ok = await self.routes(caller, target("svc"), fingerprint="fp-new")
        self.assertEqual(list(ok.candidates), [exact.actr_id])
        self.assertTrue(ok.has_exact_match)
        self.assertFalse(ok.is_sub_healthy)
        self.assertEqual(len(ok.compatibility_info), 2)


class PresenceTests(SignalingDaemonCase):
    async def subscriber(self, realm_id: int = REALM) -> SignalingClient:
        watcher = await self.registered(realm_id, name="watcher")
        reply = await watcher.call(
            subscribe_actr_up_request=actr_pb2.SubscribeActrUpRequest(
                target_type=target("svc")
            )
        )
        self.assertTrue(reply.subscribe_actr_up_response.HasField("success"))
        return watcher

    async def test_up_event_on_register(self) -> None:
        """An ACL-allowed subscriber gets ActrUp when an actor of the type registers."""
        watcher = await self.subscriber()
        server = await self.registered(name="svc", acl=allow(("acme", "watcher")))
        push = await watcher.next_push()
        self.assertEqual(push.server_to_actr.actr_up_event.actor_id, server.actr_id)
        self.assertEqual(push.server_to_actr.target, watcher.actr_id)

    async def test_down_event_on_unregister_and_disconnect(self) -> None:
        """Unregister and socket close each push an ActrDown with a reason."""
        watcher = await self.subscriber()
        first = await self.registered(name="svc", acl=allow(("acme", "watcher")))
        second = await self.registered(name="svc")
        await watcher.next_push()
        await watcher.next_push()
        await first.call(
            unregister_request=actr_pb2.UnregisterRequest(actr_id=first.actr_id)
        )
        down = (await watcher.next_push()).server_to_actr.actr_down_event
        self.assertEqual(down.actor_id, first.actr_id)
        self.assertEqual(down.reason, "unregistered")
        await second.close()
        down = (await watcher.next_push()).server_to_actr.actr_down_event
        self.assertEqual(down.actor_id, second.actr_id)
        self.assertEqual(down.reason, "disconnected")

    async def test_no_event_without_acl(self) -> None:
        """A subscriber the ACL does not allow to reach the type gets no event."""
        denied = await self.subscriber()
        await self.registered(name="svc")
        await sleep(0.2)
        self.assertEqual(len(denied.pushes), 0)

    async def test_no_event_across_realms(self) -> None:
        """Only subscribers of the actor's realm hear of it."""
        local = await self.subscriber()
        foreign = await self.subscriber(OTHER_REALM)
        server = await self.registered(name="svc", acl=allow(("acme", "watcher")))
        push = await local.next_push()
        self.assertEqual(push.server_to_actr.actr_up_event.actor_id, server.actr_id)
        await sleep(0.2)
        self.assertEqual(len(foreign.pushes), 0)

    async def test_unsubscribe_stops_events(self) -> None:
        """After Unsubscribe no more events arrive."""
        watcher = await self.subscriber()
        reply = await watcher.call(
            unsubscribe_actr_up_request=actr_pb2.UnsubscribeActrUpRequest(
                target_type=target("svc")
            )
        )
        self.assertTrue(reply.unsubscribe_actr_up_response.HasField("success"))
        await self.registered(name="svc", acl=allow(("acme", "watcher")))
        await sleep(0.2)
        self.assertEqual(len(watcher.pushes), 0)


# The same flows, answered by a RedisDirectory (signaling.md §5.6-§5.9 must not
# depend on where the directory lives).


class DiscoveryOnRedisTests(OnRedis, DiscoveryTests):
    """Discovery from a RedisDirectory."""


class ServiceSpecOnRedisTests(OnRedis, ServiceSpecTests):
    """GetServiceSpec from a RedisDirectory."""


class RouteCandidateOnRedisTests(OnRedis, RouteCandidateTests):
    """Route candidates from a RedisDirectory."""


class PresenceOnRedisTests(OnRedis, PresenceTests):
    """Presence subscriptions and events through a RedisDirectory."""
