"""Which peer addresses a TURN relay may reach: a deny-list with a config allow-list.

By default a relay must not become a way into the server's own networks, so
loopback, private, link-local, multicast and similar ranges are refused
(CreatePermission, ChannelBind, Send → 403). IPv4-mapped (``::ffff:a.b.c.d``)
and IPv4-compatible (``::a.b.c.d``) IPv6 addresses are turned into their IPv4
form before matching, so ``::ffff:127.0.0.1`` is loopback too. ``turn.peer_allow``
networks are let through first (the dev config allows 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DENY_RULES: Final[tuple[tuple[str, str], ...]] = (
    ("0.0.0.0/8", "this-network"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared-address"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # includes 255.255.255.255 broadcast
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fc00::/7", "unique-local"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
    ("2001::/32", "teredo"),
    ("2002::/16", "6to4"),
)

_CACHE_LIMIT: Final = 4096


def normalise(address: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped or IPv4-compatible IPv6 address."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return mapped
        value = int(address)
        # IPv4-compatible ::a.b.c.d (deprecated, RFC 4291 §2.5.5.1), but not ::
        # and ::1, which keep their own IPv6 meaning.
        if value >> 32 == 0 and value > 1:
            return ipaddress.IPv4Address(value)
    return address


class PeerPolicy:
    """Decides whether a peer IP may be relayed to; results are memoised."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self._allow: list[IPNetwork] = [
            ipaddress.ip_network(n, strict=False) for n in allow
        ]
        self._deny: list[tuple[IPNetwork, str]] = [
            (ipaddress.ip_network(net), rule) for net, rule in DENY_RULES
        ]
        self._cache: dict[str, str | None] = {}

    def denied_rule(self, ip: str) -> str | None:
        """The name of the deny rule ``ip`` falls under, or None if allowed.

        An unparsable address is denied as ``invalid``.
        """
        cache = self._cache
        if ip in cache:
            return cache[ip]
        rule = self._decide(ip)
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[ip] = rule
        return rule

    def _decide(self, ip: str) -> str | None:
        try:
            raw = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return "invalid"
        address = normalise(raw)
        for network in self._allow:
            if address in network or raw in network:
                return None
        for network, rule in self._deny:
            if address in network:
                return rule
        return None
