"""The edge's frame reading once open (the ``websockets`` Sans-I/O codec).

Client frames are built here byte by byte (RFC 6455 §5.2), masked with an
all-zero key so their payload reads as is, and fed to an opened
:class:`~actrix.core.websocket.EdgeProtocol` on an in-memory transport.
"""

from __future__ import annotations

import struct
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.websocket import MAX_FRAGMENTS, EdgeProtocol, edge_options

UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def client_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked client frame (zero mask: the payload is sent as is)."""
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        header = bytes((first, 0x80 | size))
    elif size < 65536:
        header = bytes((first, 0x80 | 126)) + struct.pack("!H", size)
    else:
        header = bytes((first, 0x80 | 127)) + struct.pack("!Q", size)
    return header + b"\0\0\0\0" + payload


def close_code(written: bytes) -> int:
    """The status code of the server close frame at the end of ``written``."""
    start = written.rindex(b"\x88")
    (code,) = struct.unpack("!H", written[start + 2 : start + 4])
    return int(code)


class Recorder(EdgeProtocol):
    __slots__ = ()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.messages.append((payload, isBinary))

    def onPong(self, payload: bytes) -> None:
        self.factory.pongs.append(payload)

    def edge_closed(self) -> None:
        self.factory.closed += 1


class CodecTests(SynchronousTestCase):
    def _open(self, first: bytes = b"", max_size: int = 1024) -> tuple[Any, Any]:
        factory: Any = WebSocketServerFactory()
        factory.protocol = Recorder
        factory.messages = []
        factory.pongs = []
        factory.closed = 0
        edge_options(factory, max_size)
        self.factory = factory
        protocol: Any = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(UPGRADE + first)
        self.assertEqual(protocol.state, protocol.STATE_OPEN)
        self.assertIn(b"101 Switching Protocols", transport.value())
        self.addCleanup(self._lose, protocol)
        transport.clear()
        return protocol, transport

    def _lose(self, protocol: Any) -> None:
        if protocol.state != protocol.STATE_CLOSED:
            protocol.connectionLost(Failure(ConnectionDone()))

    def test_frames_in_the_upgrade_read_are_delivered(self) -> None:
        """Frames that arrive with the upgrade request reach onMessage."""
        self._open(client_frame(BINARY, b"one") + client_frame(BINARY, b"tw"))
        self.assertEqual(self.factory.messages, [(b"one", True), (b"tw", True)])

    def test_frames_split_over_reads(self) -> None:
        """A frame cut at any byte is delivered once whole, then the next."""
        protocol, _ = self._open()
        data = client_frame(BINARY, b"x" * 300) + client_frame(TEXT, b"hello")
        for i in range(len(data)):
            protocol.dataReceived(data[i : i + 1])
        self.assertEqual(self.factory.messages, [(b"x" * 300, True), (b"hello", False)])

    def test_fragmented_messages_are_assembled(self) -> None:
        """Fragments make one message of the first fragment's type, with a
        ping between them answered at once."""
        protocol, transport = self._open()
        protocol.dataReceived(
            client_frame(BINARY, b"ab", fin=False)
            + client_frame(PING, b"p")
            + client_frame(CONT, b"cd", fin=False)
            + client_frame(CONT, b"ef")
            + client_frame(TEXT, "é".encode(), fin=False)
            + client_frame(CONT, b"!")
        )
        self.assertEqual(
            self.factory.messages, [(b"abcdef", True), ("é!".encode(), False)]
        )
        self.assertEqual(transport.value(), b"\x8a\x01p")

    def test_ping_is_answered_once(self) -> None:
        """The codec answers a ping; Autobahn's handler does not add a second."""
        protocol, transport = self._open()
        protocol.dataReceived(client_frame(PING, b"hi"))
        self.assertEqual(transport.value(), b"\x8a\x02hi")

    def test_pong_reaches_onPong(self) -> None:
        protocol, _ = self._open()
        protocol.dataReceived(client_frame(PONG, b"k"))
        self.assertEqual(self.factory.pongs, [b"k"])

    def test_invalid_utf8_text_closes_1007(self) -> None:
        """A text message that is not UTF-8 (even across fragments) is not
        delivered; the connection closes with 1007."""
        protocol, transport = self._open()
        protocol.dataReceived(
            client_frame(TEXT, b"\xc3", fin=False) + client_frame(CONT, b"(")
        )
        self.assertEqual(self.factory.messages, [])
        self.assertEqual(close_code(transport.value()), 1007)
        self.assertTrue(transport.disconnecting)

    def test_oversize_fragmented_message_closes_1009(self) -> None:
        """The message size counts over fragments: 1009, nothing delivered."""
        protocol, transport = self._open(max_size=1024)
        protocol.dataReceived(
            client_frame(BINARY, b"a" * 600, fin=False) + client_frame(CONT, b"b" * 600)
        )
        self.assertEqual(self.factory.messages, [])
        self.assertEqual(close_code(transport.value()), 1009)
        self.assertTrue(transport.disconnecting)

    def test_nothing_after_a_failure_is_delivered(self) -> None:
        """Frames read with a bad text message are not delivered after it."""
        protocol, transport = self._open()
        protocol.dataReceived(
            client_frame(BINARY, b"before")
            + client_frame(TEXT, b"\xff")
            + client_frame(BINARY, b"after")
        )
        self.assertEqual(self.factory.messages, [(b"before", True)])
        self.assertEqual(close_code(transport.value()), 1007)

    def test_too_many_fragments_close_1009(self) -> None:
        """Empty fragments never reach the size limit; their count is bounded."""
        protocol, transport = self._open()
        empty = client_frame(CONT, b"", fin=False)
        protocol.dataReceived(
            client_frame(BINARY, b"", fin=False)
            + empty * (MAX_FRAGMENTS + 5)
            + client_frame(CONT, b"end")
        )
        self.assertEqual(self.factory.messages, [])
        self.assertEqual(close_code(transport.value()), 1009)
        self.assertTrue(transport.disconnecting)
        self.assertIsNone(protocol._fragments)

    def test_pongs_to_a_peer_that_stopped_reading_are_bounded(self) -> None:
        """While the peer does not read, pongs count toward the backlog bound;
        past it the connection is dropped, as for messages."""
        protocol, transport = self._open()
        self.factory.send_backlog_limit = 100
        protocol._pressure.pauseProducing()  # the transport's buffer is full
        protocol.dataReceived(client_frame(PING, b"p" * 40) * 2)
        self.assertFalse(transport.disconnected)
        protocol.dataReceived(client_frame(PING, b"p" * 40))
        self.assertTrue(transport.disconnected)

    def test_stray_continuation_closes_1002(self) -> None:
        protocol, transport = self._open()
        protocol.dataReceived(client_frame(CONT, b"x"))
        self.assertEqual(close_code(transport.value()), 1002)
        self.assertEqual(self.factory.messages, [])

    def test_client_close_is_echoed_and_the_socket_closed(self) -> None:
        """A close frame is answered with the same code; the server then closes
        TCP; frames after it are not delivered; the edge learns once."""
        protocol, transport = self._open()
        protocol.dataReceived(
            client_frame(CLOSE, struct.pack("!H", 4000) + b"bye")
            + client_frame(BINARY, b"late")
        )
        self.assertEqual(
            transport.value(), b"\x88\x05" + struct.pack("!H", 4000) + b"bye"
        )
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.factory.messages, [])
        self.assertFalse(protocol.send_bytes(b"x"))
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(protocol.wasClean)
        self.assertEqual(protocol.remoteCloseCode, 4000)
        self.assertEqual(self.factory.closed, 1)

    def test_server_close_then_client_reply(self) -> None:
        """close_session sends the code, refuses later sends, ignores data
        frames, and closes TCP when the client answers; its timer is cancelled."""
        protocol, transport = self._open()
        protocol.close_session(1001, "going away")
        self.assertEqual(close_code(transport.value()), 1001)
        self.assertFalse(transport.disconnecting)
        self.assertIsNotNone(protocol.closeHandshakeTimeoutCall)
        self.assertFalse(protocol.send_bytes(b"x"))
        protocol.dataReceived(client_frame(BINARY, b"in flight"))
        self.assertEqual(self.factory.messages, [])
        protocol.dataReceived(client_frame(CLOSE, struct.pack("!H", 1001)))
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertIsNone(protocol.closeHandshakeTimeoutCall)
        self.assertTrue(protocol.wasClean)

    def test_close_reason_is_cut_to_fit(self) -> None:
        """A long (multi-byte) reason is cut to 123 bytes on a character edge."""
        protocol, transport = self._open()
        protocol.close_session(4001, "é" * 100)
        frame = transport.value()
        self.assertEqual(frame[1], 2 + 122)
        self.assertEqual(frame[4:].decode("utf-8"), "é" * 61)

    def test_reserved_close_code_becomes_1011(self) -> None:
        """A code RFC 6455 keeps off the wire (1006) goes out as 1011."""
        protocol, transport = self._open()
        protocol.close_session(1006, "x")
        self.assertEqual(close_code(transport.value()), 1011)

    def test_unanswered_close_is_aborted(self) -> None:
        """Past the close handshake timeout the socket is aborted."""
        protocol, transport = self._open()
        protocol.close_session(1000, "")
        protocol.closeHandshakeTimeoutCall.cancel()
        protocol.onCloseHandshakeTimeout()
        self.assertTrue(transport.disconnected)
        self.assertFalse(protocol.wasClean)


