"""How the signaling socket sits on Autobahn: compact state and raw frames.

Autobahn's server protocol keeps ~95 attributes per connection. :mod:`.protocol`
keeps that state in
slots (:data:`AUTOBAHN_STATE`, started from the class defaults Autobahn reads
before it writes), drops what only the opening handshake needs
(:data:`HANDSHAKE_STATE`) and defers the send deque (:class:`LazySendQueue`).
Frames are still parsed and written by Autobahn: we do not carry a second
RFC 6455 codec of our own.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

from autobahn.twisted.websocket import WebSocketServerProtocol


class LazySendQueue:
    """Autobahn's send queue until something is queued.

    Autobahn queues only sync or chopped sends, which signaling never makes,
    yet gives every connection an empty deque (~700 bytes). This stands in
    for it and puts a real deque in place on the first append.
    """

    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketServerProtocol) -> None:
        self._protocol = protocol

    def __len__(self) -> int:
        return 0

    def append(self, item: Any) -> None:
        self._protocol.send_queue = deque((item,))

    def popleft(self) -> Any:
        raise IndexError("pop from an empty deque")


# What Autobahn (26.10) and Twisted keep on a server protocol instance, apart
# from its configuration attributes. A plain Autobahn protocol holds them in a
# ~95-key __dict__ of ~3.3 KB; declared as slots they cost 8 bytes each. A name
# missing here still works (it lands in __dict__), so this list only has to be
# complete to be compact; a unit test compares it with what Autobahn sets.
AUTOBAHN_STATE: Final = (
    "_isMessageCompressed",
    "_perMessageCompress",
    "_results",
    "_transport_details",
    "_valid_events",
    "_wskey",
    "autoPingPending",
    "autoPingPendingCall",
    "autoPingPendingSent",
    "autoPingPendingSeq",
    "autoPingTimeoutCall",
    "closeHandshakeTimeoutCall",
    "closedByMe",
    "connected",
    "current_frame",
    "current_frame_masker",
    "data",
    "droppedByMe",
    "factory",
    "failedByMe",
    "frame_data",
    "frame_length",
    "http_headers",
    "http_request_data",
    "http_request_host",
    "http_request_params",
    "http_request_path",
    "http_request_uri",
    "http_response_data",
    "http_status_line",
    "inside_message",
    "is_closed",
    "is_open",
    "localCloseCode",
    "localCloseReason",
    "message_data",
    "message_data_total_length",
    "message_is_binary",
    "openHandshakeTimeoutCall",
    "peer",
    "remoteCloseCode",
    "remoteCloseReason",
    "send_queue",
    "send_state",
    "serverConnectionDropTimeoutCall",
    "state",
    "trackedTimings",
    "trafficStats",
    "transport",
    "triggered",
    "utf8validateIncomingCurrentMessage",
    "utf8validator",
    "wasClean",
    "wasCloseHandshakeTimeout",
    "wasMaxFramePayloadSizeExceeded",
    "wasMaxMessagePayloadSizeExceeded",
    "wasNotCleanReason",
    "wasOpenHandshakeTimeout",
    "wasServerConnectionDropTimeout",
    "wasServingFlashSocketPolicyFile",
    "websocket_extensions",
    "websocket_extensions_in_use",
    "websocket_origin",
    "websocket_protocol_in_use",
    "websocket_protocols",
    "websocket_version",
)
# Parsed opening-handshake data Autobahn keeps for its test suite; released
# once the socket is open (about 2 KB per connection).
HANDSHAKE_STATE: Final = (
    "http_headers",
    "http_request_data",
    "http_request_host",
    "http_request_params",
    "http_request_path",
    "http_request_uri",
    "http_response_data",
    "http_status_line",
    "websocket_extensions",
    "websocket_origin",
    "websocket_protocols",
)


def class_defaults(names: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    """(name, class-level default) for the slots whose name has one up the MRO.

    An unset slot raises AttributeError where a __dict__ attribute would have
    fallen back to the class attribute; starting each such slot at that value
    keeps Autobahn's reads before its first write working as before.
    """
    missing = object()
    found = []
    for name in names:
        for klass in WebSocketServerProtocol.__mro__:
            value = klass.__dict__.get(name, missing)
            if value is not missing:
                found.append((name, value))
                break
    return tuple(found)


SLOT_DEFAULTS: Final = class_defaults(AUTOBAHN_STATE)
