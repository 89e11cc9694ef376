"""STUN/TURN counters: plain ints bumped on the hot paths, exported by ``collect()``.

Labels never carry usernames or addresses; auth failures and denials are
labelled by a short reason/rule name only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


class TurnMetrics:
    """Counters of the ICE listeners and the TURN service."""

    def __init__(self) -> None:
        self.bindings = 0
        self.malformed = 0
        self.stream_aborted = 0  # TCP/TLS clients that stopped reading
        self.allocations_total = 0
        self.relayed_packets_out = 0  # client -> peer
        self.relayed_bytes_out = 0
        self.relayed_packets_in = 0  # peer -> client
        self.relayed_bytes_in = 0
        self.dropped_no_permission = 0
        self.bandwidth_dropped_out = 0  # over turn.user/realm_bandwidth, to peers
        self.bandwidth_dropped_in = 0  # the same, to clients
        self.allocations_closed: Counter[str] = Counter()  # by reason
        # Allocations by relayed family (ipv4, ipv6, dual) and RFC 8656
        # ADDRESS-ERROR-CODEs given for the IPv6 half of a dual request.
        self.allocation_families: Counter[str] = Counter()
        self.address_errors: Counter[int] = Counter()
        # RFC 6062 peer connections: connect_ok, connect_failed, accepted,
        # refused_no_permission, bound, bind_timeout, bind_unknown.
        self.tcp_connections: Counter[str] = Counter()
        # PROXY v2 on TCP/TLS listeners: accepted, local, or why closed.
        self.proxy_headers: Counter[str] = Counter()
        self.auth_failures: Counter[str] = Counter()
        # Authenticated requests by (password algorithm, integrity attribute).
        self.authenticated: Counter[tuple[str, str]] = Counter()
        self.userhash_requests = 0
        # REST-credential requests by the index of the secret that matched.
        self.rest_secret_matches: Counter[int] = Counter()
        self.denied_peers: Counter[str] = Counter()
        self.rejected: Counter[int] = Counter()  # error responses by code
        # Requests dropped unread: "oversized", "rate" (per-IP request window).
        self.dropped_requests: Counter[str] = Counter()
        self.active_allocations: Callable[[], int] = lambda: 0
        # Allocates sent elsewhere (300) by reason, or refused while draining.
        self.redirected: Counter[str] = Counter()
        self.draining: Callable[[], bool] = lambda: False

    def collect(self) -> Iterator[Metric]:
        """Prometheus metric families (``actrix_turn_*``)."""
        yield _counter("actrix_turn_bindings", "STUN Binding successes", self.bindings)
        yield _counter(
            "actrix_turn_malformed", "Dropped malformed STUN/TURN input", self.malformed
        )
        yield _counter(
            "actrix_turn_stream_aborted",
            "TCP/TLS connections aborted because the client stopped reading",
            self.stream_aborted,
        )
        yield _counter(
            "actrix_turn_allocations",
            "Allocations created",
            self.allocations_total,
        )
        gauge = GaugeMetricFamily(
            "actrix_turn_allocations_active", "Allocations alive now"
        )
        gauge.add_metric([], self.active_allocations())
        yield gauge
        drain = GaugeMetricFamily(
            "actrix_turn_draining", "1 while new allocations are not taken here"
        )
        drain.add_metric([], 1 if self.draining() else 0)
        yield drain
        redirected = CounterMetricFamily(
            "actrix_turn_redirected",
            "Allocate requests answered 300 Try Alternate (load, draining) or"
            " refused while draining without an alternate (refused_draining)",
            labels=["reason"],
        )
        for reason, count in sorted(self.redirected.items()):
            redirected.add_metric([reason], count)
        yield redirected
        packets = CounterMetricFamily(
            "actrix_turn_relayed_packets",
            "Datagrams relayed",
            labels=["direction"],
        )
        packets.add_metric(["to_peer"], self.relayed_packets_out)
        packets.add_metric(["to_client"], self.relayed_packets_in)
        yield packets
        octets = CounterMetricFamily(
            "actrix_turn_relayed_bytes",
            "Payload bytes relayed",
            labels=["direction"],
        )
        octets.add_metric(["to_peer"], self.relayed_bytes_out)
        octets.add_metric(["to_client"], self.relayed_bytes_in)
        yield octets
        yield _counter(
            "actrix_turn_dropped_no_permission",
            "Datagrams dropped for lack of a permission",
            self.dropped_no_permission,
        )
        over = CounterMetricFamily(
            "actrix_turn_bandwidth_dropped",
            "Datagrams dropped over turn.user_bandwidth / turn.realm_bandwidth",
            labels=["direction"],
        )
        over.add_metric(["to_peer"], self.bandwidth_dropped_out)
        over.add_metric(["to_client"], self.bandwidth_dropped_in)
        yield over
        families = CounterMetricFamily(
            "actrix_turn_allocations_by_family",
            "Allocations created by relayed address family (dual: RFC 8656)",
            labels=["family"],
        )
        for family, count in sorted(self.allocation_families.items()):
            families.add_metric([family], count)
        yield families
        address_errors = CounterMetricFamily(
            "actrix_turn_address_errors",
            "ADDRESS-ERROR-CODEs given for the IPv6 half of dual allocations",
            labels=["code"],
        )
        for code, count in sorted(self.address_errors.items()):
            address_errors.add_metric([str(code)], count)
        yield address_errors
        tcp = CounterMetricFamily(
            "actrix_turn_tcp_connections",
            "RFC 6062 TCP relay peer connections by event",
            labels=["event"],
        )
        for event, count in sorted(self.tcp_connections.items()):
            tcp.add_metric([event], count)
        yield tcp
        proxy = CounterMetricFamily(
            "actrix_turn_proxy_headers",
            "PROXY protocol v2 on the TCP/TLS listeners: accepted, local, or the"
            " reason a connection was closed",
            labels=["outcome"],
        )
        for outcome, count in sorted(self.proxy_headers.items()):
            proxy.add_metric([outcome], count)
        yield proxy
        closed = CounterMetricFamily(
            "actrix_turn_allocations_closed",
            "Allocations deleted, by reason",
            labels=["reason"],
        )
        for reason, count in sorted(self.allocations_closed.items()):
            closed.add_metric([reason], count)
        yield closed
        auth = CounterMetricFamily(
            "actrix_turn_auth_failures",
            "Rejected TURN credentials",
            labels=["reason"],
        )
        for reason, count in sorted(self.auth_failures.items()):
            auth.add_metric([reason], count)
        yield auth
        authenticated = CounterMetricFamily(
            "actrix_turn_authenticated_requests",
            "Authenticated TURN requests by password algorithm and integrity attribute",
            labels=["algorithm", "integrity"],
        )
        for (algorithm, integrity), count in sorted(self.authenticated.items()):
            authenticated.add_metric([algorithm, integrity], count)
        yield authenticated
        rest = CounterMetricFamily(
            "actrix_turn_rest_secret_matches",
            "REST-credential requests by the position of the secret that verified"
            " (0: the first listed; others are being rotated out)",
            labels=["secret"],
        )
        for index, count in sorted(self.rest_secret_matches.items()):
            rest.add_metric([str(index)], count)
        yield rest
        yield _counter(
            "actrix_turn_userhash_requests",
            "Authenticated TURN requests that named their user by USERHASH",
            self.userhash_requests,
        )
        denied = CounterMetricFamily(
            "actrix_turn_denied_peers", "Peer addresses refused", labels=["rule"]
        )
        for rule, count in sorted(self.denied_peers.items()):
            denied.add_metric([rule], count)
        yield denied
        dropped = CounterMetricFamily(
            "actrix_turn_dropped_requests",
            "STUN/TURN requests dropped before decoding",
            labels=["reason"],
        )
        for reason, count in sorted(self.dropped_requests.items()):
            dropped.add_metric([reason], count)
        yield dropped
        errors = CounterMetricFamily(
            "actrix_turn_error_responses",
            "STUN/TURN error responses sent",
            labels=["code"],
        )
        for code, count in sorted(self.rejected.items()):
            errors.add_metric([str(code)], count)
        yield errors


def _counter(name: str, documentation: str, value: int) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation)
    family.add_metric([], value)
    return family
