"""``/rooms/bin``: the binary session protocol's connection (rooms.md §3).

A socket starts open; CONNECT makes it a session. Replies carry the request's
UUID and payload type; unsolicited frames use a fresh UUID and the CONNECT
payload type. ROOM_EVENT (0x42) goes only to sessions that asked for it.
"""

from __future__ import annotations

import uuid as uuidlib
from datetime import UTC, datetime
from typing import Any, Final

from actrix.rooms import binary_codec as bc
from actrix.rooms.json_codec import metadata_fits
from actrix.rooms.members import binary_role, check_client
from actrix.rooms.model import (
    ANSWER,
    CANDIDATE,
    OFFER,
    JoinResult,
    PeerInfo,
    RoomError,
    Signal,
    SignalData,
)
from actrix.rooms.protocol import RoomConnection

SIGNAL_TYPES: Final = {
    bc.SIGNAL_OFFER: OFFER,
    bc.SIGNAL_ANSWER: ANSWER,
    bc.SIGNAL_ICE_CANDIDATE: CANDIDATE,
}
SIGNAL_CODES: Final = {v: k for k, v in SIGNAL_TYPES.items()}
JSON_CODES: Final = {
    1: "UNAUTHORIZED",
    2: "INVALID_MESSAGE",
    3: "INVALID_MESSAGE",
    4: "UNAUTHORIZED",
    5: "PEER_NOT_FOUND",
    6: "INVALID_MESSAGE",
    7: "ROOM_NOT_FOUND",
    8: "ROOM_FULL",
    9: "ALREADY_IN_ROOM",
    10: "NOT_IN_ROOM",
    11: "RATE_LIMITED",
    12: "INTERNAL_ERROR",
}
TEXT_REFUSED: Final = "Text messages are not supported. Use binary format."
ROOM_EVENTS: Final = "room_events"


def _fresh_uuid() -> bytes:
    return uuidlib.uuid4().bytes


