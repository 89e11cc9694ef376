"""Route candidates: which registered actors a caller should connect to (§8).

``route_candidates`` is a pure function of the registry entries it is given,
the ACL, the spec store lookup and the compatibility cache (signaling.md §8):
pick the version group, filter by realm and ACL, then either rank by health and
load factors or, when the caller sends its spec fingerprint, negotiate
compatibility against every candidate's spec.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

from twisted.logger import Logger

from actrix.core.actrid import actr_id_repr, normalize_version, type_key
from actrix.core.directory import ActorEntry
from actrix.proto import actr_pb2
from actrix.signaling.compat import CompatibilityCache, CompatibilityError

__all__ = ["ENTRY_TTL", "RouteEntry", "haversine_km", "route_candidates"]

log = Logger()

# The default age after which an entry's last heartbeat makes it expired
# (signaling.md §10) even if the registry's 30 s sweep has not removed it yet;
# the service passes its configured heartbeat timeout.
ENTRY_TTL = 300.0
EARTH_RADIUS_KM = 6371.0
# A health or dependency state that was never reported sorts like OVERLOADED.
_UNKNOWN_STATE = 2

_Factor = actr_pb2.RouteCandidatesRequest.NodeSelectionCriteria
_LEVEL_ORDER = {
    actr_pb2.FULLY_COMPATIBLE: 0,
    actr_pb2.BACKWARD_COMPATIBLE: 1,
}


# The registry entry route selection reads is the directory port's value object.
RouteEntry = ActorEntry


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (latitude, longitude) points, R = 6371 km."""
    lat1, lon1 = map(math.radians, a)
    lat2, lon2 = map(math.radians, b)
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))


# ---------------------------------------------------------------------------
# §8.1 candidate set
# ---------------------------------------------------------------------------


def _version_group(
    target: actr_pb2.ActrType,
    entries: Iterable[RouteEntry],
    now: float,
    entry_ttl: float,
) -> list[RouteEntry]:
    """Live entries of the target's type: its exact version, else the latest one."""
    same_type = [
        entry
        for entry in entries
        if entry.online
        and now - entry.last_heartbeat <= entry_ttl
        and entry.actr_id.type.manufacturer == target.manufacturer
        and entry.actr_id.type.name == target.name
    ]
    wanted = normalize_version(target.version if target.HasField("version") else None)
    versions = [_entry_version(entry) for entry in same_type]
    if wanted is None:
        # Plain string order, "no version" lowest: "alpha" > "2" > "1", "9" > "10".
        present = [v for v in versions if v is not None]
        wanted = max(present) if present else None
    return [e for e, v in zip(same_type, versions, strict=True) if v == wanted]


def _entry_version(entry: RouteEntry) -> str | None:
    version_type = entry.actr_id.type
    return normalize_version(
        version_type.version if version_type.HasField("version") else None
    )


def _acl_filter(
    caller: actr_pb2.ActrId,
    group: Sequence[RouteEntry],
    acl_allowed: Callable[[int, str, str], bool],
) -> list[RouteEntry]:
    realm = caller.realm.realm_id
    caller_key = type_key(caller.type)
    return [
        entry
        for entry in group
        if entry.actr_id.realm.realm_id == realm
        and acl_allowed(realm, caller_key, entry.type_key)
    ]


# ---------------------------------------------------------------------------
# §8.2 ranking
# ---------------------------------------------------------------------------


def _number(value: float | None) -> float | None:
    """A usable sort value: None for missing or NaN reports."""
    if value is None or math.isnan(value):
        return None
    return value


def _state_filter(entries: list[RouteEntry], minimum: int) -> list[RouteEntry]:
    kept = [
        entry
        for entry in entries
        if (entry.availability is None and minimum >= 1)
        or (entry.availability is not None and entry.availability <= minimum)
    ]
    kept.sort(
        key=lambda e: _UNKNOWN_STATE if e.availability is None else e.availability
    )
    return kept


