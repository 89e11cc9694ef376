"""The TURN server (RFC 5766, RFC 6156): lifecycle and request dispatch.

UDP, TCP and TLS protocols decode messages and hand them here with a
:class:`~actrix.turn.allocation.ClientLink` to answer on; relayed data goes
straight to :attr:`TurnService.data` (:mod:`actrix.turn.datapath`), the one
place for the relay rule. The work is split along its concerns, each in its
own module, and wired here:

* :mod:`~actrix.turn.authn`: long-term-credential checks of requests;
* :mod:`~actrix.turn.allocator` (+ :mod:`~actrix.turn.relayports`):
  allocations, permissions, channels, relay sockets and reservations;
* :mod:`~actrix.turn.quotas`: allocations per user and in total, per-IP rates;
* :mod:`~actrix.turn.bandwidth`: relayed bytes/s caps per user and per realm;
* :mod:`~actrix.turn.shedding`: ALTERNATE-SERVER redirects and draining;
* :mod:`~actrix.turn.responses`: encoding and sending the answers.

This class owns the sweep timer (an injected clock) and shutdown. Everything
runs synchronously except the first validation of an actr username, whose
request is answered when :meth:`TurnAuth.resolve` completes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from actrix.core.config import TurnConfig
from actrix.core.logthrottle import LogThrottle
from actrix.stun import codec
from actrix.stun.codec import Message
from actrix.stun.credentials import (
    FEATURE_PASSWORD_ALGORITHMS,
    FEATURE_USERNAME_ANONYMITY,
    encode_password_algorithms,
    nonce_cookie,
)
from actrix.turn.allocation import Allocation, ClientLink, RelayOpener
from actrix.turn.allocator import Allocator
from actrix.turn.auth import TurnAuth
from actrix.turn.authn import RequestAuth
from actrix.turn.bandwidth import Bandwidth
from actrix.turn.datapath import DataPath
from actrix.turn.limits import NonceIssuer
from actrix.turn.metrics import TurnMetrics
from actrix.turn.peers import PeerPolicy
from actrix.turn.quotas import Quotas
from actrix.turn.responses import Reject, Responses
from actrix.turn.shedding import LoadShedding
from actrix.turn.tcprelay import TcpConnect, TcpListen

log = Logger()

SWEEP_INTERVAL: Final = 1.0

_TURN_METHODS: Final = frozenset(
    {
        codec.METHOD_ALLOCATE,
        codec.METHOD_REFRESH,
        codec.METHOD_CREATE_PERMISSION,
        codec.METHOD_CHANNEL_BIND,
        codec.METHOD_CONNECT,
        codec.METHOD_CONNECTION_BIND,
    }
)


class TurnService(Service):
    """Allocations, permissions, channels and relaying for every ICE transport."""

    name = "turn"

    def __init__(
        self,
        config: TurnConfig,
        clock: IReactorTime,
        auth: TurnAuth,
        metrics: TurnMetrics,
        open_relay: RelayOpener,
        *,
        relay_bind_ip: str = "0.0.0.0",  # noqa: S104 (relays face the Internet)
        software: str = "",
        peers: PeerPolicy | None = None,
        sweep_interval: float = SWEEP_INTERVAL,
        drain_probe: Callable[[], bool] | None = None,
        tcp_openers: tuple[TcpListen, TcpConnect] | None = None,
        account_traffic: bool = False,
    ) -> None:
        self._clock = clock
        self.clock = clock
        self.metrics = metrics
        self.request_rate_per_ip = config.request_rate_per_ip
        peers = peers or PeerPolicy(config.peer_allow)
        features = FEATURE_PASSWORD_ALGORITHMS
        if config.userhash:
            features |= FEATURE_USERNAME_ANONYMITY
        nonces = NonceIssuer(
            clock, config.nonce_lifetime, cookie=nonce_cookie(features)
        )
        # Refused requests and rejected credentials log a warn line each; a
        # client with a valid nonce could otherwise drive the log volume.
        log_throttle = LogThrottle(clock)
        self.data = DataPath(metrics, peers)
        self.shedding = LoadShedding(
            metrics,
            config.alternate_servers,
            config.redirect_above,
            drain_probe,
        )
        self._responses = Responses(
            metrics,
            config.realm,
            nonces,
            software,
            encode_password_algorithms(config.password_algorithms),
        )
        self._quotas = Quotas(config, clock, self._responses, log_throttle)
        self._authn = RequestAuth(
            clock,
            auth,
            nonces,
            self._quotas,
            self._responses,
            metrics,
            log_throttle,
            algorithms=config.password_algorithms,
            userhash=config.userhash,
        )
        self._allocator = Allocator(
            config,
            clock,
            self.data,
            self._quotas,
            self._responses,
            metrics,
            peers,
            open_relay,
            relay_bind_ip,
            Bandwidth(clock, config.user_bandwidth, config.realm_bandwidth),
            self.shedding,
            tcp_openers if config.tcp_relay else None,
            log_throttle,
        )
        # The admin API lists bytes and packets per allocation: count them.
        self._allocator.account = self._allocator.account or account_traffic
        self._sweeper = LoopingCall(self.sweep)
        self._sweeper.clock = clock
        self._sweep_interval = sweep_interval
        metrics.active_allocations = lambda: len(self.data.allocations)
        metrics.draining = lambda: self.shedding.draining

    @property
    def auth(self) -> TurnAuth:
        """The credential source (its key cache is inspected by tests)."""
        return self._authn.auth

    @property
    def allocations(self) -> dict[Any, Allocation]:
        """The allocation table, by client 5-tuple (read-only for callers)."""
        return self.data.allocations

    def terminate(self, allocation: Allocation) -> None:
        """Delete an allocation now (the admin API): relay closed, port freed."""
        closing = self._allocator.delete(allocation, "terminated")
        if closing is not None:
            closing.addErrback(_log_close_failure)

    # -- lifecycle -------------------------------------------------------

    @property
    def tcp_connections(self) -> int:
        """RFC 6062 peer connections alive (tests check nothing leaks)."""
        return self._allocator.tcp_connections

    def health(self) -> dict[str, Any]:
        """The TURN part of ``/health``: draining and allocations now."""
        return {
            "draining": self.shedding.draining,
            "allocations": len(self.data.allocations),
            "relay_ports_free": self._allocator.free_ports,
        }

    def startService(self) -> None:
        super().startService()
        self.shedding.refresh()
        self._authn.resume = self.handle_message
        self._sweeper.start(self._sweep_interval, now=False)

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        self._authn.resume = None
        if self._sweeper.running:
            self._sweeper.stop()
        closing = self._allocator.close_all()
        self._authn.clear()
        return DeferredList(closing, consumeErrors=True)

    def sweep(self) -> None:
        """Expire allocations, permissions, channels and reservations."""
        self._responses.refresh_debug()
        self.shedding.refresh()
        self._allocator.sweep(self._clock.seconds())

    # -- entry points from the protocols ---------------------------------

    def handle_message(self, message: Message, link: ClientLink) -> None:
        """Handle one decoded non-Binding STUN message from a client."""
        if message.msg_type == codec.SEND_INDICATION:
            self.data.send_indication(message, link.allocation_key)
            return
        if message.msg_class != codec.CLASS_REQUEST:
            return  # responses and other indications are not for us
        if message.method not in _TURN_METHODS:
            self._responses.error(message, link, 400)
            return
        allocated = link.allocation_key in self.data.allocations
        grant = self._authn.authenticate(message, link, allocated)
        if grant is None:
            return
        try:
            self._allocator.handle(message, link, grant)
        except Reject as reject:
            self._responses.error(
                message, link, reject.code, grant.key, reject.unknown, reject.extra
            )
        except codec.DecodeError:
            self.metrics.malformed += 1
            self._responses.error(message, link, 400, grant.key)

    # -- revocation ------------------------------------------------------

    def terminate_actor(self, realm_id: int, serial: int, why: str) -> int:
        """Delete the allocations made with an actor's tokens; how many.

        The actor's cached keys go too, so its next request is validated
        again (and refused while it is revoked).
        """
        return self.terminate_principals(f"actr:{realm_id}:{serial:x}@", why)

    def terminate_realm(self, realm_id: int, why: str) -> int:
        """Delete the allocations of every actor token of a realm; how many."""
        return self.terminate_principals(f"actr:{realm_id}:", why)

    def terminate_principals(self, prefix: str, why: str) -> int:
        """Delete every allocation whose principal starts with ``prefix``."""
        self.auth.forget_principals(prefix)
        doomed = [
            a for a in self.data.allocations.values() if a.principal.startswith(prefix)
        ]
        for allocation in doomed:
            closing = self._allocator.delete(allocation, why)
            if closing is not None:
                closing.addErrback(_log_close_failure)
        return len(doomed)

    def connection_lost(self, link: ClientLink) -> None:
        """A TCP/TLS client went away: its allocation and waiting requests go too.

        A request still waiting for its username's validation must not be
        handled once the connection is gone: an Allocate would create an
        allocation (and hold a relay port) for a link nobody can use.
        """
        allocation = self.data.allocations.get(link.allocation_key)
        if allocation is not None:
            self._allocator.delete(allocation, "connection closed")
        self._authn.forget_link(link)


def _log_close_failure(failure: Failure) -> None:
    log.failure("closing the relay of a terminated allocation", failure)
