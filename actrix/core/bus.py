"""The ``Bus`` port: hand a message to the process (node) that holds an actor.

Signaling finds where an actor's socket is in the
:class:`~actrix.core.directory.ActorDirectory` (its entry names a node and a
session) and, when that is another process, sends a :class:`BusMessage` to
that node; the node's handler delivers it to its local session. ``LocalBus``
is the single-process default (there is no other node); ``RedisBus`` publishes
on one Redis channel per node; ``SiblingBus`` writes straight to the sibling
workers of one supervisor over Unix sockets and hands the rest to Redis.

A message is bytes of our own layout (one codec for Redis and the Unix links):
a version byte, the kind, a flag byte, realm id (u32), serial (u64), session
(u64), the origin node and the metrics flow (each a length byte and UTF-8),
then the payload to its end. Every field is bounded by that layout, so
decoding reads nothing unbounded.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final, Protocol

import attrs
from twisted.logger import Logger

from actrix.core.directory import ActorKey

log = Logger()

# What a message asks of the receiving node.
DELIVER: Final = "deliver"  # write ``payload`` (an envelope) to ``key``'s socket
NEGOTIATE: Final = "negotiate"  # decide roles of a relay's role negotiation
KICK: Final = "kick"  # close ``key``'s socket ``session``: it reconnected elsewhere
KINDS: Final = (DELIVER, NEGOTIATE, KICK)

VERSION: Final = 0xA1
# A batch: this byte, then each message's length (u32) and bytes. RedisBus
# publishes what one reactor turn sends to a node as one batch.
BATCH: Final = 0xB1
MAX_BATCH_BYTES: Final = 1024 * 1024
MAX_BATCH_MESSAGES: Final = 1024
_LENGTH: Final = struct.Struct("!I")
_CODES: Final = {kind: i for i, kind in enumerate(KINDS, 1)}
_HEAD: Final = struct.Struct("!BBBIQQB")  # version kind flag realm serial session len


class BadMessage(Exception):
    """Bytes from the bus that are not a :class:`BusMessage`."""


@attrs.frozen
class BusMessage:
    """One message for the node that holds actor ``key`` on socket ``session``."""

    kind: str
    key: ActorKey
    session: int
    payload: bytes = b""
    origin: str = ""  # the sending node, for answers
    flag: bool = False  # NEGOTIATE: whether the relay's source answers only
    # DELIVER: the metrics flow of ``payload``, an encoded envelope the
    # receiver writes as it is; "" makes it parse the envelope for the flow.
    flow: str = ""

    def encode(self) -> bytes:
        """Raises ``struct.error`` or ``ValueError`` for values out of the layout."""
        origin = self.origin.encode("utf-8")
        flow = self.flow.encode("ascii")
        if len(origin) > 255 or len(flow) > 255:
            raise ValueError("bus message origin or flow longer than 255 bytes")
        realm, serial = self.key
        head = _HEAD.pack(
            VERSION,
            _CODES[self.kind],
            self.flag,
            realm,
            serial,
            self.session,
            len(origin),
        )
        return b"".join((head, origin, bytes((len(flow),)), flow, self.payload))

    @classmethod
    def decode(cls, data: bytes) -> BusMessage:
        """Raises :class:`BadMessage` for anything but an encoded message."""
        data = bytes(data)
        size = len(data)
        if size < _HEAD.size:
            raise BadMessage(f"{size} bytes, shorter than a bus message header")
        version, code, flag, realm, serial, session, origin_len = _HEAD.unpack_from(
            data
        )
        if version != VERSION:
            raise BadMessage(f"unknown bus message version {version}")
        if not 1 <= code <= len(KINDS) or flag > 1:
            raise BadMessage(f"unknown kind {code} or flag {flag}")
        at = _HEAD.size + origin_len
        if at >= size:
            raise BadMessage("bus message cut short in its origin")
        flow_end = at + 1 + data[at]
        if flow_end > size:
            raise BadMessage("bus message cut short in its flow")
        try:
            origin = data[_HEAD.size : at].decode("utf-8")
            flow = data[at + 1 : flow_end].decode("ascii")
        except UnicodeDecodeError as e:
            raise BadMessage(f"bus message origin or flow: {e.reason}") from e
        return cls(
            kind=KINDS[code - 1],
            key=(realm, serial),
            session=session,
            payload=data[flow_end:],
            origin=origin,
            flag=bool(flag),
            flow=flow,
        )


Handler = Callable[[BusMessage], None]
# Called after each read of messages from the network (one batch or more).
ReadDone = Callable[[], None]


def encode_batch(messages: list[bytes]) -> bytes:
    """Encoded messages as one batch (one message is sent as it is)."""
    if len(messages) == 1:
        return messages[0]
    parts = [bytes((BATCH,))]
    for data in messages:
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def split_batch(data: bytes) -> list[bytes]:
    """The encoded messages of a batch, or of a single message.

    Raises:
        BadMessage: a batch cut short, or holding more than
            :data:`MAX_BATCH_MESSAGES` messages.
    """
    if not data or data[0] != BATCH:
        return [data]
    view = memoryview(data)
    messages: list[bytes] = []
    at, size = 1, len(data)
    while at < size:
        if len(messages) >= MAX_BATCH_MESSAGES:
            raise BadMessage(f"more than {MAX_BATCH_MESSAGES} messages in a batch")
        if size - at < _LENGTH.size:
            raise BadMessage("bus batch cut short in a length")
        (length,) = _LENGTH.unpack_from(data, at)
        at += _LENGTH.size
        if length > size - at:
            raise BadMessage("bus batch cut short in a message")
        messages.append(bytes(view[at : at + length]))
        at += length
    return messages


def deliver_bytes(handler: Handler | None, data: bytes) -> int:
    """Decode what a bus received (a message or a batch), hand each to ``handler``.

    Returns how many messages were read. An unreadable message (or batch) is
    dropped with a log line; a handler's failure is logged, never raised into
    the bus's connection.
    """
    try:
        parts = split_batch(bytes(data))
    except BadMessage as e:
        log.warn("unreadable bus batch dropped: {reason}", reason=str(e))
        return 0
    for part in parts:
        try:
            message = BusMessage.decode(part)
        except BadMessage as e:
            log.warn("unreadable bus message dropped: {reason}", reason=str(e))
            continue
        if handler is None:
            continue
        try:
            handler(message)
        except Exception:
            log.failure(
                "while handling a bus message of kind {kind}", kind=message.kind
            )
    return len(parts)


class Bus(Protocol):
    """Messages between the processes that share an actor directory."""

    @property
    def node_id(self) -> str:
        """This process's node id (the one its directory entries carry)."""

    @property
    def shared(self) -> bool:
        """Whether other processes may hold actors (False: nothing to send)."""

    def listen(self, handler: Handler, read_done: ReadDone | None = None) -> None:
        """Call ``handler`` with every message sent to this node.

        ``read_done`` is called after each read from the network (a batch of
        messages), so the receiver can write what they caused at once: they
        already waited a reactor turn in the sender's process.
        """

    async def ready(self) -> None:
        """Return once messages sent to this node reach it (after startup)."""

    async def send(self, node: str, message: BusMessage) -> bool:
        """Send to ``node``; False when no process of that node is listening."""

    def send_now(self, node: str, message: BusMessage) -> bool:
        """Send to ``node`` without waiting if this bus can; False: use :meth:`send`."""


class LocalBus:
    """One process: a message to this node is handled in place; no other nodes."""

    def __init__(self, node_id: str) -> None:
        self._node_id = node_id
        self._handler: Handler | None = None
        self._read_done: ReadDone | None = None

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def shared(self) -> bool:
        return False

    def listen(self, handler: Handler, read_done: ReadDone | None = None) -> None:
        self._handler = handler
        self._read_done = read_done

    async def ready(self) -> None:
        """Always: the handler is called in place."""

    async def send(self, node: str, message: BusMessage) -> bool:
        return self.send_now(node, message)

    def send_now(self, node: str, message: BusMessage) -> bool:
        if node != self._node_id or self._handler is None:
            return False
        self._handler(message)
        if self._read_done is not None:
            self._read_done()  # each message is a "read" of its own here
        return True
