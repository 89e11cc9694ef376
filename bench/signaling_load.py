"""The signaling benchmark's load: worker processes and what each one does.

``bench/signaling.py`` starts each worker as ``signaling.py --worker MODE PORT
ARGS``; :func:`worker` runs one of :data:`MODES` against actrix or the minimal
relay and prints its result as one JSON line. Every mode is bounded by a count
and a time limit and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

REALM = 101
TOKEN_LEN = 308  # an AIS token of a 16-digit serial (ECIES of the claims JSON)


def worker(mode: str, port: int, args: dict[str, Any]) -> None:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    async def main() -> None:
        try:
            result = await MODES[mode](reactor, port, **args)
            print(json.dumps(result), flush=True)
        finally:
            reactor.stop()

    def start() -> None:
        d = Deferred.fromCoroutine(main())
        d.addErrback(lambda f: print(f.getTraceback(), file=sys.stderr))

    reactor.callWhenRunning(start)
    reactor.run()


async def _windowed(
    count: int, window: int, job: Callable[[int], Coroutine[Any, Any, None]]
) -> None:
    """Run ``job(i)`` for i < count with at most ``window`` in flight."""
    from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults

    semaphore = DeferredSemaphore(window)

    def start(i: int) -> Deferred[None]:
        return Deferred.fromCoroutine(job(i))

    await gatherResults([semaphore.run(start, i) for i in range(count)])


def _path(kind: str) -> str:
    return "/signaling/ws" if kind == "actrix" else "/"


def _pretend_actor(client: Any, name: str) -> None:
    """Give a minimal-relay client an ActrId and a token of a real one's size."""
    from actrix.proto import actr_pb2

    client.actr_id = actr_pb2.ActrId(
        realm=actr_pb2.Realm(realm_id=REALM),
        serial_number=int.from_bytes(os.urandom(8), "big") | 1 << 60,
        type=actr_pb2.ActrType(manufacturer="acme", name=name),
    )
    client.credential = actr_pb2.AIdCredential(
        encrypted_token=os.urandom(TOKEN_LEN), token_key_id=1
    )


async def hold(reactor: Any, port: int, count: int, kind: str) -> dict[str, Any]:
    """Open ``count`` idle connections (actrix: registered, pinged once).

    Reports ready, then waits for stdin EOF.
    """
    from twisted.internet.threads import deferToThread

    from tests.signaling_client import SignalingClient

    clients: list[SignalingClient] = []

    async def one(i: int) -> None:
        client = await SignalingClient.connect(reactor, port, path=_path(kind))
        if kind == "actrix":
            response = await client.register(REALM, name="held")
            assert response.HasField("success"), response
            await client.ping()
        clients.append(client)

    await _windowed(count, 64, one)
    print(json.dumps({"ready": len(clients)}), flush=True)
    await deferToThread(sys.stdin.read)
    for client in clients:
        client.drop()
    return {"held": len(clients)}


def _allow(name: str) -> Any:
    from actrix.proto import actr_pb2

    rule = actr_pb2.AclRule(permission=actr_pb2.AclRule.ALLOW)
    rule.principals.add().actr_type.CopyFrom(
        actr_pb2.ActrType(manufacturer="acme", name=name)
    )
    return actr_pb2.Acl(rules=[rule])


async def make_pairs(
    reactor: Any, port: int, pairs: int, kind: str, sender_port: int | None = None
) -> list[tuple[Any, Any]]:
    """``pairs`` sender/receiver pairs: registered (receiver allows sender) on
    actrix, paired by ``?pair=`` on the minimal relay. ``sender_port``: the
    senders connect there (another node of a cluster: ``bench/cluster.py``)."""
    from tests.signaling_client import SignalingClient

    made: list[tuple[Any, Any]] = []

    async def one(i: int) -> None:
        if kind == "actrix":
            receiver = await SignalingClient.connect(reactor, port)
            await receiver.register(REALM, name="receiver", acl=_allow("sender"))
            sender = await SignalingClient.connect(reactor, sender_port or port)
            response = await sender.register(REALM, name="sender")
            if not response.HasField("success"):
                raise RuntimeError(f"register failed: {response}")
        else:
            query = {"pair": f"{os.getpid()}-{i}"}
            receiver = await SignalingClient.connect(reactor, port, query, path="/")
            sender = await SignalingClient.connect(reactor, port, query, path="/")
            _pretend_actor(receiver, "receiver")
            _pretend_actor(sender, "sender")
        made.append((sender, receiver))

    await _windowed(pairs, 16, one)
    return made