# A model of what the edge must do with a sequence of client frames (RFC 6455
# §5): the messages it delivers, and whether the connection ends.
_CONTROL = (CLOSE, PING, PONG)


def _model(
    frames: list[tuple[int, bool, bytes, bool, int]], max_size: int
) -> tuple[list[tuple[bytes, bool]], bool]:
    delivered: list[tuple[bytes, bool]] = []
    fragments: tuple[int, list[bytes]] | None = None
    for opcode, fin, payload, masked, rsv in frames:
        if not masked or rsv or opcode in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15):
            return delivered, True
        if opcode in _CONTROL:
            if not fin or len(payload) > 125:
                return delivered, True
            if opcode == CLOSE:
                return delivered, True
            continue
        so_far = 0 if fragments is None else sum(map(len, fragments[1]))
        if so_far + len(payload) > max_size:
            return delivered, True
        if opcode == CONT:
            if fragments is None:
                return delivered, True
            fragments[1].append(payload)
        else:
            if fragments is not None:
                return delivered, True
            fragments = (opcode, [payload])
        if fin:
            kind, parts = fragments
            fragments = None
            message = b"".join(parts)
            if kind == TEXT:
                try:
                    message.decode("utf-8")
                except UnicodeDecodeError:
                    return delivered, True
            delivered.append((message, kind == BINARY))
    return delivered, False


