"""The ``Bus`` port: hand a message to the process (node) that holds an actor.

Signaling finds where an actor's socket is in the
:class:`~actrix.core.directory.ActorDirectory` (its entry names a node and a
session) and, when that is another process, sends a :class:`BusMessage` to
that node; the node's handler delivers it to its local session. ``LocalBus``
is the single-process default (there is no other node); ``RedisBus`` publishes
on one Redis channel per node.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Final, Protocol

import attrs

from actrix.core.directory import ActorKey

# What a message asks of the receiving node.
DELIVER: Final = "deliver"  # write ``payload`` (an envelope) to ``key``'s socket
NEGOTIATE: Final = "negotiate"  # decide roles of a relay's role negotiation
KICK: Final = "kick"  # close ``key``'s socket ``session``: it reconnected elsewhere
KINDS: Final = (DELIVER, NEGOTIATE, KICK)


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

    def encode(self) -> bytes:
        return json.dumps(
            {
                "k": self.kind,
                "a": list(self.key),
                "s": self.session,
                "p": base64.b64encode(self.payload).decode("ascii"),
                "o": self.origin,
                "f": self.flag,
            },
            separators=(",", ":"),
        ).encode("ascii")

    @classmethod
    def decode(cls, data: bytes) -> BusMessage:
        """Raises :class:`BadMessage` for anything but an encoded message."""
        try:
            d = json.loads(data)
            realm, serial = d["a"]
            message = cls(
                kind=str(d["k"]),
                key=(int(realm), int(serial)),
                session=int(d["s"]),
                payload=base64.b64decode(d["p"], validate=True),
                origin=str(d["o"]),
                flag=bool(d["f"]),
            )
        except Exception as e:
            raise BadMessage(str(e)) from e
        if message.kind not in KINDS:
            raise BadMessage(f"unknown kind {message.kind!r}")
        return message


Handler = Callable[[BusMessage], None]


class Bus(Protocol):
    """Messages between the processes that share an actor directory."""

    @property
    def node_id(self) -> str:
        """This process's node id (the one its directory entries carry)."""

    @property
    def shared(self) -> bool:
        """Whether other processes may hold actors (False: nothing to send)."""

    def listen(self, handler: Handler) -> None:
        """Call ``handler`` with every message sent to this node."""

    async def ready(self) -> None:
        """Return once messages sent to this node reach it (after startup)."""

    async def send(self, node: str, message: BusMessage) -> bool:
        """Send to ``node``; False when no process of that node is listening."""


class LocalBus:
    """One process: a message to this node is handled in place; no other nodes."""

    def __init__(self, node_id: str) -> None:
        self._node_id = node_id
        self._handler: Handler | None = None

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def shared(self) -> bool:
        return False

    def listen(self, handler: Handler) -> None:
        self._handler = handler

    async def ready(self) -> None:
        """Always: the handler is called in place."""

    async def send(self, node: str, message: BusMessage) -> bool:
        if node != self._node_id or self._handler is None:
            return False
        self._handler(message)
        return True