def _rfc3339(ms: int) -> str:
    stamp = datetime.fromtimestamp(ms / 1000, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class BinaryRoomConnection(RoomConnection):
    """One ``/rooms/bin`` connection."""

    __slots__ = ("_payload_type", "_room_events")

    def __init__(self) -> None:
        self._payload_type = bc.PAYLOAD_JSON
        self._room_events = False
        super().__init__()

    def onOpen(self) -> None:
        super().onOpen()
        self.idle_timeout = self.edge.config.idle_timeout_binary

    def _frame(
        self, msg_type: int, uuid: bytes, payload_type: int, fields: dict[str, Any]
    ) -> bool:
        try:
            data = bc.encode(msg_type, uuid, payload_type, fields)
        except bc.BinaryError:
            return False
        return self.send_frame(data, True)

    def _error(
        self,
        uuid: bytes,
        payload_type: int,
        code: int,
        message: str,
        details: str | None = None,
    ) -> None:
        self._frame(
            bc.ERROR,
            uuid,
            payload_type,
            bc.error_fields(code, message, JSON_CODES.get(code), details),
        )

    def send_error(self, error: RoomError, context: Any) -> None:
        uuid, payload_type = (
            context if context is not None else (_fresh_uuid(), self._payload_type)
        )
        self._error(
            uuid, payload_type, error.binary_code, error.binary_message, error.details
        )

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        edge = self.edge
        now = edge.clock.seconds()
        t2 = int(now * 1000)
        if not self.admit_message(now):
            return
        if not isBinary:
            edge.metrics.refusals["INVALID_MESSAGE"] += 1
            edge.warn(self._ip, "bin3", "text frame from {ip} refused")
            self._error(_fresh_uuid(), self._payload_type, 3, TEXT_REFUSED)
            return
        try:
            request = bc.decode(payload)
        except bc.BinaryError as e:
            uuid = payload[2:18] if len(payload) >= 18 else _fresh_uuid()
            payload_type = payload[18] if len(payload) >= 19 else self._payload_type
            if payload_type not in bc.SERVED_PAYLOADS:
                payload_type = bc.PAYLOAD_JSON
            edge.metrics.refusals[JSON_CODES[e.error_code]] += 1
            edge.warn(
                self._ip,
                f"bin{e.error_code}",
                "binary frame from {ip} refused: {reason}",
                reason=e.message,
            )
            self._error(bytes(uuid), payload_type, e.error_code, e.message)
            return
        header = request.header
        context = (header.uuid, header.payload_type)
        try:
            self._dispatch(request, context, t2)
        except RoomError as e:
            self.refused(e, context)
        except Exception:
            self.internal_error(context)

    def _dispatch(
        self, request: bc.Request, context: tuple[bytes, int], t2: int
    ) -> None:
        msg_type = request.header.msg_type
        fields = request.fields
        uuid, payload_type = context
        if msg_type == bc.TIME_SYNC:
            t3 = self.edge.ms()
            self._frame(
                bc.TIME_SYNC_ACK,
                uuid,
                payload_type,
                {"t1": fields["t1"], "t2": t2, "t3": t3},
            )
            return
        if msg_type == bc.CONNECT:
            self._connect(fields, context)
            return
        peer = self.room_peer
        if peer is None:
            self._error(uuid, payload_type, 4, "Not connected")
            return
        service = self.edge.service
        if msg_type in SIGNAL_TYPES:
            service.relay(
                peer,
                Signal(
                    SIGNAL_TYPES[msg_type],
                    peer.peer_id,
                    fields["target_client_id"],
                    SignalData(text=fields["signal_data"]),
                    fields.get("request_id"),
                    uuid,
                ),
            )
        elif msg_type == bc.HEARTBEAT:
            seconds = int(self.edge.clock.seconds())
            self._frame(bc.HEARTBEAT_ACK, uuid, payload_type, {"timestamp": seconds})
        elif msg_type == bc.DISCONNECT:
            service.close_peer(peer)
            self.room_peer = None
        elif msg_type in (bc.REGISTER, bc.UNREGISTER):
            self._register(msg_type, fields, context)
        else:
            self._room(msg_type, fields, context)

    def _connect(self, fields: dict[str, Any], context: tuple[bytes, int]) -> None:
        uuid, payload_type = context
        if self.room_peer is not None:
            raise RoomError("ALREADY_IN_ROOM", "Already connected", binary_code=9)
        capabilities = tuple(fields.get("capabilities") or ())
        peer, result = self.edge.service.connect(
            self, fields["client_id"], fields["auth_token"], capabilities
        )
        self.room_peer = peer
        self._payload_type = payload_type
        self._room_events = ROOM_EVENTS in capabilities
        self._frame(
            bc.CONNECT_ACK,
            uuid,
            payload_type,
            {
                "status": "success",
                "session_id": result.session_id,
                "ice_servers": result.ice_servers,
                "heartbeat_interval": self.edge.config.heartbeat_interval,
                "expires_at": result.expires_at,
            },
        )

    def _register(
        self, msg_type: int, fields: dict[str, Any], context: tuple[bytes, int]
    ) -> None:
        peer = self.room_peer
        assert peer is not None  # noqa: S101 (checked by the caller)
        check_client(peer, fields["client_id"])
        uuid, payload_type = context
        if msg_type == bc.REGISTER:
            peer.capabilities = tuple(fields.get("capabilities") or peer.capabilities)
            self._room_events = ROOM_EVENTS in peer.capabilities
            if isinstance(fields.get("metadata"), dict):
                peer.metadata = fields["metadata"]
            ack = {
                "version": bc.SERVER_VERSION,
                "status": 200,
                "message": "Registration successful",
                "client_id": peer.peer_id,
                "session_id": peer.session_id,
            }
            self._frame(bc.REGISTER_ACK, uuid, payload_type, ack)
        else:
            if peer.room is not None:
                self.edge.service.room_leave(peer, peer.room.room_id)
            ack = {
                "version": bc.SERVER_VERSION,
                "status": 200,
                "message": "Unregistration successful",
                "client_id": peer.peer_id,
            }
            self._frame(bc.UNREGISTER_ACK, uuid, payload_type, ack)

    def _room(
        self, msg_type: int, fields: dict[str, Any], context: tuple[bytes, int]
    ) -> None:
        peer = self.room_peer
        assert peer is not None  # noqa: S101 (checked by the caller)
        check_client(peer, fields["client_id"])
        service = self.edge.service
        uuid, payload_type = context
        if msg_type == bc.ROOM_LEAVE:
            room_id = fields["room_id"]
            service.room_leave(peer, room_id)
            self._frame(
                bc.ROOM_LEAVE_ACK,
                uuid,
                payload_type,
                {
                    "version": bc.SERVER_VERSION,
                    "status": 200,
                    "message": "Left room successfully",
                    "room_id": room_id,
                    "client_id": peer.peer_id,
                },
            )
            return
        metadata = fields.get("metadata")
        if not isinstance(metadata, dict):
            metadata = None
        elif not metadata_fits(metadata):
            raise RoomError("INVALID_MESSAGE", "Missing or invalid 'metadata' field")
        binary_role(fields["role"], fields.get("offer_sdp"))
        ack_type = (
            bc.ROOM_CREATE_ACK if msg_type == bc.ROOM_CREATE else bc.ROOM_JOIN_ACK
        )
        message = (
            "Room created successfully"
            if msg_type == bc.ROOM_CREATE
            else "Joined room successfully"
        )

        def ack(result: JoinResult) -> None:
            fields = self._room_ack(result, message)
            if not self._frame(ack_type, uuid, payload_type, fields):
                # The peers extension can outgrow a frame in a big room of big
                # metadata; the ack itself must still arrive.
                fields["peers"] = []
                self._frame(ack_type, uuid, payload_type, fields)

        if msg_type == bc.ROOM_CREATE:
            service.room_create(
                peer,
                fields.get("room_id"),
                fields["auth_token"],
                fields["role"],
                fields.get("offer_sdp"),
                metadata,
                ack,
            )
        else:
            service.room_join(
                peer,
                fields["room_id"],
                fields["auth_token"],
                fields["role"],
                fields.get("offer_sdp"),
                metadata,
                ack,
            )

    def _room_ack(self, result: JoinResult, message: str) -> dict[str, Any]:
        peer = self.room_peer
        assert peer is not None  # noqa: S101 (only called while connected)
        app_id = str(result.realm_id)
        role = "Sender" if peer.role == "sender" else "Receiver"
        return {
            "version": bc.SERVER_VERSION,
            "status": 200,
            "message": message,
            "room_id": result.room_id,
            "session_id": peer.session_id,
            "app_id": app_id,
            "stun_url": self.edge.service.first_stun_url(),
            "connection_info": {
                "room_id": result.room_id,
                "role": role,
                "app_id": app_id,
                "session_id": peer.session_id,
                "status": "Connected",
                "metadata": {
                    "client_id": peer.peer_id,
                    "created_at": _rfc3339(result.created_at),
                },
            },
            "peers": [p.to_json() for p in result.peers],
        }

    # PeerSink

    def _event(self, fields: dict[str, Any]) -> None:
        if self._room_events:
            self._frame(bc.ROOM_EVENT, _fresh_uuid(), self._payload_type, fields)

    def peer_joined(self, room_id: str, peer: PeerInfo) -> None:
        self._event(
            {"event": "peer_joined", "room_id": room_id, "peer": peer.to_json()}
        )

    def peer_left(self, room_id: str, peer_id: str) -> None:
        self._event(
            {"event": "peer_left", "room_id": room_id, "peer": {"peer_id": peer_id}}
        )

    def signal(self, signal: Signal) -> bool:
        fields = {
            "target_client_id": signal.target,
            "signal_data": signal.data.as_text(),
            "source_client_id": signal.source,
            "request_id": signal.request_id,
        }
        try:
            data = bc.encode(
                SIGNAL_CODES[signal.kind],
                signal.uuid or _fresh_uuid(),
                self._payload_type,
                fields,
            )
        except bc.BinaryError:
            return False
        self.send_frame(data, True)
        return True

    def end(self, code: int, error: RoomError | None, replaced_by: str | None) -> None:
        self.room_peer = None
        if replaced_by is not None:
            self._frame(
                bc.DISCONNECT,
                _fresh_uuid(),
                self._payload_type,
                {"client_id": replaced_by, "reason": "replaced"},
            )
        elif error is not None:
            self.send_error(error, None)
        self.close_session(code, "replaced" if replaced_by else "closed")