def _sort_by_factor(
    entries: list[RouteEntry],
    factor: int,
    request: actr_pb2.RouteCandidatesRequest,
    caller_repr: str,
) -> None:
    """Stable-sort ``entries`` in place by one ranking factor (unknown: no-op)."""
    if factor == _Factor.MAXIMUM_POWER_RESERVE:
        entries.sort(key=lambda e: _descending_missing_last(_number(e.power_reserve)))
    elif factor == _Factor.MINIMUM_MAILBOX_BACKLOG:
        entries.sort(key=lambda e: _ascending_missing_last(_number(e.mailbox_backlog)))
    elif factor == _Factor.NEAREST:
        location = request.client_location
        if (
            request.HasField("client_location")
            and location.HasField("latitude")
            and location.HasField("longitude")
        ):
            origin = (location.latitude, location.longitude)
            entries.sort(key=lambda e: _ascending_missing_last(_distance(origin, e)))
        else:
            entries.sort(key=lambda e: e.location is None)
    elif factor == _Factor.CLIENT_AFFINITY:
        entries.sort(key=lambda e: caller_repr not in e.sticky_client_ids)
    # BEST_COMPATIBILITY: no scores exist outside negotiation mode.


def _distance(origin: tuple[float, float], entry: RouteEntry) -> float | None:
    if entry.location is None:
        return None
    return _number(haversine_km(origin, entry.location))


def _ascending_missing_last(value: float | None) -> tuple[bool, float]:
    return (value is None, 0.0 if value is None else value)


def _descending_missing_last(value: float | None) -> tuple[bool, float]:
    return (value is None, 0.0 if value is None else -value)


def _rank(
    request: actr_pb2.RouteCandidatesRequest,
    caller: actr_pb2.ActrId,
    pool: list[RouteEntry],
) -> list[actr_pb2.ActrId]:
    if not request.HasField("criteria"):
        return [entry.actr_id for entry in pool]
    criteria = request.criteria
    ranked = list(pool)
    if criteria.HasField("minimal_health_requirement"):
        ranked = _state_filter(ranked, criteria.minimal_health_requirement)
    # Dependency state is never reported: every entry counts as unknown (kept
    # iff the requirement is >= 1; the stable sort by an all-equal key is a no-op).
    if (
        criteria.HasField("minimal_dependency_requirement")
        and criteria.minimal_dependency_requirement < 1
    ):
        ranked = []
    caller_repr = actr_id_repr(caller)
    for factor in criteria.ranking_factors:
        _sort_by_factor(ranked, factor, request, caller_repr)
    return [entry.actr_id for entry in ranked[: criteria.candidate_count]]


# ---------------------------------------------------------------------------
# §8.3 negotiation
# ---------------------------------------------------------------------------


async def _negotiate(
    request: actr_pb2.RouteCandidatesRequest,
    pool: list[RouteEntry],
    client_spec: Callable[[actr_pb2.ActrType, str], actr_pb2.ServiceSpec | None],
    compat: CompatibilityCache,
    ok: actr_pb2.RouteCandidatesResponse.RouteCandidatesOk,
) -> None:
    fingerprint = request.client_fingerprint
    exact: list[actr_pb2.ActrId] = []
    compatible: list[tuple[int, actr_pb2.ActrId]] = []
    base_memo: list[actr_pb2.ServiceSpec | None] = []

    def base_spec() -> actr_pb2.ServiceSpec | None:
        # Asked at most once per request, and only on a cache miss.
        if not base_memo:
            base_memo.append(_lookup_client_spec(request, client_spec))
        return base_memo[0]

    for entry in pool:
        candidate_fp = entry.service_spec.fingerprint if entry.service_spec else ""
        info = ok.compatibility_info.add()
        info.candidate_id.CopyFrom(entry.actr_id)
        info.candidate_fingerprint = candidate_fp
        info.is_exact_match = candidate_fp == fingerprint
        if entry.ws_address is not None:
            info.ws_address = entry.ws_address
        if info.is_exact_match:
            exact.append(entry.actr_id)
            continue
        if entry.service_spec is None:
            continue
        result = await _analysis(
            compat, entry.type_key, fingerprint, base_spec, entry.service_spec
        )
        if result is None:
            continue
        info.analysis_result.CopyFrom(result)
        if result.level in _LEVEL_ORDER:
            compatible.append((_LEVEL_ORDER[result.level], entry.actr_id))
    if exact:
        chosen = exact
    else:
        compatible.sort(key=lambda pair: pair[0])
        chosen = [actr_id for _level, actr_id in compatible]
    if request.HasField("criteria"):
        chosen = chosen[: request.criteria.candidate_count]
    ok.candidates.extend(chosen)
    ok.has_exact_match = bool(exact)
    ok.is_sub_healthy = not exact and bool(compatible)