def _wire(opcode: int, fin: bool, payload: bytes, masked: bool, rsv: int) -> bytes:
    frame = client_frame(opcode, payload, fin)
    first = frame[0] | (rsv << 4)
    second = frame[1] if masked else frame[1] & 0x7F
    rest = frame[2:]
    if not masked:
        mask_at = {126: 2, 127: 8}.get(frame[1] & 0x7F, 0)
        rest = rest[:mask_at] + rest[mask_at + 4 :]
    return bytes((first, second)) + rest


class CodecModelTests(SynchronousTestCase):
    """Random frame sequences, cut at random places: the edge delivers what the
    model delivers, ends the connection when the model does, and never raises."""

    frame = st.tuples(
        st.sampled_from([CONT, TEXT, BINARY, CLOSE, PING, PONG, 3, 11]),
        st.booleans(),
        st.one_of(
            st.binary(max_size=40),
            st.text(max_size=20).map(lambda t: t.encode("utf-8")),
            st.binary(min_size=120, max_size=600),
        ),
        st.booleans().map(lambda b: b or True),  # masked (rarely not, below)
        st.sampled_from([0] * 15 + [4]),
    )

    @given(
        frames=st.lists(frame, max_size=12),
        unmasked_at=st.integers(min_value=-1, max_value=30),
        cuts=st.lists(st.integers(min_value=1, max_value=50), max_size=20),
    )
    def test_edge_follows_the_model(
        self,
        frames: list[tuple[int, bool, bytes, bool, int]],
        unmasked_at: int,
        cuts: list[int],
    ) -> None:
        frames = [
            (op, fin, payload, i != unmasked_at, rsv)
            for i, (op, fin, payload, _masked, rsv) in enumerate(frames)
        ]
        case = CodecTests("test_frames_split_over_reads")
        protocol, transport = case._open(max_size=1024)
        data = b"".join(_wire(*f) for f in frames)
        at = 0
        for cut in [*cuts, len(data)]:
            if at >= len(data):
                break
            protocol.dataReceived(data[at : at + cut])
            at += cut
        expected, ends = _model(frames, 1024)
        self.assertEqual(case.factory.messages, expected)
        self.assertEqual(bool(transport.disconnecting), ends)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(case.factory.closed, 1)
