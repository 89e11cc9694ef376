"""Load spreading and draining: ALTERNATE-SERVER redirects (RFC 8489 §10).

A new allocation is not made here, and the Allocate is answered 300 (Try
Alternate) with an ALTERNATE-SERVER from ``turn.alternate_servers``, when

* this node is draining (``actrix turn drain``: the daemon polls a flag on its
  sweep through an injected probe), or
* it already holds ``turn.redirect_above`` allocations (0: never by load).

RFC 8489 §14.15: the alternate's address family must be the request's, so
the servers are kept per family and handed out round robin; with none of the
client's family a draining node answers 508 (Insufficient Capacity) and a
loaded one just carries on. The redirect comes after authentication, so the
300 is signed (§10: an unauthenticated redirect could be forged). Existing
allocations are untouched: they may be refreshed and run until they end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import cycle

from twisted.logger import Logger

from actrix.stun import codec
from actrix.turn.metrics import TurnMetrics

log = Logger()


class LoadShedding:
    """Decides whether a new allocation goes elsewhere."""

    def __init__(
        self,
        metrics: TurnMetrics,
        alternates: Iterable[tuple[str, int]] = (),
        redirect_above: int = 0,
        drain_probe: Callable[[], bool] | None = None,
    ) -> None:
        self._metrics = metrics
        v4 = [a for a in alternates if ":" not in a[0]]
        v6 = [a for a in alternates if ":" in a[0]]
        self._v4 = cycle(v4) if v4 else None
        self._v6 = cycle(v6) if v6 else None
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

    def check(self, client_ip: str, active: int) -> tuple[int, bytes | None] | None:
        """None to allocate here, else (300, ALTERNATE-SERVER value) or (508, None)."""
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
            return 508, None
        self._metrics.redirected[reason] += 1
        ip, port = next(servers)
        return 300, codec.encode_address(ip, port)
