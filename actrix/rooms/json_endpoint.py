"""``/rooms/ws``: the JSON room protocol's connection (rooms.md §2).

Text and binary frames are both decoded as JSON (altair does); replies are text.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from actrix.rooms import json_codec
from actrix.rooms.json_codec import JsonRequest
from actrix.rooms.members import check_room_id
from actrix.rooms.model import (
    ABSENT,
    INVALID_MESSAGE,
    SIGNAL_KINDS,
    JoinResult,
    PeerInfo,
    RoomError,
    Signal,
    SignalData,
)
from actrix.rooms.protocol import RoomConnection

_log = Logger()

# A JSON frame relayed to a binary peer must fit a 65 535-byte payload; the
# binary connection checks that itself, so only the JSON side is bounded here.


class JsonRoomConnection(RoomConnection):
    """One ``/rooms/ws`` connection."""

    # Text and binary frames both carry JSON (altair decodes both).
    __slots__ = ()

    def onOpen(self) -> None:
        super().onOpen()
        edge = self.edge
        self.idle_timeout = edge.config.idle_timeout_json
        self.room_peer = peer = edge.service.open_json(self)
        self._send_text(
            json_codec.encode(
                "ACK",
                edge.ms(),
                peer_id=peer.peer_id,
                payload={"message": "connected"},
            )
        )

    def _send_text(self, data: bytes) -> bool:
        """Send one server frame (UTF-8 JSON) as a text message."""
        return self.send_frame(data, False)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        edge = self.edge
        now = edge.clock.seconds()
        t2 = int(now * 1000)
        if not self.admit_message(now) or self.room_peer is None:
            return
        try:
            request = json_codec.decode(payload)
        except json_codec.JsonDecodeError:
            self.refused(RoomError(INVALID_MESSAGE, "invalid JSON"), None)
            return
        try:
            self._dispatch(request, t2)
        except RoomError as e:
            self.refused(e, request.request_id)
        except Exception:
            self.internal_error(request.request_id)

    def _dispatch(self, request: JsonRequest, t2: int) -> None:
        peer = self.room_peer
        assert peer is not None  # noqa: S101 (checked by onMessage)
        service = self.edge.service
        kind = request.type
        if kind in SIGNAL_KINDS:
            if not request.target_id:
                raise RoomError(INVALID_MESSAGE, "target_id is required")
            service.relay(
                peer,
                Signal(
                    kind,
                    peer.peer_id,
                    request.target_id,
                    SignalData(value=request.payload),
                    request.request_id,
                ),
            )
        elif kind == "JOIN":
            self._join(request)
        elif kind == "LEAVE":
            service.leave(peer)
            self._reply("ACK", request, payload={"message": "left room"})
        elif kind == "DISCOVER":
            room_id, peers = service.discover(
                peer, request.room_id, json_codec.payload_token(request.payload)
            )
            self._reply(
                "PEER_LIST",
                request,
                room_id=room_id,
                payload=json_codec.peer_list(room_id, peers),
            )
        elif kind == "KEEP_ALIVE":
            self._reply("ACK", request)
        elif kind == "TIME_SYNC":
            t1 = json_codec.time_sync_t1(request.payload)
            if t1 is None:
                raise RoomError(INVALID_MESSAGE, "t1 is required")
            t3 = self.edge.ms()
            self._reply("TIME_SYNC", request, payload={"t1": t1, "t2": t2, "t3": t3})
        else:
            raise RoomError(INVALID_MESSAGE, f"unknown message type: {kind}")

    def _join(self, request: JsonRequest) -> None:
        peer = self.room_peer
        assert peer is not None  # noqa: S101 (checked by onMessage)
        try:
            fields = json_codec.join_fields(request.payload)
        except json_codec.PayloadError:
            fields = None
        if fields is None:
            # §2.5: room_id is checked before the payload's types.
            check_room_id(request.room_id)
            raise RoomError(INVALID_MESSAGE, "invalid payload")

        def ack(result: JoinResult) -> None:
            payload = json_codec.peer_list(result.room_id, result.peers)
            payload["ice_servers"] = result.ice_servers
            self._reply("ACK", request, room_id=result.room_id, payload=payload)

        self.edge.service.join(
            peer,
            request.room_id,
            token=fields.token,
            role=fields.role,
            display_name=fields.display_name,
            endpoint=fields.endpoint,
            metadata=fields.metadata,
            ack=ack,
        )

    def _reply(
        self,
        kind: str,
        request: JsonRequest,
        *,
        room_id: str | None = None,
        payload: Any = ABSENT,
    ) -> None:
        peer = self.room_peer
        assert peer is not None  # noqa: S101 (only called while open)
        self._send_text(
            json_codec.encode(
                kind,
                self.edge.ms(),
                peer_id=peer.peer_id,
                room_id=room_id,
                payload=payload,
                request_id=request.request_id,
            )
        )

    def send_error(self, error: RoomError, context: Any) -> None:
        self._send_text(
            json_codec.error(
                error.code,
                error.message,
                self.edge.ms(),
                error.details,
                context if isinstance(context, str) else None,
            )
        )

    # PeerSink

    def peer_joined(self, room_id: str, peer: PeerInfo) -> None:
        edge = self.edge
        ms = edge.ms()
        # One join reaches every member with the same frame: encode it once.
        key = ("PEER_JOINED", room_id, peer, ms)
        memo = edge.memo
        if memo is None or memo[0] != key:
            data = json_codec.encode(
                "PEER_JOINED",
                ms,
                peer_id=peer.peer_id,
                room_id=room_id,
                payload=peer.to_json(),
            )
            memo = edge.memo = (key, data)
        self._send_text(memo[1])

    def peer_left(self, room_id: str, peer_id: str) -> None:
        edge = self.edge
        ms = edge.ms()
        key = ("PEER_LEFT", room_id, peer_id, ms)
        memo = edge.memo
        if memo is None or memo[0] != key:
            data = json_codec.encode("PEER_LEFT", ms, peer_id=peer_id, room_id=room_id)
            memo = edge.memo = (key, data)
        self._send_text(memo[1])

    def signal(self, signal: Signal) -> bool:
        self._send_text(
            json_codec.encode(
                signal.kind,
                self.edge.ms(),
                peer_id=signal.source,
                target_id=signal.target,
                payload=signal.data.as_json(),
                request_id=signal.request_id,
            )
        )
        return True

    def end(self, code: int, error: RoomError | None, replaced_by: str | None) -> None:
        self.room_peer = None
        if error is not None:
            self.send_error(error, None)
        self.close_session(
            code,
            "replaced" if replaced_by else (error.message if error else "going away"),
        )
