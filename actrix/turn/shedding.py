"""Load spreading and draining: ALTERNATE-SERVER redirects (RFC 8489 §10).

A new allocation is not made here, and the Allocate is answered 300 (Try
Alternate) with an ALTERNATE-SERVER from ``turn.alternate_servers``, when

* this node is draining (``actrix turn drain``: the daemon polls a flag on its
  sweep through an injected probe), or
* it already holds ``turn.redirect_above`` allocations (0: never by load).

RFC 8489 §14.15: the alternate's address family must be the request's, so
the servers are kept per family and handed out round robin; with none of the
client's family a draining node answers 508 (Insufficient Capacity) and a
loaded one just carries on. A client on TLS gets the alternate's
``tls_port`` and, when the entry names a ``domain``, an ALTERNATE-DOMAIN
(§14.16) with it: the name it must check the alternate's certificate
against (without one it checks the name it first used, §10). The redirect
comes after authentication, so the 300 is signed (§10: an unauthenticated
redirect could be forged). Existing allocations are untouched: they may be
refreshed and run until they end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import cycle

from twisted.logger import Logger

from actrix.core.settings import AlternateServer
from actrix.core.toml_table import parse_server
from actrix.stun import codec
from actrix.turn.metrics import TurnMetrics

log = Logger()


class _Alternate:
    """One alternate's attributes, encoded once: for TLS clients and the others."""

    __slots__ = ("plain", "tls")

    def __init__(self, server: AlternateServer) -> None:
        ip, port = parse_server(server.address)
        self.plain: list[tuple[int, bytes]] = [
            (codec.ALTERNATE_SERVER, codec.encode_address(ip, port))
        ]
        self.tls: list[tuple[int, bytes]] = [
            (
                codec.ALTERNATE_SERVER,
                codec.encode_address(ip, server.tls_port or port),
            )
        ]
        if server.domain is not None:
            self.tls.append((codec.ALTERNATE_DOMAIN, server.domain.encode("ascii")))


Redirect = tuple[int, list[tuple[int, bytes]]]
"""(300, ALTERNATE-SERVER and maybe ALTERNATE-DOMAIN) or (508, [])."""


class LoadShedding:
    """Decides whether a new allocation goes elsewhere."""

    def __init__(
        self,
        metrics: TurnMetrics,
        alternates: Iterable[AlternateServer] = (),
        redirect_above: int = 0,
        drain_probe: Callable[[], bool] | None = None,
    ) -> None:
        self._metrics = metrics
        servers = list(alternates)
        v4 = [_Alternate(a) for a in servers if ":" not in parse_server(a.address)[0]]
        v6 = [_Alternate(a) for a in servers if ":" in parse_server(a.address)[0]]
        self._v4: Iterator[_Alternate] | None = cycle(v4) if v4 else None
        self._v6: Iterator[_Alternate] | None = cycle(v6) if v6 else None
        self._redirect_above = redirect_above
        self._drain_probe = drain_probe
        self.draining = False

    def refresh(self) -> None:
        """Re-read the drain flag (the service's sweep calls this each second)."""
        probe = self._drain_probe
        if probe is None:
            return
        try:
            draining = probe()
        except OSError:
            log.failure("while reading the TURN drain flag")
            return
        if draining != self.draining:
            self.draining = draining
            log.info(
                "TURN {state}: {what}",
                state="draining" if draining else "drain cancelled",
                what="new allocations go to alternate servers or get 508"
                if draining
                else "accepting new allocations",
            )

    def check(self, client_ip: str, active: int, tls: bool = False) -> Redirect | None:
        """None to allocate here, else the error code and its attributes.

        ``tls``: the client came over TLS (its alternate's TLS port, and the
        ALTERNATE-DOMAIN when one is configured).
        """
        if self.draining:
            reason = "draining"
        elif self._redirect_above and active >= self._redirect_above:
            reason = "load"
        else:
            return None
        servers = self._v6 if ":" in client_ip else self._v4
        if servers is None:
            if reason == "load":
                return None
            self._metrics.redirected["refused_draining"] += 1
            return 508, []
        self._metrics.redirected[reason] += 1
        alternate = next(servers)
        return 300, alternate.tls if tls else alternate.plain