async def relay(
    reactor: Any,
    port: int,
    pairs: int,
    seconds: float,
    window: int,
    rate: float,
    kind: str,
    sender_port: int | None = None,
    settle: float = 0.0,
) -> dict[str, Any]:
    """Pairs of actors relaying SDP/ICE; one-way latency per message.

    ``rate > 0``: open loop, this worker offers ``rate`` relays/s spread over
    its pairs (sent in 2 ms ticks) whatever the server does, so latency is
    measured at that load. ``rate == 0``: closed loop, each sender keeps
    ``window`` relays in flight (a new one leaves when one arrives), which
    measures the server's maximum throughput.
    """
    from relay_links import RelayPair
    from twisted.internet.defer import Deferred
    from twisted.internet.task import LoopingCall, deferLater
    from twisted.internet.threads import deferToThread

    latencies: list[float] = []
    clients = await make_pairs(reactor, port, pairs, kind, sender_port)
    if settle:
        # In a cluster the receivers' ACL rows reach the other processes'
        # realm caches within a second (they poll the shared store).
        await deferLater(reactor, settle, lambda: None)
    links = [RelayPair(sender, receiver, latencies) for sender, receiver in clients]
    # Warm-up, not measured: each sender's first relay costs the server one
    # token decryption; later ones hit its token cache.
    warm: Deferred[None] = Deferred()

    def warmed(pair: RelayPair) -> None:
        if len(latencies) == len(links) and not warm.called:
            warm.callback(None)

    for pair in links:
        pair.on_receive = warmed
        pair.send()
    warm.addTimeout(30, reactor)
    await warm
    latencies.clear()
    await deferLater(reactor, 0.2, lambda: None)
    # Tell the orchestrator, which starts the server CPU count and says go.
    print(json.dumps({"warm": len(links)}), flush=True)
    await deferToThread(sys.stdin.readline)
    begin = time.monotonic()
    stop_at = begin + seconds
    drained: Deferred[None] = Deferred()

    def check_drained(pair: RelayPair) -> None:
        if (
            time.monotonic() >= stop_at
            and not drained.called
            and not any(p.outstanding for p in links)
        ):
            drained.callback(None)

    if rate > 0:
        offered = [0]

        def tick() -> None:
            now = time.monotonic()
            if now >= stop_at:
                ticker.stop()
                check_drained(links[0])
                return
            due = int((now - begin) * rate) - offered[0]
            for _ in range(due):
                links[offered[0] % len(links)].send()
                offered[0] += 1

        for pair in links:
            pair.on_receive = check_drained
        ticker = LoopingCall(tick)
        ticker.start(0.002)
    else:

        def again(pair: RelayPair) -> None:
            if time.monotonic() < stop_at:
                pair.send()
            else:
                check_drained(pair)

        for pair in links:
            pair.on_receive = again
            for _ in range(window):
                pair.send()
    drained.addTimeout(seconds + 30, reactor)
    await drained
    elapsed = time.monotonic() - begin
    sent = sum(p.sent for p in links) - len(links)
    for sender, receiver in clients:
        sender.drop()
        receiver.drop()
    return {
        "messages": len(latencies),
        "sent": sent,
        "seconds": elapsed,
        "latencies": latencies,
    }


