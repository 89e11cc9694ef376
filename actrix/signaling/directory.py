"""Directory queries and presence subscriptions of registered actors.

signaling.md §5.6 (Discovery, realm- and ACL-filtered, grouped by type),
§5.7 (GetServiceSpec; we filter it by realm and ACL too, and like every
answer it skips offline actors), §5.8 (RouteCandidates,
computed by :mod:`actrix.signaling.routing`), §5.9 (Subscribe/Unsubscribe
ActrUp; a Subscribe beyond an actor's subscription cap gets error 429, where the
original had no error path and no bound) and §5.10 (client error reports,
logged only).
"""

from __future__ import annotations

from twisted.logger import Logger

from actrix.core.actrid import normalize_version, type_key
from actrix.core.interfaces import Claims
from actrix.proto import signaling_pb2
from actrix.signaling import messages as m
from actrix.signaling.compat import CompatibilityCache
from actrix.signaling.context import FlowContext
from actrix.signaling.routing import route_candidates
from actrix.signaling.sessions import Session

log = Logger()


class Directory:
    """Discovery, spec lookup, route candidates and presence subscriptions."""

    def __init__(self, context: FlowContext, compat: CompatibilityCache) -> None:
        self._ctx = context
        self._compat = compat

    async def discovery(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        claims: Claims,
    ) -> None:
        source = envelope.actr_to_server.source
        request = envelope.actr_to_server.discovery_request
        realm_id = source.realm.realm_id
        caller_key = type_key(source.type)
        limit = request.limit
        manufacturer = (
            request.manufacturer if request.HasField("manufacturer") else None
        )
        reply, body = m.to_actor(
            self._ctx.clock.seconds(), source, envelope.envelope_id
        )
        ok = body.discovery_response.success
        ok.SetInParent()
        seen: set[str] = set()
        for entry in await self._ctx.directory.in_realm(realm_id):
            if len(seen) >= limit:
                break
            if not entry.online or entry.type_key in seen:
                continue
            if (
                manufacturer is not None
                and entry.actr_id.type.manufacturer != manufacturer
            ):
                continue
            if not self._ctx.realms.acl_allowed(realm_id, caller_key, entry.type_key):
                continue
            seen.add(entry.type_key)
            item = ok.entries.add()
            item.actr_type.CopyFrom(entry.actr_id.type)
            item.name = entry.service_name
            spec = entry.service_spec
            if spec is None:
                item.service_fingerprint = "unknown"
                continue
            item.service_fingerprint = spec.fingerprint
            if spec.HasField("description"):
                item.description = spec.description
            if spec.HasField("published_at"):
                item.published_at = spec.published_at
            item.tags.extend(spec.tags)
        self._ctx.sessions.send(session, reply)

    async def service_spec(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        claims: Claims,
    ) -> None:
        source = envelope.actr_to_server.source
        name = envelope.actr_to_server.get_service_spec_request.name
        realm_id = source.realm.realm_id
        caller_key = type_key(source.type)
        reply, body = m.to_actor(
            self._ctx.clock.seconds(), source, envelope.envelope_id
        )
        for entry in await self._ctx.directory.in_realm(realm_id):
            if (
                entry.online
                and entry.service_name == name
                and entry.service_spec is not None
                and self._ctx.realms.acl_allowed(realm_id, caller_key, entry.type_key)
            ):
                body.get_service_spec_response.success.CopyFrom(entry.service_spec)
                break
        else:
            error = body.get_service_spec_response.error
            error.code = 404
            error.message = m.SPEC_NOT_FOUND + name
            self._ctx.metrics.rejections["spec_not_found"] += 1
        self._ctx.sessions.send(session, reply)

    async def route_candidates(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        claims: Claims,
    ) -> None:
        source = envelope.actr_to_server.source
        request = envelope.actr_to_server.route_candidates_request
        target = request.target_type
        if normalize_version(request.client_fingerprint) is not None:
            await self._ctx.directory.fetch_spec(target, request.client_fingerprint)
        entries = await self._ctx.directory.of_type(
            source.realm.realm_id, target.manufacturer, target.name
        )
        response = await route_candidates(
            request,
            source,
            entries,
            self._ctx.realms.acl_allowed,
            self._ctx.directory.client_spec,
            self._compat,
            self._ctx.clock.seconds(),
            self._ctx.heartbeat_timeout,
        )
        reply, body = m.to_actor(
            self._ctx.clock.seconds(), source, envelope.envelope_id
        )
        body.route_candidates_response.CopyFrom(response)
        self._ctx.sessions.send(session, reply)

    async def subscribe(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        claims: Claims,
    ) -> None:
        source = envelope.actr_to_server.source
        target = envelope.actr_to_server.subscribe_actr_up_request.target_type
        reply, body = m.to_actor(
            self._ctx.clock.seconds(), source, envelope.envelope_id
        )
        if await self._ctx.directory.subscribe(target, source):
            body.subscribe_actr_up_response.success.SetInParent()
        else:
            self._ctx.metrics.rejections["subscriptions"] += 1
            error = body.subscribe_actr_up_response.error
            error.code = 429
            error.message = m.TOO_MANY_SUBSCRIPTIONS
        self._ctx.sessions.send(session, reply)

    async def unsubscribe(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        claims: Claims,
    ) -> None:
        source = envelope.actr_to_server.source
        target = envelope.actr_to_server.unsubscribe_actr_up_request.target_type
        if not await self._ctx.directory.unsubscribe(target, m.actor_key(source)):
            log.debug("unsubscribe without a subscription")
        reply, body = m.to_actor(
            self._ctx.clock.seconds(), source, envelope.envelope_id
        )
        body.unsubscribe_actr_up_response.success.SetInParent()
        self._ctx.sessions.send(session, reply)

    async def client_error(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        claims: Claims,
    ) -> None:
        error = envelope.actr_to_server.error
        log.warn(
            "client {actor} reported error {code}: {message}",
            actor=claims.actor_id,
            code=error.code,
            message=error.message[:200],
        )
