"""STUN/TURN benchmark: actrix (and, with --pair, coturn) on loopback.

Starts the server as its own process, then drives bounded load from this
process (raw non-blocking sockets + epoll, so the generator stays cheap):

* binding: 32 sockets (on 32 loopback source addresses) x 4 Binding requests
  in flight;
* alloc: 16 concurrent clients cycling 401 -> authenticated Allocate -> Refresh 0;
* relay: 32 allocations x 8 in flight, 100-byte ChannelData to an echo peer
  (in this process), with RTT p50/p99 and loss;
* senddata: the same with Send indications out and Data indications back;
* relay1000: the relay phase with 1000-byte ChannelData;
* tcprelay: the relay phase with the clients on TCP (32 connections, padded
  ChannelData frames, 100 bytes, 8 in flight; the relays stay UDP);
* flood: one allocation relays 100-byte ChannelData at a fixed 2 000/s via the
  echo peer while another process floods the same server port with Binding
  requests from one source address as fast as it can; reports the relayed
  stream's loss and the flood rate offered;
* rss: daemon RSS growth per idle allocation at N allocations.

For binding, alloc and the relay phases the server's CPU time (all threads,
from /proc) per operation is reported too (``*_cpu_us``), which does not
depend on how fast this single-threaded load generator is. Every phase stops
at a count or a time limit. With --pair both servers run at once and each
phase alternates between them ``--repeat`` times; the best run of each is
kept (for the flood, the worst). Prints a table and one ``RESULT name=value
...`` line (ours, coturn's and the ratios with --pair).
coturn is started from the Debian ``turnserver`` binary and stopped by its PID.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actrix.stun import codec  # noqa: E402

REALM = "actor-rtc.local"
USER, PASSWORD = "alice", "alice-password"
KEY = codec.long_term_key(USER, REALM, PASSWORD)
TRANSPORT_ATTR = (codec.REQUESTED_TRANSPORT, codec.encode_requested_transport())
ALLOCATE = codec.message_type(codec.METHOD_ALLOCATE, codec.CLASS_REQUEST)
REFRESH = codec.message_type(codec.METHOD_REFRESH, codec.CLASS_REQUEST)
CHANNEL_BIND = codec.message_type(codec.METHOD_CHANNEL_BIND, codec.CLASS_REQUEST)
_STAMP = struct.Struct("!IId")


# ---------------------------------------------------------------------------
# Servers


class Server:
    """A server process on 127.0.0.1:port."""

    name = ""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        raise NotImplementedError

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process (every thread)."""
        if self.proc is None:
            return 0.0
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1]
        utime, stime = fields.split()[11:13]
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")

    def rss(self) -> int:
        if self.proc is None:
            return 0
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(0.2)
        request = codec.encode(codec.BINDING_REQUEST, os.urandom(12), [])
        try:
            while time.monotonic() < deadline:
                sock.sendto(request, ("127.0.0.1", self.port))
                try:
                    sock.recvfrom(2048)
                    return
                except OSError:
                    continue
        finally:
            sock.close()
        raise SystemExit(f"{self.name} did not answer on port {self.port}")