async def cycle(
    reactor: Any,
    port: int,
    kind: str,
    seconds: float,
    window: int,
    rate: float,
    limit: int,
) -> dict[str, Any]:
    """Connect, register, one message, close, again (at most ``limit`` cycles).

    actrix: Register, then one Ping answered by a Pong. Minimal relay: one
    message of a Ping's size that comes back. ``rate > 0`` starts cycles at
    that rate (open loop, at most 512 in flight); else ``window`` loops run
    back to back.
    """
    from twisted.internet.defer import Deferred
    from twisted.internet.task import LoopingCall

    from tests.signaling_client import SignalingClient

    done = [0, 0]  # completed, failed

    async def one() -> None:
        client = await SignalingClient.connect(reactor, port, path=_path(kind))
        try:
            if kind == "actrix":
                response = await client.register(REALM, name="cycle")
                assert response.HasField("success"), response
                pong = await client.ping()
                assert pong.HasField("pong"), pong
            else:
                _pretend_actor(client, "cycle")
                envelope, body = client.actor_envelope()
                body.ping.power_reserve = 1.0
                envelope.reply_for = envelope.envelope_id
                await client.request(envelope)
            done[0] += 1
        finally:
            await client.close()

    async def safe() -> None:
        try:
            await one()
        except Exception:
            done[1] += 1

    begin = time.monotonic()
    stop_at = begin + seconds
    finished: Deferred[None] = Deferred()
    in_flight = [0]
    started = [0]

    def ended(_: object) -> None:
        in_flight[0] -= 1
        if time.monotonic() >= stop_at or started[0] >= limit:
            if not in_flight[0] and not finished.called:
                finished.callback(None)
        elif rate <= 0:
            start()

    def start() -> None:
        started[0] += 1
        in_flight[0] += 1
        Deferred.fromCoroutine(safe()).addBoth(ended)

    if rate > 0:

        def tick() -> None:
            now = time.monotonic()
            if now >= stop_at or started[0] >= limit:
                ticker.stop()
                if not in_flight[0] and not finished.called:
                    finished.callback(None)
                return
            due = min(int((now - begin) * rate), limit) - started[0]
            for _ in range(due):
                if in_flight[0] < 512:
                    start()
                else:
                    started[0] += 1
                    done[1] += 1

        ticker = LoopingCall(tick)
        ticker.start(0.002)
    else:
        for _ in range(window):
            start()
    finished.addTimeout(seconds + 30, reactor)
    await finished
    return {"cycles": done[0], "failed": done[1], "seconds": time.monotonic() - begin}


async def arrivals(
    reactor: Any, port: int, seconds: float, rate: float, limit: int
) -> dict[str, Any]:
    """Registrations arriving at ``rate``/s from a cheap raw client.

    Each one is a new TCP connection that writes the upgrade request, then a
    pre-serialised Register frame, waits for the answer frame and drops the
    socket: the server does a full connect + register, the worker spends
    little CPU, so the figure is the server's.
    """
    from relay_links import client_frame
    from twisted.internet.defer import Deferred
    from twisted.internet.protocol import ClientFactory, Protocol
    from twisted.internet.task import LoopingCall

    from actrix.proto import signaling_pb2

    envelope = signaling_pb2.SignalingEnvelope(envelope_version=1)
    envelope.envelope_id = "bench-register"
    envelope.timestamp.seconds = 0
    request = envelope.peer_to_server.register_request
    request.realm.realm_id = REALM
    request.actr_type.manufacturer = "acme"
    request.actr_type.name = "arrival"
    opening = (
        b"GET /signaling/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    frame = client_frame(envelope.SerializeToString())
    done = [0, 0]  # answered, failed
    in_flight = [0]

    class Arrival(Protocol):
        answered = False
        seen = b""

        def connectionMade(self) -> None:
            self.transport.setTcpNoDelay(True)  # type: ignore[attr-defined]
            self.transport.write(opening)  # type: ignore[union-attr]

        def dataReceived(self, data: bytes) -> None:
            # The Register follows the 101 (Twisted Web would not pass on bytes
            # sent behind the upgrade request).
            opened = b"\r\n\r\n" in self.seen
            self.seen += data
            head = self.seen.find(b"\r\n\r\n")
            if head < 0:
                return
            if not opened:
                self.transport.write(frame)  # type: ignore[union-attr]
            if len(self.seen) > head + 6 and not self.answered:
                self.answered = True
                done[0] += 1
                self.transport.abortConnection()  # type: ignore[union-attr]

        def connectionLost(self, reason: Any = None) -> None:
            in_flight[0] -= 1
            if not self.answered:
                done[1] += 1

    class Arrivals(ClientFactory):
        protocol = Arrival

        def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
            in_flight[0] -= 1
            done[1] += 1

    factory = Arrivals()
    begin = time.monotonic()
    stop_at = begin + seconds
    finished: Deferred[None] = Deferred()
    started = [0]

    def tick() -> None:
        now = time.monotonic()
        if now >= stop_at or started[0] >= limit:
            if not in_flight[0] and not finished.called:
                ticker.stop()
                finished.callback(None)
            return
        due = min(int((now - begin) * rate), limit) - started[0]
        for _ in range(due):
            started[0] += 1
            in_flight[0] += 1
            reactor.connectTCP("127.0.0.1", port, factory, timeout=5)

    ticker = LoopingCall(tick)
    ticker.start(0.002)
    finished.addTimeout(seconds + 30, reactor)
    await finished
    return {"cycles": done[0], "failed": done[1], "seconds": time.monotonic() - begin}


MODES: dict[str, Any] = {
    "arrivals": arrivals,
    "hold": hold,
    "relay": relay,
    "cycle": cycle,
}
