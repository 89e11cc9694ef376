"""Run by test_turn_clients: relay datagrams through a TURN server with aioice.

Usage: python aioice_turn_client.py HOST PORT udp|tcp|tls USERNAME PASSWORD COUNT

Starts an asyncio UDP echo peer on 127.0.0.1, allocates with aioice, sends
COUNT datagrams to the peer through the relay, waits for each echo and prints
one JSON line: {"relayed": [ip, port], "echoed": n}.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from typing import Any

from aioice import turn


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)


async def main(argv: list[str]) -> dict[str, Any]:
    host, port, kind, username, password, count = argv
    loop = asyncio.get_running_loop()
    peer, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    peer_addr = peer.get_extra_info("sockname")
    context: ssl.SSLContext | None = None
    if kind == "tls":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    transport, inbox = await turn.create_turn_endpoint(
        _Inbox,
        (host, int(port)),
        username,
        password,
        ssl=context,
        transport="udp" if kind == "udp" else "tcp",
    )
    echoed = 0
    try:
        for i in range(int(count)):
            message = f"ping {i}".encode()
            transport.sendto(message, peer_addr)
            reply = await asyncio.wait_for(inbox.queue.get(), 5)
            if reply == message:
                echoed += 1
        relayed = transport.get_extra_info("sockname")
    finally:
        transport.close()
        peer.close()
    return {"relayed": list(relayed[:2]), "echoed": echoed}


if __name__ == "__main__":
    result = asyncio.run(asyncio.wait_for(main(sys.argv[1:]), 30))
    sys.stdout.write(json.dumps(result) + "\n")