class Actrix(Server):
    name = "actrix"

    def __init__(
        self, port: int, workdir: Path, ports: tuple[int, int], extra: str = ""
    ) -> None:
        super().__init__(port, workdir)
        self.ports = ports
        self.extra = extra  # TOML appended (--admin-pair: the admin API on)
        if extra:
            self.name = "admin"
            self.workdir = workdir / "admin"
            self.workdir.mkdir()

    def start(self) -> None:
        config = self.workdir / "actrix.toml"
        config.write_text(
            f"""
enable = 6
name = "bench"
env = "dev"
location_tag = "bench"
sqlite_path = "{self.workdir}"
actrix_shared_key = "bench-only-shared-key-0123456789abcdef"
[bind.ice]
domain_name = "localhost"
ip = "127.0.0.1"
port = {self.port}
[turn]
advertised_ip = "127.0.0.1"
relay_port_range = "{self.ports[0]}-{self.ports[1]}"
realm = "{REALM}"
peer_allow = ["127.0.0.1/32"]
max_allocations_per_user = 100000
max_allocations_total = 100000
allocation_rate_per_ip = 1000000.0
allocation_burst_per_ip = 1000000
# Binding load below comes from 32 addresses (~4 000/s each); the flood from one.
request_rate_per_ip = 10000
[turn.users]
{USER} = "{PASSWORD}"
[observability]
filter_level = "info"
{self.extra}"""
        )
        twistd = Path(sys.executable).parent / "twistd"
        self.proc = subprocess.Popen(
            [
                str(twistd),
                "--nodaemon",
                "--pidfile=",
                # As in production (debian/actrix.service): filtered at
                # observability.filter_level; twistd's default observer would
                # also write every debug line.
                "--logger",
                "actrix.core.logging.json_observer",
                "actrix",
                "-c",
                str(config),
            ],
            stdout=(self.workdir / "actrix.log").open("wb"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        self.wait_ready()


class Coturn(Server):
    name = "coturn"

    def __init__(self, port: int, workdir: Path, ports: tuple[int, int]) -> None:
        super().__init__(port, workdir)
        self.ports = ports

    def start(self) -> None:
        binary = shutil.which("turnserver")
        if binary is None:
            raise SystemExit("turnserver not found (apt-get install coturn)")
        self.proc = subprocess.Popen(
            [
                binary,
                "-n",
                "--listening-ip=127.0.0.1",
                f"--listening-port={self.port}",
                "--relay-ip=127.0.0.1",
                f"--min-port={self.ports[0]}",
                f"--max-port={self.ports[1]}",
                f"--realm={REALM}",
                "--lt-cred-mech",
                f"--user={USER}:{PASSWORD}",
                "--allow-loopback-peers",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--no-tcp-relay",
                "--user-quota=0",
                "--total-quota=0",
                f"--pidfile={self.workdir}/coturn.pid",
                f"--userdb={self.workdir}/coturn.db",
                f"--log-file={self.workdir}/coturn.log",
                "--simple-log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.wait_ready()


# ---------------------------------------------------------------------------
# Load


def _udp(
    connect: tuple[str, int] | None = None, source: str = "127.0.0.1"
) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((source, 0))
    if connect is not None:
        sock.connect(connect)
    sock.setblocking(False)
    return sock


def bench_binding(port: int, seconds: float, limit: int) -> dict[str, float]:
    # 32 source addresses: a server may bound requests per source address,
    # and real Binding load comes from many.
    socks = [_udp(("127.0.0.1", port), f"127.0.8.{i + 1}") for i in range(32)]
    request = codec.encode(codec.BINDING_REQUEST, os.urandom(12), [])
    poller = select.epoll()
    by_fd = {s.fileno(): s for s in socks}
    for s in socks:
        poller.register(s.fileno(), select.EPOLLIN)
        for _ in range(4):
            s.send(request)
    answered = 0
    start = time.perf_counter()
    deadline = start + seconds
    idle_since = start
    while answered < limit:
        now = time.perf_counter()
        if now > deadline:
            break
        events = poller.poll(0.05)
        if not events and now - idle_since > 0.2:
            for s in socks:  # lost requests: top the pipelines up again
                for _ in range(4):
                    s.send(request)
            idle_since = now
        for fd, _ in events:
            s = by_fd[fd]
            while True:
                try:
                    s.recv(2048)
                except BlockingIOError:
                    break
                answered += 1
                idle_since = now
                s.send(request)
    elapsed = time.perf_counter() - start
    for s in socks:
        s.close()
    poller.close()
    return {"binding_rps": answered / elapsed, "ops": answered}


_SOURCES = 4096
_next_source = 0


def _fresh_source() -> str:
    """A loopback source address from 127.0.16.0-127.0.31.255, in rotation.

    A server may keep a deleted allocation's 5-tuple busy for a moment
    (coturn answers 437 then); the kernel reuses ephemeral ports quickly, so
    a fresh socket on 127.0.0.1 alone often lands on such a 5-tuple.
    """
    global _next_source
    _next_source = (_next_source + 1) % _SOURCES
    return f"127.0.{16 + (_next_source >> 8)}.{_next_source & 0xFF}"


class Allocator:
    """One client 5-tuple walking 401 -> Allocate -> (callback) per cycle."""

    def __init__(self, port: int) -> None:
        self.sock = _udp(("127.0.0.1", port), _fresh_source())
        self.nonce = b""
        self.step = 0
        self.sent_at = 0.0
        self.txid = b""

    def unauth(self) -> None:
        self.step = 1
        self.txid = os.urandom(12)
        self.sock.send(codec.encode(ALLOCATE, self.txid, [TRANSPORT_ATTR]))
        self.sent_at = time.perf_counter()

    def auth(self, msg_type: int, attrs: list[tuple[int, bytes]]) -> None:
        attrs = [
            *attrs,
            (codec.USERNAME, USER.encode()),
            (codec.REALM, REALM.encode()),
            (codec.NONCE, self.nonce),
        ]
        self.txid = os.urandom(12)
        self.sock.send(codec.encode(msg_type, self.txid, attrs, key=KEY))
        self.sent_at = time.perf_counter()


def bench_alloc(port: int, seconds: float, limit: int) -> dict[str, float]:
    """Each cycle uses a fresh 5-tuple (coturn keeps a deleted one busy briefly)."""
    poller = select.epoll()
    by_fd: dict[int, Allocator] = {}

    def fresh(old: Allocator | None = None) -> None:
        if old is not None:
            del by_fd[old.sock.fileno()]
            poller.unregister(old.sock.fileno())
            old.sock.close()
        w = Allocator(port)
        by_fd[w.sock.fileno()] = w
        poller.register(w.sock.fileno(), select.EPOLLIN)
        w.unauth()

    for _ in range(16):
        fresh()
    done = failures = 0
    start = time.perf_counter()
    deadline = start + seconds
    while done < limit and time.perf_counter() < deadline:
        for fd, _ in poller.poll(0.05):
            w = by_fd[fd]
            try:
                data = w.sock.recv(2048)
            except BlockingIOError:
                continue
            reply = codec.decode(data)
            if reply.transaction_id != w.txid:
                continue  # a late answer to a retransmitted step
            if w.step == 1:
                if codec.NONCE not in reply.attrs:
                    failures += 1
                    fresh(w)
                    continue
                w.nonce = reply.attrs[codec.NONCE]
                w.step = 2
                w.auth(ALLOCATE, [TRANSPORT_ATTR])
            elif w.step == 2:
                if codec.ERROR_CODE in reply.attrs:
                    failures += 1
                    fresh(w)
                    continue
                w.step = 3
                w.auth(REFRESH, [(codec.LIFETIME, codec.encode_u32(0))])
            else:
                done += 1
                fresh(w)
        now = time.perf_counter()
        for w in list(by_fd.values()):  # a lost step: start over
            if now - w.sent_at > 0.5:
                failures += 1
                fresh(w)
    elapsed = time.perf_counter() - start
    for w in by_fd.values():
        w.sock.close()
    poller.close()
    return {"alloc_rps": done / elapsed, "alloc_failures": failures, "ops": done}


def _allocate_sync(sock: socket.socket, extra: list[tuple[int, bytes]]) -> Any:
    """Blocking 401 + Allocate on a connected socket; returns (nonce, relay)."""
    sock.setblocking(True)
    sock.settimeout(2)
    txid = os.urandom(12)
    sock.send(codec.encode(ALLOCATE, txid, [TRANSPORT_ATTR]))
    reply = codec.decode(sock.recv(2048))
    while reply.transaction_id != txid:
        reply = codec.decode(sock.recv(2048))
    if codec.NONCE not in reply.attrs:
        raise OSError(f"no nonce: {reply.attrs.get(codec.ERROR_CODE)!r}")
    nonce = reply.attrs[codec.NONCE]
    attrs = [
        TRANSPORT_ATTR,
        *extra,
        (codec.USERNAME, USER.encode()),
        (codec.REALM, REALM.encode()),
        (codec.NONCE, nonce),
    ]
    sock.send(codec.encode(ALLOCATE, os.urandom(12), attrs, key=KEY))
    reply = codec.decode(sock.recv(2048))
    if codec.ERROR_CODE in reply.attrs:  # e.g. 437: a 5-tuple still allocated
        raise OSError(f"Allocate refused: {reply.attrs[codec.ERROR_CODE]!r}")
    relay = codec.decode_xor_address(
        reply.attrs[codec.XOR_RELAYED_ADDRESS], reply.transaction_id
    )
    sock.setblocking(False)
    return nonce, relay


SEND = codec.message_type(codec.METHOD_SEND, codec.CLASS_INDICATION)
CREATE_PERMISSION = codec.message_type(
    codec.METHOD_CREATE_PERMISSION, codec.CLASS_REQUEST
)


def _tcp(connect: tuple[str, int], source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((source, 0))
    sock.connect(connect)
    sock.setblocking(False)
    return sock


def _relay_client(
    port: int, peer_addr: tuple[str, int], channel: bool, tcp: bool = False
) -> socket.socket:
    """An allocation with a ChannelBind (or a CreatePermission) for ``peer_addr``."""
    while True:
        # A fresh source address: earlier runs' allocations are still there.
        if tcp:
            sock = _tcp(("127.0.0.1", port), _fresh_source())
        else:
            sock = _udp(("127.0.0.1", port), _fresh_source())
        try:
            nonce, _relay = _allocate_sync(sock, [])
        except OSError as e:  # a 5-tuple the server still holds: take another
            print(f"retrying an allocation: {e}", file=sys.stderr)
            sock.close()
            continue
        break
    sock.setblocking(True)
    txid = os.urandom(12)
    peer_attr = (
        codec.XOR_PEER_ADDRESS,
        codec.encode_xor_address(peer_addr[0], peer_addr[1], txid),
    )
    attrs = [
        peer_attr,
        (codec.USERNAME, USER.encode()),
        (codec.REALM, REALM.encode()),
        (codec.NONCE, nonce),
    ]
    if channel:
        attrs.insert(0, (codec.CHANNEL_NUMBER, codec.encode_channel_number(0x4001)))
    method = CHANNEL_BIND if channel else CREATE_PERMISSION
    sock.send(codec.encode(method, txid, attrs, key=KEY))
    if codec.ERROR_CODE in codec.decode(sock.recv(2048)).attrs:
        raise SystemExit("ChannelBind/CreatePermission refused")
    sock.setblocking(False)
    return sock


def _send_indication(peer_addr: tuple[str, int], payload: bytes) -> bytes:
    txid = os.urandom(12)
    return codec.encode(
        SEND,
        txid,
        [
            (
                codec.XOR_PEER_ADDRESS,
                codec.encode_xor_address(peer_addr[0], peer_addr[1], txid),
            ),
            (codec.DATA, payload),
        ],
    )


def bench_relay(
    port: int,
    seconds: float,
    limit: int,
    size: int = 100,
    channel: bool = True,
    prefix: str = "relay",
    tcp: bool = False,
) -> dict[str, float]:
    """32 allocations x 8 in flight through an echo peer; RTT and loss.

    With ``tcp`` the clients speak over TCP: ChannelData frames are padded
    to 4 bytes and the received stream is cut back into frames here.
    """
    peer = _udp()
    peer_addr = peer.getsockname()
    clients = [_relay_client(port, peer_addr, channel, tcp) for _ in range(32)]
    buffers = [b"" for _ in clients]
    poller = select.epoll()
    by_fd = {s.fileno(): (i, s) for i, s in enumerate(clients)}
    poller.register(peer.fileno(), select.EPOLLIN)
    padding = bytes(size - _STAMP.size)
    header = struct.pack("!HH", 0x4001, size)
    outstanding: list[dict[int, float]] = [{} for _ in clients]
    seq = 0

    def send(i: int) -> None:
        nonlocal seq
        seq += 1
        now = time.perf_counter()
        outstanding[i][seq] = now
        payload = _STAMP.pack(i, seq, now) + padding
        if channel:
            clients[i].send(header + payload)
        else:
            clients[i].send(_send_indication(peer_addr, payload))

    for i, s in enumerate(clients):
        poller.register(s.fileno(), select.EPOLLIN)
        for _ in range(8):
            send(i)
    rtts: list[float] = []
    lost = 0
    start = time.perf_counter()
    deadline = start + seconds
    last_sweep = start
    draining = False
    while True:
        now = time.perf_counter()
        if not draining and (now > deadline or len(rtts) >= limit):
            # Stop sending; wait for what is in flight so it is not counted lost.
            draining, elapsed, measured = True, now - start, len(rtts)
        if draining and (now > deadline + 1.0 or not any(outstanding)):
            break
        for fd, _ in poller.poll(0.05):
            if fd == peer.fileno():
                while True:
                    try:
                        data, addr = peer.recvfrom(4096)
                    except BlockingIOError:
                        break
                    peer.sendto(data, addr)
                continue
            i, s = by_fd[fd]
            while True:
                try:
                    data = s.recv(4096 if not tcp else 65536)
                except BlockingIOError:
                    break
                if tcp:
                    for frame in _frames(buffers, i, data):
                        _, n, sent = _STAMP.unpack_from(frame, 4)
                        if outstanding[i].pop(n, None) is not None:
                            rtts.append(time.perf_counter() - sent)
                            if not draining:
                                send(i)
                    continue
                if not channel:  # a Data indication: take its DATA
                    data = codec.decode(data).attrs[codec.DATA]
                    _, n, sent = _STAMP.unpack_from(data)
                else:
                    _, n, sent = _STAMP.unpack_from(data, 4)
                if outstanding[i].pop(n, None) is not None:
                    rtts.append(time.perf_counter() - sent)
                    if not draining:
                        send(i)
        if now - last_sweep > 0.25:
            last_sweep = now
            for i, pending in enumerate(outstanding):
                for n in [n for n, t in pending.items() if now - t > 1.0]:
                    del pending[n]
                    lost += 1
                    if not draining:
                        send(i)
    lost += sum(len(p) for p in outstanding)  # never came back
    for s in clients:
        s.close()
    peer.close()
    poller.close()
    rtts.sort()
    total = len(rtts) + lost
    return {
        f"{prefix}_rtps": measured / elapsed,
        f"{prefix}_dgrams": 2 * measured / elapsed,
        f"{prefix}_p50_ms": 1000 * rtts[len(rtts) // 2] if rtts else 0.0,
        f"{prefix}_p99_ms": 1000 * rtts[int(len(rtts) * 0.99)] if rtts else 0.0,
        f"{prefix}_loss_pct": 100.0 * lost / total if total else 0.0,
        "ops": 2 * measured,
    }


def _frames(buffers: list[bytes], i: int, data: bytes) -> list[bytes]:
    """Complete padded ChannelData frames of client ``i``'s TCP stream."""
    buffer = buffers[i] + data
    frames = []
    while len(buffer) >= 4:
        length = (buffer[2] << 8) | buffer[3]
        total = 4 + length + (-length & 3)
        if len(buffer) < total:
            break
        frames.append(buffer[: 4 + length])
        buffer = buffer[total:]
    buffers[i] = buffer
    return frames


def _flood(port: int, seconds: float, counter: Any) -> None:
    """Child process: Binding requests from 127.0.9.1 as fast as it can send."""
    socks = [_udp(("127.0.0.1", port), "127.0.9.1") for _ in range(4)]
    request = codec.encode(codec.BINDING_REQUEST, os.urandom(12), [])
    sent = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for s in socks:
            for _ in range(64):
                try:
                    s.send(request)
                    sent += 1
                except OSError:
                    pass  # our own buffer is full, or ICMP: keep going
    counter.value = sent


def bench_flood(port: int, seconds: float, rate: int = 2000) -> dict[str, float]:
    """A paced ChannelData stream's loss while Bindings flood the same port."""
    peer = _udp()
    peer_addr = peer.getsockname()
    client = _relay_client(port, peer_addr, True)
    counter = multiprocessing.Value("q", 0)
    flooder = multiprocessing.Process(
        target=_flood, args=(port, seconds + 1.0, counter)
    )
    flooder.start()
    time.sleep(0.5)  # the flood is on before we measure
    header = struct.pack("!HH", 0x4001, 100)
    padding = bytes(100 - _STAMP.size)
    poller = select.epoll()
    poller.register(peer.fileno(), select.EPOLLIN)
    poller.register(client.fileno(), select.EPOLLIN)
    sent = received = at_peer = 0
    start = time.perf_counter()
    end = start + seconds
    interval = 1.0 / rate
    next_send = start
    while True:
        now = time.perf_counter()
        if now >= end + 1.0:
            break
        while now < end and next_send <= now:
            sent += 1
            client.send(header + _STAMP.pack(0, sent, now) + padding)
            next_send += interval
        for fd, _ in poller.poll(0.001):
            sock = peer if fd == peer.fileno() else client
            while True:
                try:
                    data, addr = sock.recvfrom(4096)
                except BlockingIOError:
                    break
                if sock is peer:
                    at_peer += 1
                    peer.sendto(data, addr)
                else:
                    received += 1
    flooder.join(10)
    client.close()
    peer.close()
    poller.close()
    return {
        "flood_bindings_offered": counter.value / (seconds + 1.0),
        "flood_relay_sent": sent,
        "flood_relay_loss_pct": 100.0 * (sent - received) / sent if sent else 0.0,
        # The client-to-peer leg only (it crosses the flooded port).
        "flood_to_peer_loss_pct": 100.0 * (sent - at_peer) / sent if sent else 0.0,
    }


def bench_rss(server: Server, count: int, seconds: float) -> dict[str, float]:
    time.sleep(0.5)
    before = server.rss()
    socks: list[socket.socket] = []
    deadline = time.monotonic() + seconds
    batch: list[socket.socket] = []
    while len(socks) < count and time.monotonic() < deadline:
        batch = [
            _udp(("127.0.0.1", server.port), _fresh_source())
            for _ in range(min(100, count - len(socks)))
        ]
        for s in batch:
            s.send(codec.encode(ALLOCATE, os.urandom(12), [TRANSPORT_ATTR]))
        for s in batch:
            try:
                _allocate_after_send(s)
                socks.append(s)
            except (OSError, KeyError):
                s.close()
    time.sleep(1.0)
    after = server.rss()
    allocated = len(socks)
    for s in socks:
        s.close()
    return {
        "rss_allocations": allocated,
        "rss_per_alloc_bytes": (after - before) / allocated if allocated else 0.0,
    }


def _wait(sock: socket.socket, timeout: float) -> None:
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    poller.poll(timeout * 1000)


def _allocate_after_send(sock: socket.socket) -> None:
    deadline = time.monotonic() + 2
    while True:
        try:
            data = sock.recv(2048)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            _wait(sock, 0.1)
    nonce = codec.decode(data).attrs[codec.NONCE]
    attrs = [
        TRANSPORT_ATTR,
        (codec.LIFETIME, codec.encode_u32(3600)),
        (codec.USERNAME, USER.encode()),
        (codec.REALM, REALM.encode()),
        (codec.NONCE, nonce),
    ]
    sock.send(codec.encode(ALLOCATE, os.urandom(12), attrs, key=KEY))
    _wait(sock, 2)
    reply = codec.decode(sock.recv(2048))
    if codec.ERROR_CODE in reply.attrs:
        raise KeyError("allocation refused")


# ---------------------------------------------------------------------------


Phase = Callable[[Server, argparse.Namespace], dict[str, float]]

PHASES: list[tuple[str, str, Phase]] = [
    # (name, the figure that picks the best of the repeats, how to run it)
    ("binding", "binding_rps", lambda s, a: bench_binding(s.port, a.seconds, a.count)),
    ("alloc", "alloc_rps", lambda s, a: bench_alloc(s.port, a.seconds, a.count)),
    ("relay", "relay_rtps", lambda s, a: bench_relay(s.port, a.seconds, a.count)),
    (
        "senddata",
        "senddata_rtps",
        lambda s, a: bench_relay(
            s.port, a.seconds, a.count, channel=False, prefix="senddata"
        ),
    ),
    (
        "relay1000",
        "relay1000_rtps",
        lambda s, a: bench_relay(s.port, a.seconds, a.count, 1000, prefix="relay1000"),
    ),
    (
        "tcprelay",
        "tcprelay_rtps",
        lambda s, a: bench_relay(
            s.port, a.seconds, a.count, prefix="tcprelay", tcp=True
        ),
    ),
    # The worst of the repeats: loss is what the phase is about.
    ("flood", "-flood_relay_loss_pct", lambda s, a: bench_flood(s.port, a.seconds)),
    ("rss", "", lambda s, a: bench_rss(s, a.allocations, 120)),
]


def measure(server: Server, phase: Phase, args: argparse.Namespace) -> dict[str, float]:
    """One run of a phase, with the server's CPU time per operation."""
    cpu = server.cpu_seconds()
    figures = phase(server, args)
    ops = figures.pop("ops", 0)
    if ops:
        name = next(iter(figures)).split("_")[0]
        figures[f"{name}_cpu_us"] = 1e6 * (server.cpu_seconds() - cpu) / ops
    return figures


def pick(runs: list[dict[str, float]], key: str) -> dict[str, float]:
    """The run with the highest ``key``; ``-key``: the highest too (a loss:
    the worst run is kept)."""
    if not key:
        return runs[0]
    return max(runs, key=lambda r: r[key.lstrip("-")])


def run_all(servers: list[Server], args: argparse.Namespace) -> list[dict[str, float]]:
    """Every phase on every server, interleaved: A, B, A, B, ... per phase.

    The box is shared and its speed drifts; interleaving the repeats puts the
    servers' runs of a phase side by side in time, so their ratio holds up
    better than two back-to-back suites would.
    """
    results: list[dict[str, float]] = [{} for _ in servers]
    for server in servers:
        server.start()
    try:
        for name, key, phase in PHASES:
            if name not in args.phases:
                continue
            repeats = 1 if name == "rss" else args.repeat
            runs: list[list[dict[str, float]]] = [[] for _ in servers]
            for _ in range(repeats):
                for i, server in enumerate(servers):
                    runs[i].append(measure(server, phase, args))
            for i in range(len(servers)):
                results[i].update(pick(runs[i], key))
    finally:
        for server in servers:
            server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", action="store_true", help="also run coturn")
    parser.add_argument(
        "--admin-pair",
        action="store_true",
        help="compare with a second actrix whose admin API is on (per-allocation"
        " traffic counting); reported as admin_* and ratio_* (plain / admin)",
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="per phase run")
    parser.add_argument("--count", type=int, default=500_000, help="per phase run")
    parser.add_argument(
        "--repeat", type=int, default=3, help="interleaved runs per phase (best kept)"
    )
    parser.add_argument("--allocations", type=int, default=10_000)
    parser.add_argument(
        "--phases",
        default="binding,alloc,relay,senddata,relay1000,tcprelay,flood,rss",
        help="comma-separated",
    )
    args = parser.parse_args()
    args.phases = set(args.phases.split(","))
    workdir = Path(tempfile.mkdtemp(prefix="bench-turn-"))
    servers: list[Server] = [Actrix(24781, workdir, (30000, 44999))]
    if args.pair:
        servers.append(Coturn(24782, workdir, (45000, 59999)))
    elif args.admin_pair:
        extra = "[admin]\nenabled = true\n[bind.admin]\nport = 0\n"
        servers.append(Actrix(24782, workdir, (45000, 59999), extra))
        args.pair = True
    results = run_all(servers, args)
    ours = results[0]
    theirs = results[1] if args.pair else {}
    other = servers[1].name if len(servers) > 1 else ""
    print(
        f"{'metric':<24}{'actrix':>14}" + (f"{other:>14}{'ratio':>9}" if theirs else "")
    )
    result = []
    for key in ours:
        line = f"{key:<24}{ours[key]:>14.2f}"
        result.append(f"{key}={ours[key]:.2f}")
        if key in theirs:
            ratio = ours[key] / theirs[key] if theirs[key] else 0.0
            line += f"{theirs[key]:>14.2f}{ratio:>9.2f}"
            result.append(f"{other}_{key}={theirs[key]:.2f}")
            result.append(f"ratio_{key}={ratio:.2f}")
        print(line)
    print("RESULT " + " ".join(result))


if __name__ == "__main__":
    main()
