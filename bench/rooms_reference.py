"""A bare forwarder for bench/rooms.py: the same clients, the same box, no actrix.

It speaks just enough of ``/rooms/ws`` for the bench's :class:`RawPeer`: it
answers the upgrade, sends the welcome ACK with a peer id, ACKs a JOIN (echoing
its ``request_id``), and forwards every frame naming a ``target_id`` to that
peer as an unmasked text frame carrying the sender's own JSON text: no JSON
parsing on the relay path, no WebSocket library, no rooms, no checks. Run in
the same minutes as the daemon, its relay latency is the floor that Twisted,
loopback TCP and the box's scheduling leave to any Python relay; the daemon's
figures are read against it. Not a server for anything else: it trusts its
clients (the bench's, masking with the all-zero key) completely.

    .venv/bin/python bench/rooms_reference.py   # prints its port
"""

from __future__ import annotations

import gc
import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

UPGRADE = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\n\r\n"
)
TARGET = b'"target_id":"'


class Forwarder(Protocol):
    factory: ForwarderFactory

    def connectionMade(self) -> None:
        transport: Any = self.transport
        transport.setTcpNoDelay(True)
        self.buffer = b""
        self.upgraded = False
        self.factory.count += 1
        self.peer_id = f"{self.factory.count:08x}"
        self.factory.peers[self.peer_id] = self

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.factory.peers.pop(self.peer_id, None)

    def send_text(self, data: bytes) -> None:
        n = len(data)
        head = bytes((0x81, n)) if n < 126 else b"\x81\x7e" + n.to_bytes(2, "big")
        assert self.transport is not None
        self.transport.write(head + data)

    def dataReceived(self, data: bytes) -> None:
        buf = self.buffer + data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buf
                return
            self.upgraded = True
            assert self.transport is not None
            self.transport.write(UPGRADE)
            self.send_text(b'{"type":"ACK","peer_id":"%s"}' % self.peer_id.encode())
            buf = buf[end + 4 :]
        pos = 0
        size = len(buf)
        # Client frames: FIN+text, masked (4 zero key bytes), 7- or 16-bit length.
        while size - pos >= 6:
            n = buf[pos + 1] & 0x7F
            head = 6
            if n == 126:
                if size - pos < 8:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 8
            if size - pos < head + n:
                break
            self.message(buf[pos + head : pos + head + n])
            pos += head + n
        self.buffer = buf[pos:]

    def message(self, payload: bytes) -> None:
        i = payload.find(TARGET)
        if i >= 0:
            start = i + len(TARGET)
            target = self.factory.peers.get(payload[start : start + 8].decode())
            if target is not None:
                target.send_text(payload)
            return
        request = json.loads(payload)  # JOIN, during setup only
        reply = {"type": "ACK", "peer_id": self.peer_id}
        if request.get("request_id"):
            reply["request_id"] = request["request_id"]
        self.send_text(json.dumps(reply).encode())


class ForwarderFactory(Factory):
    protocol: Any = Forwarder

    def __init__(self) -> None:
        self.peers: dict[str, Forwarder] = {}
        self.count = 0


def main() -> None:
    factory: Any = ForwarderFactory()
    port: Any = reactor.listenTCP(0, factory, interface="127.0.0.1")
    gc.collect()
    gc.freeze()  # as the daemon's settle_heap does
    print(port.getHost().port, flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