def _lookup_client_spec(
    request: actr_pb2.RouteCandidatesRequest,
    client_spec: Callable[[actr_pb2.ActrType, str], actr_pb2.ServiceSpec | None],
) -> actr_pb2.ServiceSpec | None:
    try:
        return client_spec(request.target_type, request.client_fingerprint)
    except Exception:
        log.failure("client spec lookup failed")
        return None


async def _analysis(
    compat: CompatibilityCache,
    entry_type_key: str,
    fingerprint: str,
    base_spec: Callable[[], actr_pb2.ServiceSpec | None],
    candidate: actr_pb2.ServiceSpec,
) -> actr_pb2.CompatibilityAnalysisResult | None:
    """The cached or fresh analysis for one entry; None means "not compatible"."""
    try:
        cached = compat.get(entry_type_key, fingerprint, candidate.fingerprint)
        if cached is not None:
            return cached
        base = base_spec()
        if base is None:
            return None
        return await compat.analyze(entry_type_key, base, candidate)
    except CompatibilityError as e:
        log.debug(
            "specs of {type_key} not comparable: {reason}",
            type_key=entry_type_key,
            reason=str(e),
        )
        return None
    except Exception:
        log.failure("compatibility analysis of {type_key}", type_key=entry_type_key)
        return None


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


async def route_candidates(
    request: actr_pb2.RouteCandidatesRequest,
    caller: actr_pb2.ActrId,
    entries: Iterable[RouteEntry],
    acl_allowed: Callable[[int, str, str], bool],
    client_spec: Callable[[actr_pb2.ActrType, str], actr_pb2.ServiceSpec | None],
    compat: CompatibilityCache,
    now: float,
    entry_ttl: float = ENTRY_TTL,
) -> actr_pb2.RouteCandidatesResponse:
    """Answer a RouteCandidatesRequest from ``caller`` (signaling.md §8).

    Args:
        entries: every registry entry in registry order; offline entries and
            entries whose heartbeat is older than ``entry_ttl`` seconds
            are skipped.
        acl_allowed: ``(realm_id, from_type_key, to_type_key)`` -> allowed.
        client_spec: ``(target_type, client fingerprint)`` -> the client's spec
            from the spec store, or None.
        now: the current reactor time, for heartbeat expiry.

    Returns:
        Always a ``success`` response; analysis failures only make a candidate
        "not compatible".
    """
    group = _version_group(request.target_type, entries, now, entry_ttl)
    pool = _acl_filter(caller, group, acl_allowed)
    response = actr_pb2.RouteCandidatesResponse()
    ok = response.success
    ok.SetInParent()
    for entry in pool:
        ws_entry = ok.ws_address_map.add()
        ws_entry.candidate_id.CopyFrom(entry.actr_id)
        if entry.ws_address is not None:
            ws_entry.ws_address = entry.ws_address
    if normalize_version(request.client_fingerprint) is not None:  # trimmed non-empty
        await _negotiate(request, pool, client_spec, compat, ok)
    else:
        ok.candidates.extend(_rank(request, caller, pool))
    return response
